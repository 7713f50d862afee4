"""``unmask evaluate ...``: each metric from the command line, logged to MLflow with its settings.

    unmask evaluate [--params params.yaml] [--set k=v]      the pipeline's evaluate stage
    unmask evaluate fid   SAMPLES REFERENCE [--reference-key KEY] [--batch-size] [--device]
    unmask evaluate kid   SAMPLES REFERENCE ...             (KID ± std, same features as FID)
    unmask evaluate prdc  SAMPLES REFERENCE ...             (precision / recall, k = 3)
    unmask evaluate is    SAMPLES [--weights FILE]          (needs torch-fidelity's standard file)
    unmask evaluate fvd   VIDEOS REFERENCE [--i3d FILE] [--per-frame]
    unmask evaluate miou  PRED TARGET --num-classes C [--ignore-index I]
    unmask evaluate ppl   [--params params.yaml] [--ckpt models/model.pt] [--n-sequences N]
    unmask evaluate clip  IMAGES CAPTIONS --checkpoint FILE [--model ViT-B-32]

Inputs: ``.npy``, ``.npz`` (the array ``images`` / ``videos`` / ``labels`` / ``masks`` if present,
else the first), or a folder of ``.png`` images; REFERENCE may also be a cached reference key
(:func:`unmask.metrics.reference_key`). CAPTIONS: a text file, one caption per line.

Every command prints the results as JSON and logs one MLflow run (experiment ``--experiment``,
default ``metrics``; ``--no-track`` to skip): the available values as metrics, every setting
(sample counts, reference set, weights) and the reason of an unavailable metric as params.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image

from unmask.config import load_params
from unmask.data.shards import TokenShards
from unmask.errors import user_errors
from unmask.metrics import (
    MeanIoU,
    MetricResult,
    as_mlflow_metrics,
    as_mlflow_params,
    compute_clip_score,
    compute_fidelity,
    compute_fvd,
    per_frame_fid,
)
from unmask.runtime import git_commit
from unmask.stages import run
from unmask.stages.common import PATHS
from unmask.stages.evaluate import nelbo_bits
from unmask.tokenizers import build_tokenizer
from unmask.tracking import Tracker
from unmask.training import load_checkpoint

__all__ = ["evaluate_app", "load_array"]

evaluate_app = typer.Typer(
    name="evaluate",
    help="Evaluate: the pipeline stage (no sub-command) or one metric (fid, kid, prdc, is, fvd, "
    "miou, ppl, clip).",
    invoke_without_command=True,
    no_args_is_help=False,
)

_KEYS = ("images", "videos", "samples", "labels", "masks", "pred", "target")
ExpOpt = Annotated[str, typer.Option("--experiment", help="MLflow experiment.")]
TrackOpt = Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Feature-extractor batch size.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu / cuda (default: auto).")]


def load_array(path: str | Path) -> np.ndarray:
    """An array from ``.npy``, ``.npz`` (a known key, else the first array) or a folder of PNGs
    (sorted by name, stacked). A clear error names the file when it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} not found")
    if p.is_dir():
        files = sorted(p.glob("*.png"))
        if not files:
            raise ValueError(f"{p}: no .png images in the folder")
        return np.stack([np.asarray(Image.open(f)) for f in files])
    if p.suffix == ".npy":
        return np.load(p)
    if p.suffix == ".npz":
        with np.load(p) as z:
            if not z.files:
                raise ValueError(f"{p}: empty .npz")
            key = next((k for k in _KEYS if k in z.files), z.files[0])
            return z[key]
    raise ValueError(f"{p}: expected .npy, .npz or a folder of .png images")


def _reference(ref: str) -> Any:
    """A path's array, or the string itself as a cached reference key."""
    return load_array(ref) if Path(ref).exists() else ref


def _report(
    results: dict[str, Any],
    name: str,
    experiment: str,
    track: bool,
    extra_params: dict[str, Any] | None = None,
) -> None:
    params = {**as_mlflow_params(results), **(extra_params or {})}
    metrics = as_mlflow_metrics(results)
    out = {
        k: {"value": r.value, "available": r.available, "reason": r.reason, "params": r.params}
        for k, r in results.items()
    }
    if track:
        tr = Tracker()
        with tr.start_run(
            experiment,
            f"evaluate-{name}",
            params=params,
            tags={"stage": f"evaluate-{name}", "git_commit": git_commit()},
        ):
            if metrics:
                tr.log_metrics(metrics, step=0)
            out["mlflow_run_id"] = tr.run_id  # type: ignore[assignment]
    typer.echo(json.dumps(out, indent=2, default=str))


