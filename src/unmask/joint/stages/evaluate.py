"""``python -m unmask.stages joint.evaluate`` → ``samples/*.png, metrics.json,
report/index.html``: the trained joint model used three ways
(:func:`~unmask.joint.sampling.sample_joint`): unconditional joint samples, image → mask on test
images scored by mIoU against the ground-truth masks
(:class:`~unmask.metrics.segmentation.MeanIoU`), and mask → image on test masks scored by FID
against the real test images (the standard offline Inception; unavailable with its reason
otherwise). The run is tagged ``unmask.task=joint_seg``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask import pretokenized as tp
from unmask.joint.layout import JointLayout
from unmask.joint.params import TASK_TAG, JointParams, SampleSection, layout_of
from unmask.joint.sampling import sample_joint
from unmask.metrics import as_mlflow_metrics
from unmask.metrics.segmentation import MeanIoU
from unmask.models.transformer import Transformer
from unmask.pretokenized_evaluate import fid_result, finish_evaluate
from unmask.reporting.images import image_grid, save_png
from unmask.runtime import write_timings
from unmask.stages import stage

__all__ = ["run_evaluate", "colorize", "PALETTE"]


#: Colours of mask classes 0..: background black, then distinct hues (Cityscapes-like).
PALETTE = np.array([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
], dtype=np.uint8)


def colorize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class masks [N, h, w] → RGB [N, H, W, 3] (nearest upsampling to ``size``)."""
    rgb = PALETTE[np.asarray(mask) % len(PALETTE)]
    fy, fx = size[0] // mask.shape[1], size[1] // mask.shape[2]
    return rgb.repeat(fy, 1).repeat(fx, 2)


def _rgb(images: np.ndarray, gray: bool = True) -> np.ndarray:
    """Grayscale images [..., H, W] → [..., H, W, 3] (RGB ones unchanged)."""
    return np.repeat(images[..., None], 3, -1) if gray else images


def _sample_batches(model: Transformer, layout: JointLayout, task: str, n: int, s: SampleSection,
                    seg: bool = False, **given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(s.seed + {"joint": 0, "image_to_mask": 1,
                                                "mask_to_image": 2}[task])
    imgs, masks = [], []
    for i in tqdm(range(0, n, s.batch_size), desc=task, leave=False):
        b = min(s.batch_size, n - i)
        kw = {k: v[i : i + b] for k, v in given.items()}
        with torch.no_grad():
            im, mk = sample_joint(
                model, layout, task, batch_size=b, method=s.seg_method if seg else s.method,
                steps=s.seg_steps if seg else s.steps, schedule=s.schedule,
                temperature=s.seg_temperature if seg else s.temperature, top_p=s.top_p,
                choice_temperature=s.choice_temperature, generator=g, **kw)
        imgs.append(im)
        masks.append(mk)
    return torch.cat(imgs), torch.cat(masks)


@stage("joint.evaluate", params=JointParams)
def run_evaluate(p: JointParams) -> dict[str, Any]:
    """Joint samples, image → mask (mIoU) and mask → image (FID); metrics.json, report."""
    model, meta, tok, train_info = tp.load_trained()
    layout = layout_of(meta)
    _, (te_img, te_mask, te_raw) = tp.load_tokens("test_image", "test_mask", "test_raw")
    te_img, te_mask = torch.from_numpy(te_img).long(), torch.from_numpy(te_mask).long()
    n = min(p.sample.num_eval, len(te_img))
    raw_hw = tuple(te_raw.shape[1:3])
    gray = te_raw.ndim == 3
    t0 = time.perf_counter()

    # 1. unconditional joint samples
    j_img, j_mask = _sample_batches(model, layout, "joint", p.sample.num_joint, p.sample)
    # 2. image → mask (segmentation as unmasking), scored by mIoU against the ground truth
    _, seg = _sample_batches(model, layout, "image_to_mask", n, p.sample, seg=True,
                             image=te_img[:n])
    miou = MeanIoU(class_names=meta["class_names"], name="miou_image_to_mask")
    miou.update(seg, te_mask[:n])
    miou_res = miou.compute()
    # does the predicted mask fit the object, whatever its class? (foreground vs background)
    fg = MeanIoU(class_names=["background", "foreground"], name="miou_foreground")
    fg.update((seg[:n] > 0).long(), (te_mask[:n] > 0).long())
    fg_res = fg.compute()
    # 3. mask → image, scored by FID against the real test images
    m2i_img, _ = _sample_batches(model, layout, "mask_to_image", n, p.sample, mask=te_mask[:n])
    seconds = time.perf_counter() - t0
    m2i = tok.decode(m2i_img)
    # figures: joint samples (image | mask), segmentation (image | truth | prediction),
    # mask → image (mask | generated | real)
    joint_dec = tok.decode(j_img)
    k = min(8, p.sample.num_joint)
    rows = [np.stack([_rgb(joint_dec[i], gray), colorize(j_mask[i : i + 1].numpy(), raw_hw)[0]])
            for i in range(k)]
    samples = tp.SAMPLES
    figs = {"unconditional joint samples (image | mask)":
            save_png(image_grid(np.stack(rows).transpose(1, 0, 2, 3, 4), scale=2),
                     samples / "joint.png")}
    m = min(8, n)
    seg_rows = np.stack([_rgb(te_raw[:m], gray), colorize(te_mask[:m].numpy(), raw_hw),
                         colorize(seg[:m].numpy(), raw_hw)])
    figs["image → mask (rows: image, ground truth, prediction)"] = save_png(
        image_grid(seg_rows, scale=2), samples / "image_to_mask.png")
    m2i_rows = np.stack([colorize(te_mask[:m].numpy(), raw_hw), _rgb(m2i[:m], gray),
                         _rgb(te_raw[:m], gray)])
    figs["mask → image (rows: given mask, generated, real)"] = save_png(
        image_grid(m2i_rows, scale=2), samples / "mask_to_image.png")

    fid = fid_result(m2i, te_raw[:n], f"joint-{p.data.kind}-test{n}", enabled=p.evaluate.fid,
                     batch_size=p.evaluate.fid_batch_size, name="fid_mask_to_image")

    metrics: dict[str, Any] = {**as_mlflow_metrics([miou_res, fg_res, fid]),
                               "num_eval": n, "sample_seconds": round(seconds, 1)}
    per_class = {f"iou.{k}": v for k, v in miou.per_class().items() if v == v}
    reasons = {r.name: r.reason for r in (miou_res, fid) if not r.available}
    out = {"miou_image_to_mask": miou_res.value, "fid_mask_to_image": fid.value,
           "miou_foreground": fg_res.value,
           "unavailable": reasons, **per_class, "num_eval": n,
           "train_loss": train_info.get("loss"), "train_steps": train_info.get("step")}
    write_timings(tp.TIMINGS / "evaluate.json", {"sample_seconds": round(seconds, 1)})
    finish_evaluate(p, TASK_TAG, out, {**metrics, **per_class}, reasons, figs,
                    list(figs.values()))
    print(f"evaluate: mIoU(image→mask) = {miou_res.value}, FID(mask→image) = "
          f"{fid.value if fid.available else 'unavailable: ' + str(fid.reason)} "
          f"({seconds:.0f}s sampling) → {tp.METRICS}")
    return out
