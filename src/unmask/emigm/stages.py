"""The eMIGM pipelines' DVC stages (``pipelines/emigm-default``, ``pipelines/imagenet256-emigm``).

Run from the pipeline folder (everything is written under ``out/``)::

    python -m unmask.stages emigm.<stage> [--params params.yaml] [--set key=value ...]

    emigm.prepare → emigm.tokenize-discrete (VQ-VAE) ─→ emigm.train-discrete ──┐
                  → emigm.tokenize-continuous (KL-AE) → emigm.train-continuous ┴→ emigm.evaluate

One stage name per dvc.yaml stage (a name shared by two dvc stages would leave the stage guard
unable to tell which outputs are being written). Params: :class:`~unmask.emigm.params.EMIGMParams`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask.data import fashion_mnist
from unmask.emigm.continuous import load_continuous
from unmask.emigm.kl_ae import train_kl_ae
from unmask.emigm.params import EMIGMParams
from unmask.emigm.pipeline import (
    OUT,
    Kind,
    fid_reference,
    load_discrete,
    token_decoder,
    train_emigm,
)
from unmask.emigm.sample import sample_emigm
from unmask.metrics import as_mlflow_metrics, compute_fidelity
from unmask.reporting.images import image_grid, save_png
from unmask.runtime import read_timings, write_timings
from unmask.stages import stage
from unmask.tokenizers.vq import VQTokenizer, evaluate_vq, train_vq
from unmask.tracking import make_tracker
from unmask.tracking_tags import PAPER, PAPER_EMIGM, STAGE

__all__ = ["prepare", "tokenize", "train", "evaluate", "tokenize_discrete", "tokenize_continuous",
           "train_discrete", "train_continuous"]

TIMINGS = OUT / "runs" / "timings"  # wall-clock records: no stage declares them (git-ignored)
KINDS: tuple[Kind, ...] = ("discrete", "continuous")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@stage("emigm.prepare", params=EMIGMParams)
def prepare(p: EMIGMParams) -> None:
    """Fashion-MNIST subsets → out/data/{train,test}.npz (images uint8, labels)."""
    d = p.data
    if d.kind != "fashion_mnist":
        raise ValueError("stage 'emigm.prepare' is for data.kind 'fashion_mnist'")
    rng = np.random.default_rng(d.seed)
    out = OUT / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", d.n_train), ("test", d.n_test)):
        x, y = fashion_mnist.load(split, d.root)
        idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
        np.savez_compressed(out / f"{split}.npz", images=x[idx], labels=y[idx].astype(np.int64))


def tokenize(p: EMIGMParams, kind: Kind) -> None:
    """Train the branch's tokenizer (VQ-VAE / KL-AE) and encode the training images."""
    train_set = np.load(OUT / "data" / "train.npz")
    test = np.load(OUT / "data" / "test.npz")
    out = OUT / "tokens"
    out.mkdir(parents=True, exist_ok=True)
    if kind == "discrete":
        vq = VQTokenizer(train_vq(train_set["images"], p.vq))
        vq.save(out / "vq.pt")
        ids = vq.encode(train_set["images"]).numpy().astype(np.int64)
        np.savez_compressed(out / "discrete.npz", tokens=ids, labels=train_set["labels"],
                            vocab_size=vq.vocab_size)
        stats = evaluate_vq(vq.model, test["images"])
    else:
        kl = train_kl_ae(train_set["images"], p.kl)
        kl.save(out / "kl.pt")
        lat = kl.encode(train_set["images"]).numpy()
        np.savez_compressed(out / "continuous.npz", latents=lat, labels=train_set["labels"])
        rec = kl.decode(kl.encode(test["images"]))
        stats = {"psnr": _psnr(test["images"], rec), "scale_factor": kl.scale_factor}
    _write_json(OUT / "metrics" / f"tokenizer_{kind}.json", stats)


def train(p: EMIGMParams, kind: Kind) -> None:
    """Train the branch's eMIGM model → out/models/<kind>/{model.pt,train.json}."""
    tracker = make_tracker(p.tracking)
    tokens = p.data.train_path if p.data.kind == "arrays" else OUT / "tokens" / f"{kind}.npz"
    with tracker.start_run(p.tracking.experiment, f"train-{kind}",
                           params={"kind": kind, **p.model_dump(mode="json")},
                           tags={PAPER: PAPER_EMIGM, STAGE: "train", "kind": kind}):
        res = train_emigm(p, kind, OUT / "models" / kind, tokens_path=tokens, tracker=tracker)
        tracker.log_metrics({"train_seconds": res.elapsed_s,
                             "seconds_per_step": res.seconds_per_step,
                             "encoder_tokens_per_sample": res.encoder_tokens_per_sample},
                            step=res.steps)
    final = OUT / "models" / kind / "model.pt"
    shutil.copyfile(res.checkpoint, final)
    # wall clock goes to runs/timings (no DVC output): the model folder is hashed by DVC
    wall = ("elapsed_s", "seconds_per_step")
    summary = {k: v for k, v in res.as_dict().items() if k not in wall}
    summary["checkpoint"] = str(final)
    _write_json(OUT / "models" / kind / "train.json", summary)
    write_timings(TIMINGS / f"train-{kind}.json", {k: res.as_dict()[k] for k in wall})


