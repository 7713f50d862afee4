"""Typed configuration of the eMIGM networks and their size presets.

One :class:`MAEConfig` describes both eMIGM variants:

* **discrete** (``vocab_size`` set): the MAE encoder–decoder predicts logits over V clean token
  ids (mask id V) — a drop-in denoiser for :func:`unmask.training.train` and the samplers;
* **continuous** (``token_dim`` set, with a ``head``): the MAE predicts one condition vector per
  position and a small MLP diffusion head models the continuous token (KL-16 latents), as in
  MAR / eMIGM.

Presets (``preset="emigm-b"`` etc.) reproduce eMIGM's ImageNet-256 models (eMIGM Table 6 /
its code ``models/emigm.py``; the B/L/H backbones are MAR-B/L/H): KL-16 tokens (16 channels,
16×16 grid), 64 buffer tokens, 1000 classes, CFG with the mask token, dropout 0.1:

=========  =====  ==============  =====  ===========  ===============
preset     width  enc + dec depth heads  head (d, w)  eMIGM's #params
=========  =====  ==============  =====  ===========  ===============
emigm-xs    448   10 + 10          8     (3, 1024)        69M
emigm-s     512   12 + 12          8     (3, 1024)        97M
emigm-b     768   12 + 12         12     (6, 1024)       208M
emigm-l    1024   16 + 16         16     (8, 1280)       478M
emigm-h    1280   20 + 20         16     (12, 1536)      942M
=========  =====  ==============  =====  ===========  ===============

(``tests/emigm/test_mae.py`` checks the instantiated counts against the last column.) The
``emigm-tiny`` preset is a CPU-sized model for the default Fashion-MNIST pipeline.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["HeadConfig", "MAEConfig", "PRESETS", "PAPER_PARAMS", "preset"]


class HeadConfig(BaseModel):
    """The MLP diffusion head (MAR's ``SimpleMLPAdaLN``) and how it is trained / sampled.

    Attributes:
        depth, width: residual AdaLN MLP blocks and their width (MAR's ``diffloss_d/_w``).
        num_timesteps: T of the discrete cosine noise schedule (MAR / iDDPM: 1000).
        batch_mul: noise draws per masked token in the loss (MAR's ``diffusion_batch_mul``).
        sampler: ``dpm-solver++`` (diffusers' multistep DPM-Solver++, eMIGM's fast sampler)
            or ``ddpm`` (ancestral sampling, the reference).
        steps: number of head solver steps (eMIGM: 8 at 16 MDM steps, 14 at 128).
        solver_order: DPM-Solver++ order (1–3).
        lambda_min: half log-SNR at which both head samplers start (see
            :mod:`unmask.emigm.diffusion_head`; −5.1 for well-trained heads, ≈ −2 for tiny ones).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    depth: int = Field(default=3, ge=1)
    width: int = Field(default=1024, gt=0)
    num_timesteps: int = Field(default=1000, ge=2)
    batch_mul: int = Field(default=4, ge=1)
    sampler: Literal["dpm-solver++", "ddpm"] = "dpm-solver++"
    steps: int = Field(default=8, ge=1)
    solver_order: int = Field(default=2, ge=1, le=3)
    lambda_min: float = Field(default=-5.1, le=0)


class MAEConfig(BaseModel):
    """Architecture of the eMIGM MAE encoder–decoder (see :mod:`unmask.emigm.mae`).

    Exactly one of ``vocab_size`` (discrete tokens) and ``token_dim`` (continuous tokens; needs
    ``head``) is set, and exactly one of ``seq_len`` and ``grid``.

    Attributes:
        dim, depth, heads: encoder width, blocks and attention heads.
        dec_dim, dec_depth, dec_heads: decoder ones (default: equal to the encoder's).
        mlp_ratio, dropout: MLP hidden = mlp_ratio·dim; dropout on attention weights and on the
            residual branches (eMIGM: 0.1 / 0.1).
        buffer_size: tokens prepended to the encoder input (eMIGM: 64); they always take part
            in attention, so a fully masked input still has keys. With ``conditioning="buffer"``
            they carry the class (and time) embedding.
        conditioning: ``buffer`` = eMIGM's class-token conditioning (the condition vector is
            written into every buffer slot); ``adaln`` = DiT adaLN-Zero modulation of every
            block by the condition vector.
        timestep: ``implicit`` (eMIGM: the network does not see t; the mask pattern tells the
            noise level) or ``explicit`` (a sinusoidal embedding of t is added to the condition).
        null_cond: the unconditional input of CFG. ``mask`` = eMIGM's "CFG with the mask
            token": the null class embedding *is* the decoder's [MASK] token parameter (needs
            ``dim == dec_dim``); ``learned`` = a separate learned null vector.
        cond_dropout: probability that a training label becomes the null class.
        use_mae: False is eMIGM's non-MAE ablation: the encoder sees every position, masked ones
            as the [MASK] vector.
        head: the diffusion head (continuous tokens only).
        preset: the preset the defaults came from (a label).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int | None = Field(default=None, gt=0)
    token_dim: int | None = Field(default=None, gt=0)
    seq_len: int | None = Field(default=None, gt=0)
    grid: tuple[int, int] | None = None
    num_classes: int = Field(default=0, ge=0)
    dim: int = Field(default=128, gt=0)
    depth: int = Field(default=2, ge=1)
    heads: int = Field(default=4, gt=0)
    dec_dim: int | None = Field(default=None, gt=0)
    dec_depth: int | None = Field(default=None, ge=0)
    dec_heads: int | None = Field(default=None, gt=0)
    mlp_ratio: float = Field(default=4.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    buffer_size: int = Field(default=4, ge=1)
    conditioning: Literal["buffer", "adaln"] = "buffer"
    timestep: Literal["implicit", "explicit"] = "implicit"
    null_cond: Literal["mask", "learned"] = "mask"
    cond_dropout: float = Field(default=0.1, ge=0, le=1)
    use_mae: bool = True
    head: HeadConfig | None = None
    preset: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            base = preset(data["preset"])
            if data.get("vocab_size") is not None:  # a discrete model of a continuous preset
                base.pop("token_dim", None)
                base.pop("head", None)
            if data.get("seq_len") is not None:
                base.pop("grid", None)
            if isinstance(base.get("head"), dict) and isinstance(data.get("head"), dict):
                data = {**data, "head": {**base["head"], **data["head"]}}
            data = {**base, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> MAEConfig:
        if (self.vocab_size is None) == (self.token_dim is None):
            raise ValueError("set exactly one of 'vocab_size' (discrete) and 'token_dim' "
                             "(continuous)")
        if self.token_dim is not None and self.head is None:
            raise ValueError("a continuous model ('token_dim') needs a diffusion 'head'")
        if self.vocab_size is not None and self.head is not None:
            raise ValueError("'head' is for continuous tokens; a discrete model has none")
        if (self.seq_len is None) == (self.grid is None):
            raise ValueError("set exactly one of 'seq_len' (1-D) and 'grid' (2-D (h, w))")
        if self.grid is not None and min(self.grid) <= 0:
            raise ValueError(f"'grid' sides must be positive, got {self.grid}")
        for d, h, name in ((self.dim, self.heads, ""), (self.decoder_dim, self.decoder_heads,
                                                          "dec_")):
            if d % h:
                raise ValueError(f"'{name}dim' ({d}) must be divisible by '{name}heads' ({h})")
        if not self.use_mae and self.decoder_dim != self.dim:
            raise ValueError("use_mae=False feeds the decoder's [MASK] vector to the encoder: "
                             f"needs dim == dec_dim (got {self.dim}, {self.decoder_dim})")
        if self.null_cond == "mask" and self.decoder_dim != self.dim:
            raise ValueError("null_cond='mask' shares the [MASK] vector between encoder and "
                             f"decoder: needs dim == dec_dim (got {self.dim}, {self.decoder_dim})")
        return self

    # -- derived -------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """L, the number of tokens per sample."""
        return self.seq_len if self.seq_len is not None else math.prod(self.grid)

    @property
    def continuous(self) -> bool:
        return self.token_dim is not None

    @property
    def mask_id(self) -> int:
        """The [MASK] id of the discrete model (V)."""
        if self.vocab_size is None:
            raise AttributeError("a continuous model has no mask id")
        return self.vocab_size

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def decoder_dim(self) -> int:
        return self.dec_dim if self.dec_dim is not None else self.dim

    @property
    def decoder_depth(self) -> int:
        return self.dec_depth if self.dec_depth is not None else self.depth

    @property
    def decoder_heads(self) -> int:
        return self.dec_heads if self.dec_heads is not None else self.heads


def _imagenet(dim: int, depth: int, heads: int, head_d: int, head_w: int) -> dict[str, Any]:
    return {
        "token_dim": 16, "grid": (16, 16), "num_classes": 1000, "dim": dim, "depth": depth,
        "heads": heads, "buffer_size": 64, "dropout": 0.1, "conditioning": "buffer",
        "timestep": "implicit", "null_cond": "mask", "cond_dropout": 0.1,
        "head": {"depth": head_d, "width": head_w, "batch_mul": 4},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "emigm-tiny": {"dim": 128, "depth": 2, "heads": 4, "buffer_size": 4,
                   "head": {"depth": 3, "width": 256, "batch_mul": 4}},
    "emigm-xs": _imagenet(448, 10, 8, 3, 1024),
    "emigm-s": _imagenet(512, 12, 8, 3, 1024),
    "emigm-b": _imagenet(768, 12, 12, 6, 1024),
    "emigm-l": _imagenet(1024, 16, 16, 8, 1280),
    "emigm-h": _imagenet(1280, 20, 16, 12, 1536),
}
#: eMIGM's reported parameter counts (ImageNet 256×256, backbone + diffusion head).
PAPER_PARAMS: dict[str, float] = {
    "emigm-xs": 69e6, "emigm-s": 97e6, "emigm-b": 208e6, "emigm-l": 478e6, "emigm-h": 942e6,
}


def preset(name: str) -> dict[str, Any]:
    """The :class:`MAEConfig` fields of preset ``name`` (a fresh copy)."""
    if name not in PRESETS:
        raise ValueError(f"unknown eMIGM preset {name!r}; valid presets: {', '.join(PRESETS)}")
    out = dict(PRESETS[name])
    if "head" in out:
        out["head"] = dict(out["head"])
    return out
