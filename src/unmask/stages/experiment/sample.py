"""Stage ``experiment.sample``: samples of a trained paper-experiment run (EMA weights).

Class-conditional runs: a class grid with CFG, decoded by the same tokenizer →
``out/samples/<run>/{grid.png, samples.npz}``. Text-conditioned runs: the first
``heldout.count`` captions of the held-out set (``heldout.root`` / ``heldout.split``: COCO's
val2014, a separate folder of CC12M shards) are embedded with the shard's text encoder (checked
by hash) and one image is sampled per caption with CFG against the model's learned null
condition → ``out/samples/<run>/{grid.png, samples.npz, info.json}`` (``info.json`` lists the
captions in grid order; ``samples.npz`` also keeps the held-out real images). Both write
``out/metrics/sample-<run>.json``. Run ``python -m unmask.stages experiment.sample
[--schedule NAME]`` (the run of that schedule, else ``name``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask import schedules
from unmask.data.shards import TokenShards
from unmask.errors import ConfigError
from unmask.models import ConditionedDenoiser, Transformer
from unmask.reporting.images import image_grid, save_png
from unmask.runtime import write_timings
from unmask.sampling import sample_with_info
from unmask.stages import stage
from unmask.stages.experiment.data import build_tokenizer, heldout_pairs, timings_path
from unmask.stages.experiment.params import ExperimentParams, ExpSample
from unmask.tokenizers.text import TextConditionedTransformer, build_text_encoder
from unmask.training import load_checkpoint


def draw(
    model: Any,
    y: torch.Tensor,
    cfg: Any,
    s: ExpSample,
    kappa: Any,
    seed: int | None = None,
    device: Any = None,
) -> Any:
    """:func:`unmask.sampling.sample_with_info` of ``model`` conditioned on labels ``y`` with
    CFG ``(1 + w)·cond − w·uncond`` (the unconditional branch: the model's null label), then
    ``s.temperature`` and nucleus ``s.top_p`` on the guided logits of every draw."""
    with torch.no_grad():
        return sample_with_info(
            ConditionedDenoiser(model, y),
            batch_size=len(y),
            seq_len=cfg.length,
            mask_id=cfg.mask_id,
            method=s.method,
            steps=s.steps,
            schedule=kappa,
            temperature=s.temperature,
            top_p=s.top_p,
            generator=torch.Generator(device or "cpu").manual_seed(
                s.seed if seed is None else seed
            ),
            device=device,
            cfg_scale=s.cfg_scale,
            cfg_schedule=s.cfg_schedule,
            progress=True,
        )


def run_schedule(p: ExperimentParams, ckpt: Any) -> Any:
    """The κ schedule a checkpoint was trained with."""
    tc = ckpt.train_config
    return schedules.get(tc.get("schedule", p.train.schedule), **tc.get("schedule_kwargs", {}))


@stage("experiment.sample", params=ExperimentParams)
def run(p: ExperimentParams, schedule: str | None = None) -> dict[str, Any]:
    """Sample a class grid from ``out/models/<run>/model.pt`` (EMA weights), decode it with the
    tokenizer and write ``out/samples/<run>/{grid.png, samples.npz}`` and
    ``out/metrics/sample-<run>.json``. Text-conditioned runs: :func:`sample_text`."""
    name = schedule or p.name
    s, out = p.sample, Path(p.out)
    ckpt = load_checkpoint(out / "models" / name / "model.pt", ema=True)
    model, cfg = ckpt.model, ckpt.model_config
    if isinstance(model, TextConditionedTransformer):
        return sample_text(p, ckpt, name)
    if type(model) is not Transformer or cfg.grid is None:
        raise ValueError(f"sample: {name} is not a class-conditional image model")
    classes = s.classes if s.classes is not None else list(range(min(10, cfg.num_classes)))
    bad = [c for c in classes if not 0 <= c < cfg.num_classes]
    if bad:
        raise ConfigError(f"sample.classes: {bad} outside 0..{cfg.num_classes - 1}")
    y = torch.tensor(classes).repeat_interleave(s.n_per_class)
    res = draw(model, y, cfg, s, run_schedule(p, ckpt))
    tokens = res.tokens.reshape(-1, *cfg.grid)
    images = build_tokenizer(p.tokenizer).decode(tokens)
    d = out / "samples" / name
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "samples.npz", tokens=tokens.numpy(), images=images, labels=y.numpy())
    grid = images.reshape(len(classes), s.n_per_class, *images.shape[1:])
    scale = max(1, round(64 / images.shape[1]))
    save_png(image_grid(grid, [str(c) for c in classes], scale=scale), d / "grid.png")
    info = {
        "method": s.method,
        "steps": res.steps,
        "nfe": res.nfe,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "cfg_scale": s.cfg_scale,
        "n_samples": len(y),
        "checkpoint_step": ckpt.step,
    }
    write_timings(timings_path(p, f"sample-{name}"), {"seconds_per_sample": res.seconds / len(y)})
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"sample-{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"sample[{name}]: {len(y)} samples, NFE {res.nfe} → {d / 'grid.png'}")
    return info


def sample_text(p: ExperimentParams, ckpt: Any, name: str) -> dict[str, Any]:
    """One sample per held-out caption from a text-conditioned checkpoint (EMA weights).

    The captions are embedded by the text encoder of the ``text`` section, which must be the
    one the training shard was built with (same hash); the model is re-conditioned on these
    embeddings (:meth:`~unmask.tokenizers.text.TextConditionedTransformer.condition_on`), so
    label i is caption i and the learned null vector is CFG's unconditional branch. Writes
    ``out/samples/<run>/{grid.png, samples.npz, info.json}`` and ``out/metrics/sample-<run>.json``.
    """
    s, h, t, out = p.sample, p.heldout, p.text, Path(p.out)
    assert t is not None  # the schema requires it for captioned datasets
    model = ckpt.model
    trained = TokenShards(out / "tokens" / "train", verify=False).meta.get("text_encoder") or {}
    enc = build_text_encoder(t.encoder, dim=t.dim, path=t.path, model_name=t.model_name)
    if trained.get("hash") != enc.hash:
        raise ConfigError(
            f"text: encoder {enc.identity} differs from the one the run was trained with "
            f"({trained.get('identity', 'unknown')}); re-run tokenize"
        )
    captions, real = heldout_pairs(p)
    emb = enc.encode(captions)
    cfg = model.condition_on(emb).cfg
    if cfg.grid is None:
        raise ValueError(f"sample: {name} is not an image model (no token grid)")
    kappa, bs = run_schedule(p, ckpt), s.batch_size or len(captions)
    dev = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if s.device == "auto" else s.device
    )
    model.to(dev)
    draws = [
        draw(model, y, cfg, s, kappa, seed=s.seed + k, device=dev)
        for k, y in enumerate(torch.arange(len(captions)).split(bs))
    ]
    tokens = torch.cat([r.tokens.cpu() for r in draws]).reshape(-1, *cfg.grid)
    images = build_tokenizer(p.tokenizer).decode(tokens)
    seconds, nfe = sum(r.seconds for r in draws), draws[0].nfe

    d = out / "samples" / name
    d.mkdir(parents=True, exist_ok=True)
    np.savez(
        d / "samples.npz",
        tokens=tokens.numpy(),
        images=images,
        reference=real,
        captions=np.array(captions, dtype=np.str_),
    )
    shown = images[: h.grid]
    cols = min(h.columns, len(shown))
    rows = -(-len(shown) // cols)
    tiles = np.full((rows * cols, *images.shape[1:]), 255, np.uint8)
    tiles[: len(shown)] = shown
    labels = [f"#{r * cols}" for r in range(rows)]
    scale = max(1, round(64 / images.shape[1]))
    save_png(
        image_grid(tiles.reshape(rows, cols, *images.shape[1:]), labels, scale=scale),
        d / "grid.png",
    )
    info = {
        "method": s.method,
        "steps": draws[0].steps,
        "nfe": nfe,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "cfg_scale": s.cfg_scale,
        "cfg_schedule": s.cfg_schedule,
        "null_condition": "learned null vector (label M = number of captions)",
        "n_samples": len(captions),
        "checkpoint_step": ckpt.step,
        "text_encoder": enc.identity,
        "heldout": {"root": h.root or p.data.root, "split": h.split, "count": len(captions)},
    }
    grid_info = {**info, "grid_columns": cols, "grid_count": len(shown), "captions": captions}
    write_timings(timings_path(p, f"sample-{name}"),
                  {"seconds_per_sample": seconds / len(captions)})
    (d / "info.json").write_text(json.dumps(grid_info, indent=2) + "\n")
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"sample-{name}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"sample[{name}]: {len(captions)} held-out captions, NFE {nfe} → {d / 'grid.png'}")
    return info
