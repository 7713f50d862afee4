"""Mean intersection-over-union from an accumulated confusion matrix.

Over K classes with confusion matrix C (rows = target class, columns = predicted class, pixels
whose target equals ``ignore_index`` dropped),

    IoU_k = C_kk / (Σ_j C_kj + Σ_i C_ik − C_kk),     mIoU = mean of IoU_k over classes with
                                                    a non-empty union (Σ_j C_kj + Σ_i C_ik > 0).

Classes absent from both prediction and target carry no information and are left out of the
mean (the Cityscapes evaluation's NaN-mean; torchmetrics' ``MulticlassJaccardIndex(average=
"macro")`` weighs them 0 — the same number). An ``ignore_index`` inside ``[0, K)`` (e.g. a void
class) also leaves that class out of the mean, as torchmetrics does; predictions *of* it on
labelled pixels still count against the true class. The matrix is accumulated over the whole
evaluation set before dividing (dataset-level mIoU, not a mean of per-image mIoUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from unmask.data.cityscapes import CATEGORY_NAMES
from unmask.data.fashion_mnist import CLASS_NAMES
from unmask.metrics import MetricResult

__all__ = [
    "CITYSCAPES_CATEGORIES",
    "FASHION_MNIST_CLASSES",
    "MIOU",
    "MeanIoU",
    "SEG_FMNIST_CLASSES",
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
]

MIOU = "miou"

#: The 8 Cityscapes categories, indexed by their official ``categoryId`` (0–7).
CITYSCAPES_CATEGORIES: tuple[str, ...] = CATEGORY_NAMES

#: Fashion-MNIST's 10 class names by label id.
FASHION_MNIST_CLASSES: tuple[str, ...] = tuple(n.lower() for n in CLASS_NAMES)

#: Mask classes of the embedded segmentation default (:mod:`unmask.data.seg_fmnist`):
#: 0 = background, ``label + 1`` = the garment class.
SEG_FMNIST_CLASSES: tuple[str, ...] = ("background", *FASHION_MNIST_CLASSES)


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """``int64 [K, K]`` counts, ``C[t, p]`` = #pixels with target ``t`` predicted ``p``.

    ``pred`` and ``target`` are integer label maps of equal shape. Pixels with
    ``target == ignore_index`` are dropped; any other label outside ``[0, K)`` is an error.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.is_floating_point() or target.is_floating_point():
        raise TypeError("pred and target must be integer label maps (argmax logits first)")
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target labels outside [0, {num_classes}) (and not ignore_index)")
    if p.numel() and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"predicted labels outside [0, {num_classes})")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def iou_per_class(confmat: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """``float64 [K]`` IoU per class; NaN where the class's union is empty, and for the
    ``ignore_index`` class itself when it lies in ``[0, K)``."""
    c = confmat.double()
    inter = torch.diag(c)
    union = c.sum(0) + c.sum(1) - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float("nan")))
    if ignore_index is not None and 0 <= ignore_index < c.shape[0]:
        iou[ignore_index] = float("nan")
    return iou


def mean_iou(confmat: torch.Tensor, ignore_index: int | None = None) -> float:
    """Mean of :func:`iou_per_class` over classes with a non-empty union (NaN if none)."""
    return float(torch.nanmean(iou_per_class(confmat, ignore_index)))


class MeanIoU:
    """Accumulating mIoU: ``update(pred, target)`` per batch, then ``compute()``."""

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        class_names: Sequence[str] | None = None,
        ignore_index: int | None = None,
        name: str = MIOU,
    ) -> None:
        if num_classes is None:
            if class_names is None:
                raise ValueError("give num_classes or class_names")
            num_classes = len(class_names)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.ignore_index = ignore_index
        self.name = name
        self.confmat = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def reset(self) -> None:
        self.confmat.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.confmat += confusion_matrix(
            pred.cpu(), target.cpu(), self.num_classes, self.ignore_index
        )

    def per_class(self) -> dict[str, float]:
        """``{class name or index: IoU}`` (NaN for classes never seen)."""
        names = self.class_names or tuple(str(i) for i in range(self.num_classes))
        iou = iou_per_class(self.confmat, self.ignore_index).tolist()
        return dict(zip(names, iou, strict=True))

    def compute(self) -> MetricResult:
        params: dict[str, Any] = {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "num_pixels": int(self.confmat.sum()),
        }
        if self.class_names is not None:
            params["classes"] = ",".join(self.class_names)
        if int(self.confmat.sum()) == 0:
            why = "no labelled pixels were evaluated"
            return MetricResult.unavailable(self.name, why, **params)
        value = mean_iou(self.confmat, self.ignore_index)
        if value != value:  # NaN: every class empty or ignored
            return MetricResult.unavailable(self.name, "no class with a non-empty union", **params)
        return MetricResult.ok(self.name, value, **params)
