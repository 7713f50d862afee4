"""The eMIGM pipelines as library calls, and their DVC stages.

Library API (what flows and ablations call):

* :func:`train_emigm` — train one eMIGM model (``kind="discrete"``: the MAE on token ids through
  :func:`unmask.training.train`; ``"continuous"``: the MAE + diffusion head on latents) and
  return an :class:`EMIGMTrainResult` carrying the training cost (wall time, seconds/step,
  encoder tokens per sample, mask ratio) — e.g. for the t_min ablation.
* :func:`sample_emigm` — class-conditional samples with eMIGM's MDM sampler and interval CFG,
  decoded to images, with seconds per image and eMIGM's NFE label.
* :func:`ablate_t_min` — train the same model at several t_min and tabulate the costs.

Stages (``python -m unmask.emigm.pipeline <stage> [--params params.yaml] [--set k=v]``, run by
``pipelines/emigm-default/dvc.yaml`` with the pipeline folder as working directory; everything
is written under ``out/``):

    prepare → tokenize-discrete (VQ-VAE) ─→ train-discrete ──┐
            → tokenize-continuous (KL-AE) → train-continuous ┴→ evaluate (FID, s/image, report)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from unmask import schedules
from unmask.emigm.config import MAEConfig
from unmask.emigm.continuous import (
    ContinuousMAE,
    load_continuous,
    nfe_label,
    sample_continuous,
    train_continuous,
)
from unmask.emigm.mae import MAE
from unmask.emigm.objective import cfg_weight, emigm_cfg_interval
from unmask.emigm.params import EMIGMParams, load_emigm_params
from unmask.runtime import configure_threads, read_timings, seed_everything, write_timings
from unmask.tracking_tags import PAPER, PAPER_EMIGM, STAGE

__all__ = ["EMIGMTrainResult", "TokenData", "train_emigm", "sample_emigm", "ablate_t_min",
           "load_discrete", "STAGES", "main"]

Kind = Literal["discrete", "continuous"]
OUT = Path("out")
TIMINGS = OUT / "runs" / "timings"  # wall-clock records: no stage declares them (git-ignored)


@dataclass
class TokenData:
    """Training data of one branch: ``tokens`` (N, h, w) int64 ids, or float latents as
    (N, L, C) or (N, C, h, w) (a KL tokenizer's layout, converted per batch), ``labels`` (N,),
    the token ``grid`` (h, w) and the vocabulary size (discrete only)."""

    tokens: torch.Tensor
    labels: torch.Tensor | None
    grid: tuple[int, int]
    vocab_size: int | None = None

    @classmethod
    def load(cls, path: str | Path) -> TokenData:
        """From an ``.npz`` (``tokens`` [+ ``vocab_size``] or ``latents`` (N, C, h, w), and
        ``labels``) or a token-shard directory (:class:`~unmask.data.shards.TokenShards`, e.g.
        the KL-16 pre-extraction with ``latents.npy``). Shard arrays stay memory-mapped."""
        path = Path(path)
        if path.is_dir():
            from unmask.data.shards import TokenShards

            sh = TokenShards(path, verify=False)
            labels = sh.labels_tensor()
            if sh.latents is not None:
                lat = torch.from_numpy(np.asarray(sh.latents))
                return cls(lat, labels, tuple(lat.shape[2:4]))
            tok = sh.tokens_tensor()
            return cls(tok, labels, tuple(tok.shape[1:3]), sh.vocab_size)
        z = np.load(path)
        labels = torch.from_numpy(z["labels"]).long() if "labels" in z.files else None
        if "tokens" in z.files:
            tok = torch.from_numpy(z["tokens"]).long()
            vocab = int(z["vocab_size"]) if "vocab_size" in z.files else int(tok.max()) + 1
            return cls(tok, labels, tuple(tok.shape[1:3]), vocab)
        lat = torch.from_numpy(z["latents"]).float()  # (N, C, h, w), as a KL tokenizer writes
        return cls(lat, labels, tuple(lat.shape[2:4]))


@dataclass
class EMIGMTrainResult:
    """One training run and its cost."""

    kind: str
    t_min: float
    checkpoint: str
    num_params: int
    steps: int
    loss: float | None
    elapsed_s: float
    seconds_per_step: float
    encoder_tokens_per_sample: float  # visible tokens the MAE encoder processed (no buffer)
    mask_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model_config(params: EMIGMParams, kind: Kind, data: TokenData) -> MAEConfig:
    classes = params.data.num_classes if data.labels is not None else 0
    if kind == "discrete":
        return params.discrete_model(vocab_size=data.vocab_size, grid=data.grid,
                                     num_classes=classes)
    dim = data.tokens.shape[1] if data.tokens.dim() == 4 else data.tokens.shape[-1]
    return params.continuous_model(token_dim=dim, grid=data.grid, num_classes=classes)


class _EncoderLoad:
    """Forward pre-hook counting the visible tokens a discrete MAE's encoder receives."""

    def __init__(self, mask_id: int) -> None:
        self.mask_id, self.visible, self.masked, self.rows = mask_id, 0.0, 0.0, 0

    def __call__(self, module: torch.nn.Module, args: tuple) -> None:
        if module.training:
            x = args[0].reshape(args[0].shape[0], -1)
            m = x == self.mask_id
            self.visible += float((~m).sum())
            self.masked += float(m.sum())
            self.rows += x.shape[0]


def train_emigm(
    params: EMIGMParams | str | Path,
    kind: Kind,
    out_dir: str | Path,
    *,
    data: TokenData | None = None,
    tokens_path: str | Path | None = None,
    t_min: float | None = None,
    tracker: Any = None,
    progress: bool = True,
) -> EMIGMTrainResult:
    """Train the ``kind`` eMIGM model of ``params`` into ``out_dir`` (a fresh run).

    Args:
        params: an :class:`EMIGMParams` or a params file.
        data: the training tokens; default: ``tokens_path`` (an ``.npz`` written by the
            tokenize stages, or by the KL-16 pre-extraction: ``latents`` (N, C, h, w)).
        t_min: overrides ``objective.t_min`` (eMIGM's mask-time truncation).
        tracker: an :mod:`unmask.tracking` tracker (metrics are logged to its active run).
    """
    if not isinstance(params, EMIGMParams):
        params = load_emigm_params(params)
    if t_min is not None:
        params = params.model_copy(update={"objective": params.objective.model_copy(
            update={"t_min": float(t_min)})})
    if data is None:
        if tokens_path is None:
            raise ValueError("give data or tokens_path")
        data = TokenData.load(tokens_path)
    section = params.discrete if kind == "discrete" else params.continuous
    tcfg = section.train_config(params.objective)
    mcfg = _model_config(params, kind, data)
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    labels = data.labels if mcfg.num_classes else None
    # The initialisation draws from the global RNG: seed it, so a run is a pure function of
    # (params, data, code) — the loop reseeds for dropout / noise afterwards.
    seed_everything(tcfg.seed)
    if kind == "discrete":
        from unmask.training import train

        model = MAE(mcfg)
        load = _EncoderLoad(mcfg.mask_id)
        handle = model.register_forward_pre_hook(load)
        try:
            # resume=False: the foundation's resume check rebuilds a ModelConfig from the stored
            # config, which an MAEConfig is not (runs here are always fresh).
            res = train(model, data.tokens, labels, tcfg, out_dir, tracker=tracker,
                        resume=False, progress=progress)
        finally:
            handle.remove()
        n = max(load.rows, 1)
        return EMIGMTrainResult(
            kind, params.objective.t_min, str(res.checkpoint), model.num_params(), res.step,
            res.loss, res.elapsed_s, res.elapsed_s / max(res.step, 1), load.visible / n,
            load.masked / max(load.masked + load.visible, 1))
    model = ContinuousMAE(mcfg)
    res = train_continuous(model, data.tokens, labels, tcfg, out_dir, tracker=tracker,
                           progress=progress)
    return EMIGMTrainResult(
        kind, params.objective.t_min, str(res.checkpoint), model.num_params(), res.step,
        res.loss, res.elapsed_s, res.seconds_per_step, res.visible_tokens, res.mask_ratio)


def load_discrete(path: str | Path, *, ema: bool = True) -> MAE:
    """Rebuild a discrete :class:`MAE` from a checkpoint of :func:`unmask.training.train`."""
    from unmask.training import latest_checkpoint, read_checkpoint

    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no valid checkpoint in {path}")
        state = found[1]
    else:
        state = read_checkpoint(path)
    model = MAE(MAEConfig(**state["model_config"]))
    model.load_state_dict(state["ema"]["shadow"] if ema and state.get("ema") else state["model"])
    return model.eval()


@dataclass
class Samples:
    """Decoded samples of :func:`sample_emigm` with their cost (``nfe`` summed over batches,
    ``nfe_label`` eMIGM's per-batch notation, e.g. 16×1.5)."""

    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray
    seconds: float
    seconds_per_image: float
    nfe: int
    nfe_label: str


def sample_emigm(
    model: MAE | ContinuousMAE,
    decode: Any,
    labels: torch.Tensor,
    params: EMIGMParams,
    *,
    batch_size: int = 250,
    progress: bool = False,
) -> Samples:
    """Class-conditional samples (``labels``) decoded by ``decode`` (token ids (N, h, w) or
    latents (N, C, h, w) → uint8 images), with eMIGM's MDM sampler and CFG interval."""
    from unmask.models import ConditionedDenoiser
    from unmask.sampling import sample_with_info

    s, cfg = params.sample, model.cfg
    w = cfg_weight(s.cfg)
    interval = emigm_cfg_interval(*s.cfg_interval, s.steps)
    schedule = schedules.get(params.discrete.train_config(params.objective).schedule
                             if isinstance(model, MAE)
                             else params.continuous.train_config(params.objective).schedule)
    gen = torch.Generator().manual_seed(s.seed)
    h, wd = cfg.grid
    images, nfe, steps, guided = [], 0, 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            y = labels[i : i + batch_size]
            if isinstance(model, MAE):
                res = sample_with_info(
                    ConditionedDenoiser(model, y), batch_size=len(y), seq_len=cfg.length,
                    mask_id=cfg.mask_id, method="mdm", steps=s.steps, schedule=schedule,
                    temperature=s.temperature, generator=gen, cfg_scale=w,
                    cfg_schedule="interval", cfg_interval=interval, progress=progress)
                images.append(decode(res.tokens.reshape(-1, h, wd)))
                nfe, steps, guided = nfe + res.nfe, steps + res.steps, guided + res.guided_steps
            else:
                res = sample_continuous(
                    model, y, steps=s.steps, schedule=schedule, cfg_scale=w,
                    cfg_schedule="interval", cfg_interval=interval, temperature=s.temperature,
                    head_sampler=s.head_sampler, head_steps=s.head_steps, generator=gen,
                    progress=progress)
                lat = res.tokens.reshape(len(y), h, wd, -1).permute(0, 3, 1, 2)
                images.append(decode(lat))
                nfe, steps, guided = nfe + res.nfe, steps + res.steps, guided + res.guided_steps
    seconds = time.perf_counter() - start
    n_batches = -(-len(labels) // batch_size)
    label = nfe_label(round(steps / n_batches), round(guided / n_batches))
    return Samples(np.concatenate(images), labels.numpy(), seconds, seconds / len(labels), nfe,
                   label)


def ablate_t_min(
    params: EMIGMParams | str | Path,
    kind: Kind,
    out_dir: str | Path,
    *,
    values: Sequence[float] = (0.0, 0.2),
    data: TokenData | None = None,
    tokens_path: str | Path | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train one model per eMIGM t_min (same seed and data) and return their cost rows."""
    if not isinstance(params, EMIGMParams):
        params = load_emigm_params(params)
    if data is None and tokens_path is not None:
        data = TokenData.load(tokens_path)
    return [train_emigm(params, kind, Path(out_dir) / f"t_min={v:g}", data=data, t_min=v,
                        progress=progress).as_dict() for v in values]


# -- DVC stages ------------------------------------------------------------------------------
def _tracker(params: EMIGMParams) -> Any:
    from unmask.tracking import NullTracker, Tracker

    return Tracker(root=params.tracking.root) if params.tracking.enabled else NullTracker()


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def stage_prepare(params: EMIGMParams) -> None:
    """Fashion-MNIST subsets → ``out/data/{train,test}.npz`` (images uint8, labels)."""
    from unmask.data import fashion_mnist

    d = params.data
    if d.kind != "fashion_mnist":
        raise ValueError("stage 'prepare' is for data.kind 'fashion_mnist'")
    rng = np.random.default_rng(d.seed)
    out = OUT / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", d.n_train), ("test", d.n_test)):
        x, y = fashion_mnist.load(split, d.root)
        idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
        np.savez_compressed(out / f"{split}.npz", images=x[idx], labels=y[idx].astype(np.int64))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def stage_tokenize(params: EMIGMParams, kind: Kind) -> None:
    """Train the branch's tokenizer (VQ-VAE / KL-AE) and encode the training images."""
    train = np.load(OUT / "data" / "train.npz")
    test = np.load(OUT / "data" / "test.npz")
    out = OUT / "tokens"
    out.mkdir(parents=True, exist_ok=True)
    if kind == "discrete":
        from unmask.tokenizers.vq import VQTokenizer, evaluate_vq, train_vq

        tok = VQTokenizer(train_vq(train["images"], params.vq))
        tok.save(out / "vq.pt")
        ids = tok.encode(train["images"]).numpy().astype(np.int64)
        np.savez_compressed(out / "discrete.npz", tokens=ids, labels=train["labels"],
                            vocab_size=tok.vocab_size)
        stats = evaluate_vq(tok.model, test["images"])
    else:
        from unmask.emigm.kl_ae import train_kl_ae

        tok = train_kl_ae(train["images"], params.kl)
        tok.save(out / "kl.pt")
        lat = tok.encode(train["images"]).numpy()
        np.savez_compressed(out / "continuous.npz", latents=lat, labels=train["labels"])
        rec = tok.decode(tok.encode(test["images"]))
        stats = {"psnr": _psnr(test["images"], rec), "scale_factor": tok.scale_factor}
    _write_json(OUT / "metrics" / f"tokenizer_{kind}.json", stats)


def stage_train(params: EMIGMParams, kind: Kind) -> None:
    tracker = _tracker(params)
    name = f"train-{kind}"
    tokens = (params.data.train_path if params.data.kind == "arrays"
              else OUT / "tokens" / f"{kind}.npz")
    with tracker.start_run(params.tracking.experiment, name,
                           params={"kind": kind, **params.model_dump(mode="json")},
                           tags={PAPER: PAPER_EMIGM, STAGE: "train", "kind": kind}):
        res = train_emigm(params, kind, OUT / "models" / kind, tokens_path=tokens,
                          tracker=tracker)
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


def _reference(params: EMIGMParams, out: Path = OUT) -> tuple[Any, str | None, str]:
    """(FID reference images or cache key, key to cache it under, description)."""
    n = params.evaluate.n_fid
    if params.data.kind == "fashion_mnist":
        ref = np.load(out / "data" / "test.npz")["images"][:n]
        return ref, f"emigm-fmnist-test{params.data.n_test}-{len(ref)}-seed{params.data.seed}", \
            f"{len(ref)} held-out test images"
    ref_path = params.data.reference
    if ref_path is None:
        raise ValueError("data.reference (an .npz of reference images or a cache key) is needed")
    if not ref_path.endswith(".npz"):
        return ref_path, None, f"cached reference {ref_path!r}"
    z = np.load(ref_path)
    return z[z.files[0]], Path(ref_path).stem, f"reference batch {ref_path}"


def _decoder(params: EMIGMParams, kind: Kind, out: Path = OUT) -> Any:
    """token ids (N, h, w) / latents (N, C, h, w) → uint8 images."""
    if params.data.kind == "arrays":
        if kind == "discrete" or params.data.tokenizer is None:
            raise ValueError("data.kind 'arrays' evaluates continuous models with data.tokenizer")
        from unmask.tokenizers.kl import KLTokenizer

        load = (KLTokenizer.from_mar if params.data.tokenizer_format == "mar"
                else KLTokenizer.from_diffusers)
        return load(params.data.tokenizer).decode
    if kind == "discrete":
        from unmask.tokenizers.vq import VQTokenizer

        return VQTokenizer.load(out / "tokens" / "vq.pt").decode
    from unmask.emigm.kl_ae import KLAETokenizer

    return KLAETokenizer.load(out / "tokens" / "kl.pt").decode


def stage_evaluate(params: EMIGMParams) -> None:
    """Sample every enabled branch, FID against the reference, s/image → MLflow, JSON, sample
    grids and an HTML report."""
    from unmask.metrics import as_mlflow_metrics, compute_fidelity
    from unmask.report import write_report
    from unmask.reporting.images import image_grid, save_png

    n, classes = params.evaluate.n_fid, params.data.num_classes
    ref, key, ref_note = _reference(params)
    labels = torch.arange(n) % classes
    tracker = _tracker(params)
    metrics: dict[str, Any] = {}
    timings: dict[str, float] = {}  # wall clock: runs/timings, not the DVC metrics file
    figures: dict[str, Path] = {}
    with tracker.start_run(params.tracking.experiment, "evaluate",
                           params=params.model_dump(mode="json"),
                           tags={PAPER: PAPER_EMIGM, STAGE: "evaluate"}):
        for kind in ("discrete", "continuous"):
            section = params.discrete if kind == "discrete" else params.continuous
            if not section.enabled:
                continue
            ckpt = OUT / "models" / kind / "model.pt"
            model = load_discrete(ckpt) if kind == "discrete" else load_continuous(ckpt)
            decode = _decoder(params, kind)
            smp = sample_emigm(model, decode, labels, params,
                               batch_size=params.evaluate.batch_size, progress=True)
            fid = compute_fidelity(smp.images, ref, metrics="fid", reference_key=key,
                                   batch_size=50)
            row = {f"{kind}.{k}": v for k, v in as_mlflow_metrics(fid).items()}
            row.update({f"{kind}.nfe": smp.nfe, f"{kind}.num_samples": len(smp.images)})
            timings[f"{kind}.seconds_per_image"] = smp.seconds_per_image
            tracker.log_metrics({**row, f"{kind}.seconds_per_image": smp.seconds_per_image},
                                step=0)
            metrics.update(row, **{f"{kind}.nfe_label": smp.nfe_label})
            per = params.sample.n_per_class
            shown = range(min(classes, 10))
            grid = np.stack([smp.images[smp.labels == c][:per] for c in shown])
            figures[f"{kind} samples (rows: classes)"] = save_png(
                image_grid(grid, scale=2), OUT / "samples" / f"{kind}.png")
            tracker.log_artifact(figures[f"{kind} samples (rows: classes)"])
        for kind in ("discrete", "continuous"):
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
    from unmask.runtime import git_commit

    write_report(OUT / "report", title=f"eMIGM — {params.tracking.experiment}",
                 metrics=metrics, params=params.model_dump(mode="json"), figures=figures,
                 commit=git_commit(),
                 notes={"FID": f"{n} class-balanced samples vs {ref_note} (a small-sample FID "
                               "is biased upwards: compare within this table)"})


STAGES = ("prepare", "tokenize-discrete", "tokenize-continuous", "train-discrete",
          "train-continuous", "evaluate")


def run_stage(name: str, params: EMIGMParams) -> None:
    if name == "prepare":
        stage_prepare(params)
    elif name.startswith("tokenize-"):
        stage_tokenize(params, name.removeprefix("tokenize-"))  # type: ignore[arg-type]
    elif name.startswith("train-"):
        stage_train(params, name.removeprefix("train-"))  # type: ignore[arg-type]
    elif name == "evaluate":
        stage_evaluate(params)
    else:
        raise ValueError(f"unknown stage {name!r}; valid: {', '.join(STAGES)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m unmask.emigm.pipeline")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from unmask.errors import user_errors

    with user_errors():
        configure_threads()  # $UNMASK_THREADS or 1, never the load: same bits every run
        run_stage(args.stage, load_emigm_params(args.params, args.overrides))


if __name__ == "__main__":
    main(sys.argv[1:])