# one registered name per dvc.yaml stage (see the module docstring)
@stage("emigm.tokenize-discrete", params=EMIGMParams)
def tokenize_discrete(p: EMIGMParams) -> None:
    """VQ-VAE on the training images → out/tokens/{vq.pt,discrete.npz}."""
    tokenize(p, "discrete")


@stage("emigm.tokenize-continuous", params=EMIGMParams)
def tokenize_continuous(p: EMIGMParams) -> None:
    """KL autoencoder on the training images → out/tokens/{kl.pt,continuous.npz}."""
    tokenize(p, "continuous")


@stage("emigm.train-discrete", params=EMIGMParams)
def train_discrete(p: EMIGMParams) -> None:
    """The MAE on VQ token ids → out/models/discrete."""
    train(p, "discrete")


@stage("emigm.train-continuous", params=EMIGMParams)
def train_continuous(p: EMIGMParams) -> None:
    """The MAE + diffusion head on KL latents → out/models/continuous."""
    train(p, "continuous")


@stage("emigm.evaluate", params=EMIGMParams)
def evaluate(p: EMIGMParams) -> None:
    """Sample and score (FID) every enabled branch → out/metrics, out/samples, out/report.

    Logs FID, NFE and seconds per image as the MLflow run ``evaluate`` (wall clock also to
    out/runs/timings); the page is the one report writer's, over the experiment's runs."""
    from unmask.reporting.build import write_pipeline_report  # pandas, plotly: this stage only

    n, classes = p.evaluate.n_fid, p.data.num_classes
    ref, key, ref_note = fid_reference(p)
    labels = torch.arange(n) % classes
    tracker = make_tracker(p.tracking)
    metrics: dict[str, Any] = {}
    timings: dict[str, float] = {}  # wall clock: runs/timings, not the DVC metrics file
    figures: dict[str, Path] = {}
    with tracker.start_run(p.tracking.experiment, "evaluate", params=p.model_dump(mode="json"),
                           tags={PAPER: PAPER_EMIGM, STAGE: "evaluate"}):
        for kind in KINDS:
            if not (p.discrete if kind == "discrete" else p.continuous).enabled:
                continue
            ckpt = OUT / "models" / kind / "model.pt"
            model = load_discrete(ckpt) if kind == "discrete" else load_continuous(ckpt)
            smp = sample_emigm(model, token_decoder(p, kind), labels, p,
                               batch_size=p.evaluate.batch_size, progress=True)
            fid = compute_fidelity(smp.images, ref, metrics="fid", reference_key=key,
                                   batch_size=50)
            row = {f"{kind}.{k}": v for k, v in as_mlflow_metrics(fid).items()}
            row.update({f"{kind}.nfe": smp.nfe, f"{kind}.num_samples": len(smp.images)})
            timings[f"{kind}.seconds_per_image"] = smp.seconds_per_image
            tracker.log_metrics({**row, f"{kind}.seconds_per_image": smp.seconds_per_image},
                                step=0)
            metrics.update(row, **{f"{kind}.nfe_label": smp.nfe_label})
            per = p.sample.n_per_class
            grid = np.stack([smp.images[smp.labels == c][:per] for c in range(min(classes, 10))])
            title = f"{kind} samples (rows: classes)"
            figures[title] = save_png(image_grid(grid, scale=2), OUT / "samples" / f"{kind}.png")
            tracker.log_artifact(figures[title])
        for kind in KINDS:
            path = OUT / "models" / kind / "train.json"
            if path.is_file():
                tr = json.loads(path.read_text())
                metrics.update({f"{kind}.encoder_tokens_per_sample":
                                    tr["encoder_tokens_per_sample"],
                                f"{kind}.num_params": tr["num_params"]})
                secs = read_timings(TIMINGS / f"train-{kind}.json").get("elapsed_s")
                if secs is not None:
                    timings[f"{kind}.train_seconds"] = secs
        _write_json(OUT / "metrics" / "metrics.json", metrics)
        write_timings(TIMINGS / "evaluate.json", timings)
        tracker.log_artifact(OUT / "metrics" / "metrics.json")
    # after the run has ended: the page reads FINISHED runs only
    write_pipeline_report(OUT / "report", title=p.report.title, tracking=p.tracking,
                          experiment=p.tracking.experiment, figures=figures,
                          notes={"FID": f"{n} class-balanced samples vs {ref_note} (a small-"
                                        "sample FID is biased upwards: compare within a page)"})