@evaluate_app.callback()
def stage(
    ctx: typer.Context,
    params: Annotated[Path, typer.Option("--params", "-p", help="Params file.")] = Path(
        "params.yaml"
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a param (repeatable)."),
    ] = None,
) -> None:
    """Without a sub-command: the pipeline's evaluate stage (held-out NELBO, sample statistics,
    FID against the held-out split); writes metrics/metrics.json."""
    if ctx.invoked_subcommand is not None:
        return

    with user_errors():
        out = run("evaluate", load_params(params, set_ or []))
    typer.echo(json.dumps(out, indent=2))


def _fidelity(
    metric: str,
    samples: str,
    reference: str | None,
    reference_key: str | None,
    batch_size: int,
    device: str | None,
    weights: str | None,
    experiment: str,
    track: bool,
) -> None:
    with user_errors():
        res = compute_fidelity(
            load_array(samples),
            _reference(reference) if reference else None,
            metrics=metric,
            reference_key=reference_key,
            batch_size=batch_size,
            device=device,
            inception_weights=weights,
        )
        _report(res, metric, experiment, track)


def _fidelity_command(name: str, metric: str, doc: str) -> None:
    """Register ``unmask evaluate <name>``: ``metric`` of SAMPLES against REFERENCE (fid, kid
    and prdc share their arguments and the Inception features)."""

    def command(
        samples: str,
        reference: str,
        reference_key: Annotated[str | None, typer.Option(help="Cache the reference.")] = None,
        batch_size: BatchOpt = 50,
        device: DeviceOpt = None,
        experiment: ExpOpt = "metrics",
        track: TrackOpt = True,
    ) -> None:
        _fidelity(metric, samples, reference, reference_key, batch_size, device, None,
                  experiment, track)

    command.__doc__ = doc
    evaluate_app.command(name)(command)


_fidelity_command("fid", "fid",
                  "FID (standard 2015-12-05 Inception, torch-fidelity) of SAMPLES against "
                  "REFERENCE.")
_fidelity_command("kid", "kid",
                  "KID (cubic-kernel MMD², mean ± std over subsets) on the same Inception "
                  "features.")
_fidelity_command("prdc", "pr",
                  "Precision / recall (Kynkäänniemi et al., k = 3) on the Inception pool3 "
                  "features.")


