"""Stages of the joint image–mask pipelines (``pipelines/seg-default``, ``pipelines/cityscapes``),
run from the pipeline folder (``--params FILE``, ``--set key=value``)::

    python -m unmask.stages joint.tokenize   → tokens/{tokens.npz, meta.json, vq.pt}
    python -m unmask.stages joint.train      → models/{model.pt, train.json}
    python -m unmask.stages joint.evaluate   → samples/*.png, metrics.json, report/index.html

``tokenize`` reads (image, mask) pairs — the embedded Fashion-MNIST pairs
(:class:`~unmask.data.seg_fmnist.SegFashionMNIST`) or Cityscapes with DI's 8 categories
(:class:`~unmask.data.cityscapes.Cityscapes`) — fits or loads the image tokenizer and stores
image tokens, mask classes and the raw test images. ``train`` trains ONE model on
``[image tokens | mask tokens]`` (:class:`~unmask.joint.JointLayout`): the training loop masks
every position of both modalities with the schedule's κ_t, or with each modality's own κ_m(t)
given ``train.schedules: {image: NAME, mask: NAME}`` (:mod:`unmask.joint.schedules`; sampling
still uses the one ``sample.schedule``). ``evaluate`` uses that model three
ways (:func:`~unmask.joint.sample_joint`): unconditional joint samples, image → mask on test
images scored by mIoU against the ground-truth masks (:class:`~unmask.metrics.segmentation.
MeanIoU`), and mask → image on test masks scored by FID against the real test images (the
standard offline Inception; unavailable with its reason otherwise). Every stage logs an MLflow
run tagged ``unmask.task=joint_seg``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from tqdm.auto import tqdm

from unmask import pretokenized as tp
from unmask.config import Section
from unmask.data import cityscapes, fashion_mnist, seg_fmnist
from unmask.joint.layout import JointLayout
from unmask.joint.sampling import sample_joint
from unmask.joint.schedules import JointTrainConfig, train_schedule
from unmask.metrics import as_mlflow_metrics
from unmask.metrics.segmentation import MeanIoU
from unmask.models import ModelConfig, Transformer
from unmask.reporting.images import image_grid, save_png
from unmask.runtime import seed_everything, write_timings
from unmask.stages import stage

__all__ = ["JointParams", "run_tokenize", "run_train", "run_evaluate", "TASK_TAG"]

TASK_TAG = {"unmask.task": "joint_seg"}


class DataSection(Section):
    """``seg_fmnist``: Fashion-MNIST images (28×28) with foreground × class masks pooled to
    ``mask_size``; ``cityscapes``: ``root`` in the official layout, images resized to
    ``image_size``, 8-category masks to ``mask_size`` (DI: 256×512 and 32×64)."""

    kind: Literal["seg_fmnist", "cityscapes"] = "seg_fmnist"
    root: str | None = None
    max_train: int | None = Field(default=None, gt=0)
    max_test: int | None = Field(default=None, gt=0)
    mask_size: tuple[int, int] = (7, 7)
    image_size: tuple[int, int] | None = None
    threshold: int = Field(default=16, ge=0, le=255)
    test_split: str = "test"

    @model_validator(mode="after")
    def _root(self) -> DataSection:
        if self.kind == "cityscapes" and self.root is None:
            raise ValueError("'root': set it to the Cityscapes folder (leftImg8bit/, gtFine/)")
        return self


class SampleSection(tp.SamplerSection):
    """The shared sampler for joint samples and mask → image; ``seg_*`` for image → mask;
    ``num_joint`` unconditional samples, ``num_eval`` test pairs each way."""

    seg_method: Literal["euler", "mdm", "maskgit", "first_hitting"] = "maskgit"
    seg_steps: int = Field(default=8, gt=0)
    seg_temperature: float = Field(default=1.0, gt=0)
    num_joint: int = Field(default=32, gt=0)
    num_eval: int = Field(default=200, gt=0)
    batch_size: int = Field(default=100, gt=0)
    seed: int = 0


class JointParams(tp.StageParams):
    """``pipelines/seg-default/params.yaml`` and ``pipelines/cityscapes/params.yaml``."""

    data: DataSection = DataSection()
    train: JointTrainConfig = JointTrainConfig()
    sample: SampleSection = SampleSection()
    tracking: tp.TrackingSection = tp.TrackingSection(experiment="joint-seg")
    report: tp.ReportSection = tp.ReportSection(
        title="Joint image + segmentation-mask model")

    @field_validator("model")
    @classmethod
    def _model_values(cls, v: dict[str, Any]) -> dict[str, Any]:
        return tp.check_model(v, lambda m: model_config(m, _PROBE))


# -- tokenize -------------------------------------------------------------------------------------
def _load_pairs(d: DataSection, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if d.kind == "seg_fmnist":
        kw: dict[str, Any] = {"threshold": d.threshold, "mask_size": tuple(d.mask_size)}
        ds = seg_fmnist.SegFashionMNIST.from_default(split, d.root, **kw)
        images, masks, _ = ds.arrays()
        return images[:limit], masks[:limit]
    ds = cityscapes.Cityscapes(str(d.root), split, image_size=d.image_size,
                               mask_size=tuple(d.mask_size))
    images, masks = [], []
    for i, item in enumerate(tqdm(ds, desc=f"read {split}", total=len(ds))):
        if limit is not None and i >= limit:
            break
        images.append(item["image"])
        masks.append(item["mask"])
    return np.stack(images), np.stack(masks)


def _num_classes(d: DataSection) -> int:
    return seg_fmnist.NUM_MASK_CLASSES if d.kind == "seg_fmnist" else cityscapes.NUM_CATEGORIES


def _class_names(d: DataSection) -> list[str]:
    if d.kind == "cityscapes":
        return list(cityscapes.CATEGORY_NAMES)
    return ["background", *fashion_mnist.CLASS_NAMES]


@stage("joint.tokenize", params=JointParams)
def run_tokenize(p: JointParams) -> dict[str, Any]:
    """Read the (image, mask) pairs, fit or load the image tokenizer, store the tokens."""
    t0 = time.perf_counter()
    train_split = "train"
    tr_img, tr_mask = _load_pairs(p.data, train_split, p.data.max_train)
    te_img, te_mask = _load_pairs(p.data, p.data.test_split, p.data.max_test)
    tok, tok_meta = tp.fit_tokenizer(p.tokenizer, tr_img, tp.TOKENS)
    kw = {} if p.tokenizer.kind == "pixel" else {"batch_size": p.tokenizer.batch_size}
    tr_tok, te_tok = tok.encode(tr_img, **kw), tok.encode(te_img, **kw)
    meta = {"tokenizer": tok_meta, "image_vocab": int(tok.vocab_size),
            "image_shape": list(tr_tok.shape[1:]), "mask_shape": list(tr_mask.shape[1:]),
            "num_classes": _num_classes(p.data), "class_names": _class_names(p.data),
            "counts": {"train": len(tr_tok), "test": len(te_tok)},
            "raw_shape": list(te_img.shape[1:])}
    seconds = round(time.perf_counter() - t0, 1)
    write_timings(tp.TIMINGS / "tokenize.json", {"seconds": seconds})
    tp.finish_tokenize(p, TASK_TAG, meta, train_image=tr_tok.numpy().astype(np.int32),
                           train_mask=tr_mask, test_image=te_tok.numpy().astype(np.int32),
                           test_mask=te_mask, test_raw=te_img)
    print(f"tokenize: {meta['counts']} pairs, image tokens {meta['image_shape']} (V = "
          f"{meta['image_vocab']}), masks {meta['mask_shape']} (C = {meta['num_classes']}), "
          f"{seconds}s → {tp.TOKENS}")
    return meta


def _layout(meta: dict[str, Any]) -> JointLayout:
    return JointLayout(tuple(meta["image_shape"]), meta["image_vocab"], tuple(meta["mask_shape"]),
                       meta["num_classes"])


def model_config(model: dict[str, Any], layout: JointLayout) -> ModelConfig:
    """The ``model`` section completed with the shape of ``layout`` (one sequence of image
    then mask tokens, their modalities and id ranges)."""
    m = {**model, "vocab_size": layout.vocab_size, "seq_len": layout.seq_len,
         "modalities": layout.modalities(), "num_classes": 0}
    m.pop("grid", None)
    return ModelConfig(**m)


#: a stand-in shape to check the ``model`` section against when params are read
_PROBE = JointLayout((1, 1), 2, (1, 1), 2)


# -- train ----------------------------------------------------------------------------------------
@stage("joint.train", params=JointParams)
def run_train(p: JointParams) -> dict[str, Any]:
    """Train one model over [image tokens | mask tokens] (DI §3.4, eq. 4)."""
    meta, (image, mask) = tp.load_tokens("train_image", "train_mask")
    layout = _layout(meta)
    x = layout.combine(torch.from_numpy(image), torch.from_numpy(mask))
    cfg = model_config(p.model, layout)
    seed_everything(p.train.seed)  # the initialisation draws from the global RNG
    model = Transformer(cfg)
    return tp.train_stage(p, model, x, tp.RUNS / "joint", meta, TASK_TAG,
                              schedule=train_schedule(p.train, layout.modalities()),
                              seq_len=layout.seq_len, vocab_size=layout.vocab_size)


# -- evaluate -------------------------------------------------------------------------------------
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
                temperature=s.seg_temperature if seg else s.temperature,
                choice_temperature=s.choice_temperature, generator=g, **kw)
        imgs.append(im)
        masks.append(mk)
    return torch.cat(imgs), torch.cat(masks)


@stage("joint.evaluate", params=JointParams)
def run_evaluate(p: JointParams) -> dict[str, Any]:
    """Joint samples, image → mask (mIoU) and mask → image (FID); metrics.json, report."""
    model, meta, tok, train_info = tp.load_trained()
    layout = _layout(meta)
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

    fid = tp.fid_result(m2i, te_raw[:n], f"joint-{p.data.kind}-test{n}", enabled=p.evaluate.fid,
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
    tp.finish_evaluate(p, TASK_TAG, out, {**metrics, **per_class}, reasons, figs,
                    list(figs.values()))
    print(f"evaluate: mIoU(image→mask) = {miou_res.value}, FID(mask→image) = "
          f"{fid.value if fid.available else 'unavailable: ' + str(fid.reason)} "
          f"({seconds:.0f}s sampling) → {tp.METRICS}")
    return out

