"""Confusion-matrix mIoU against torchmetrics on random label maps."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from unmask.metrics.segmentation import (
    CITYSCAPES_CATEGORIES,
    SEG_FMNIST_CLASSES,
    MeanIoU,
    confusion_matrix,
    iou_per_class,
)


def random_maps(k: int, seed: int, present: int | None = None, shape=(4, 16, 32)):
    g = torch.Generator().manual_seed(seed)
    hi = present if present is not None else k
    target = torch.randint(0, hi, shape, generator=g)
    # a prediction correlated with the target: right ~60% of the time
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target,
                       torch.randint(0, k, shape, generator=g))
    return pred, target


@pytest.mark.parametrize("k,present,ignore", [(8, None, None), (8, 5, None), (11, None, 255),
                                               (8, None, 0)])
def test_matches_torchmetrics_macro_jaccard(k: int, present: int | None, ignore: int | None):
    ours = MeanIoU(k, ignore_index=ignore)
    ref = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=ignore)
    for seed in range(3):  # accumulated over batches
        pred, target = random_maps(k, seed, present)
        if ignore is not None and ignore >= k:
            target[:, :2] = ignore  # some ignored pixels
        ours.update(pred, target)
        ref.update(pred, target)
    r = ours.compute()
    assert r.available and r.name == "miou"
    assert r.value == pytest.approx(float(ref.compute()), abs=1e-6)


def test_per_class_iou_and_hand_example() -> None:
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 1]])
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    iou = iou_per_class(cm)
    assert iou[:3].tolist() == pytest.approx([1 / 3, 3 / 4, 2 / 3])
    assert torch.isnan(iou[3])  # class 3 never appears: left out of the mean
    m = MeanIoU(class_names=("a", "b", "c", "d"))
    m.update(pred, target)
    assert m.compute().value == pytest.approx((1 / 3 + 3 / 4 + 2 / 3) / 3)
    assert m.per_class()["b"] == pytest.approx(0.75)


def test_errors_and_empty() -> None:
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1, 2]), 3)
    with pytest.raises(TypeError):
        confusion_matrix(torch.rand(3), torch.tensor([0, 1, 2]), 3)
    empty = MeanIoU(3, ignore_index=255)
    empty.update(torch.tensor([1, 2]), torch.tensor([255, 255]))
    r = empty.compute()
    assert not r.available and r.value is None


def test_class_name_constants() -> None:
    assert len(CITYSCAPES_CATEGORIES) == 8 and CITYSCAPES_CATEGORIES[0] == "void"
    assert set(CITYSCAPES_CATEGORIES) == {"void", "flat", "construction", "object", "nature",
                                          "sky", "human", "vehicle"}
    assert len(SEG_FMNIST_CLASSES) == 11 and SEG_FMNIST_CLASSES[0] == "background"
    try:
        from unmask.data.seg_fmnist import NUM_MASK_CLASSES
    except ImportError:
        return
    assert len(SEG_FMNIST_CLASSES) == NUM_MASK_CLASSES
