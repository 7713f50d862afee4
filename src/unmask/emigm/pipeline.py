"""The eMIGM pipelines as library calls (what the stages, flows and ablations call).

* :func:`train_emigm` — train one eMIGM model (``kind="discrete"``: the MAE on token ids through
  :func:`unmask.training.train`; ``"continuous"``: the MAE + diffusion head on latents) and
  return an :class:`EMIGMTrainResult` carrying the training cost (wall time, seconds/step,
  encoder tokens per sample, mask ratio) — e.g. for the t_min ablation.
* :func:`ablate_t_min` — train the same model at several t_min and tabulate the costs.
* :func:`load_discrete`, :class:`TokenData`, and the inputs of a pipeline folder's ``out/``:
  :func:`fid_reference`, :func:`token_decoder`.

Sampling is :func:`unmask.emigm.sample.sample_emigm`; the DVC stages
(``python -m unmask.stages emigm.<stage>``) are :mod:`unmask.emigm.stages`; the folder layout
they share is :mod:`unmask.emigm.layout`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask.config import load_params
from unmask.data.shards import TokenShards
from unmask.emigm.config import MAEConfig
from unmask.emigm.continuous import ContinuousMAE, train_continuous
from unmask.emigm.kl_ae import KLAETokenizer
from unmask.emigm.layout import OUT, Kind
from unmask.emigm.mae import MAE
from unmask.emigm.params import EMIGMParams
from unmask.runtime import seed_everything
from unmask.tokenizers.kl import KLTokenizer
from unmask.tokenizers.vq import VQTokenizer
from unmask.training import latest_checkpoint, read_checkpoint, train

__all__ = ["EMIGMTrainResult", "TokenData", "train_emigm", "ablate_t_min", "load_discrete",
           "fid_reference", "token_decoder", "Kind", "OUT"]



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
        params = load_params(params, schema=EMIGMParams)
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
        params = load_params(params, schema=EMIGMParams)
    if data is None and tokens_path is not None:
        data = TokenData.load(tokens_path)
    return [train_emigm(params, kind, Path(out_dir) / f"t_min={v:g}", data=data, t_min=v,
                        progress=progress).as_dict() for v in values]


# -- inputs of a pipeline folder (``out/``, as the stages write it) -----------------------------
def fid_reference(params: EMIGMParams, out: Path = OUT) -> tuple[Any, str | None, str]:
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


def token_decoder(params: EMIGMParams, kind: Kind, out: Path = OUT) -> Any:
    """token ids (N, h, w) / latents (N, C, h, w) → uint8 images."""
    if params.data.kind == "arrays":
        if kind == "discrete" or params.data.tokenizer is None:
            raise ValueError("data.kind 'arrays' evaluates continuous models with data.tokenizer")
        load = (KLTokenizer.from_mar if params.data.tokenizer_format == "mar"
                else KLTokenizer.from_diffusers)
        return load(params.data.tokenizer).decode
    if kind == "discrete":
        return VQTokenizer.load(out / "tokens" / "vq.pt").decode
    return KLAETokenizer.load(out / "tokens" / "kl.pt").decode