@evaluate_app.command("is")
def inception_score(
    samples: str,
    weights: Annotated[
        str | None, typer.Option(help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth")
    ] = None,
    batch_size: BatchOpt = 50,
    device: DeviceOpt = None,
    experiment: ExpOpt = "metrics",
    track: TrackOpt = True,
) -> None:
    """Inception Score; unavailable (with the reason) without the standard classifier weights."""
    _fidelity("is", samples, None, None, batch_size, device, weights, experiment, track)


@evaluate_app.command("fvd")
def fvd(
    videos: str,
    reference: str,
    i3d: Annotated[str | None, typer.Option(help="I3D TorchScript (else $UNMASK_I3D_PATH)")] = None,
    reference_key: Annotated[str | None, typer.Option(help="Cache the reference.")] = None,
    per_frame: Annotated[bool, typer.Option(help="Also the per-frame FID.")] = False,
    batch_size: BatchOpt = 8,
    device: DeviceOpt = None,
    experiment: ExpOpt = "metrics",
    track: TrackOpt = True,
) -> None:
    """FVD on I3D features (unavailable without the I3D checkpoint); --per-frame adds
    ``fid_per_frame`` under its own name."""

    with user_errors():
        v, ref = load_array(videos), _reference(reference)
        res = {
            "fvd": compute_fvd(
                v,
                ref,
                i3d_path=i3d,
                reference_key=reference_key,
                batch_size=batch_size,
                device=device,
            )
        }
        if per_frame:
            r = per_frame_fid(v, ref, reference_key=reference_key)
            res[r.name] = r
        _report(res, "fvd", experiment, track)


@evaluate_app.command("miou")
def miou(
    pred: str,
    target: str,
    num_classes: Annotated[int, typer.Option(help="Number of classes.")],
    ignore_index: Annotated[int | None, typer.Option(help="Label to ignore.")] = None,
    experiment: ExpOpt = "metrics",
    track: TrackOpt = True,
) -> None:
    """mIoU of predicted label maps PRED against TARGET (integer arrays of equal shape)."""
    import torch  # why: torch is slow to import


    with user_errors():
        p, t = load_array(pred), load_array(target)
        if p.shape != t.shape:
            raise ValueError(f"pred {pred} has shape {p.shape}, target {target} has {t.shape}")
        m = MeanIoU(num_classes, ignore_index=ignore_index)
        m.update(torch.from_numpy(p.astype(np.int64)), torch.from_numpy(t.astype(np.int64)))
        r = m.compute()
        _report({r.name: r}, "miou", experiment, track)


@evaluate_app.command("ppl")
def ppl(
    params: Annotated[Path, typer.Option("--params", "-p", help="Params file.")] = Path(
        "params.yaml"
    ),
    ckpt: Annotated[Path, typer.Option(help="Checkpoint.")] = Path("models/model.pt"),
    n_sequences: Annotated[int | None, typer.Option(help="Held-out sequences.")] = None,
    mc_samples: Annotated[int | None, typer.Option(help="Monte-Carlo times per sequence.")] = None,
    experiment: ExpOpt = "metrics",
    track: TrackOpt = True,
) -> None:
    """ELBO perplexity exp(NELBO / tokens) of the pipeline's model on the held-out split, with
    its standard error (stratified Monte-Carlo times; ``evaluate.*`` params)."""


    over = [
        *([f"evaluate.n_sequences={n_sequences}"] if n_sequences else []),
        *([f"evaluate.num_samples={mc_samples}"] if mc_samples else []),
    ]
    with user_errors():
        p = load_params(params, over)
        ev, tok = p.evaluate, build_tokenizer(p.tokenizer)
        held = TokenShards(PATHS.tokens / ev.split, tokenizer_hash=tok.hash)
        n = min(ev.n_sequences, len(held))
        model = load_checkpoint(ckpt, p.model, ema=True).model
        x, y = held.tokens_tensor(slice(0, n), flatten=True), held.labels_tensor(slice(0, n))
        bpt, se = nelbo_bits(model, x, y, p)
        settings = {
            "num_sequences": n,
            "mc_samples": ev.num_samples,
            "split": ev.split,
            "tokens_per_sequence": int(x.shape[1]),
            "checkpoint": str(ckpt),
            "tokenizer": tok.identity,
        }
        nats = bpt * math.log(2.0)
        res = {
            "perplexity": MetricResult.ok("perplexity", math.exp(nats), **settings),
            "perplexity_stderr": MetricResult.ok(
                "perplexity_stderr", math.exp(nats) * se * math.log(2.0), **settings
            ),
            "nelbo_bpt": MetricResult.ok("nelbo_bpt", bpt, **settings),
            "nelbo_bpt_stderr": MetricResult.ok("nelbo_bpt_stderr", se, **settings),
        }
        _report(res, "ppl", experiment, track)


@evaluate_app.command("clip")
def clip(
    images: str,
    captions: Path,
    checkpoint: Annotated[str | None, typer.Option(help="open_clip checkpoint file.")] = None,
    model: Annotated[str, typer.Option(help="open_clip model name.")] = "ViT-B-32",
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    experiment: ExpOpt = "metrics",
    track: TrackOpt = True,
) -> None:
    """CLIP score of IMAGES with the CAPTIONS file (one per line); unavailable without a local
    open_clip checkpoint."""

    with user_errors():
        imgs = load_array(images)
        texts = [line for line in Path(captions).read_text().splitlines() if line.strip()]
        if len(texts) != len(imgs):
            raise ValueError(f"{len(imgs)} images but {len(texts)} captions in {captions}")
        r = compute_clip_score(
            imgs, texts, checkpoint, model_name=model, batch_size=batch_size, device=device
        )
        _report({r.name: r}, "clip", experiment, track)
