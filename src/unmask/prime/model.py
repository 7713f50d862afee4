"""The MDM-Prime sub-token denoiser: the foundation transformer trunk with a sub-token
embedding in front and the validity-filtered joint over full tokens behind.

    y_t (B, L, ℓ) ∈ {0..b}          ℓ sub-tokens per position, b = their mask id
      │  e^i = [E_1(y_t^{i,1}) ‖ … ‖ E_ℓ(y_t^{i,ℓ})] ∈ R^D      E_j: (b+1) × D_j, Σ D_j = D
      ▼                                                        (MDM-Prime §3.2, Fig. 6)
    trunk: positions + adaLN-Zero blocks + final layer of :class:`unmask.models.Transformer`
      ▼
    f_θ(y_t) (B, L, C)  →  filter (MDM-Prime eq. 7)  →  p_θ(x^i | y_t)  (joint over the token)
      ▼
    log p_θ(y^{i,j} = v | y_t) (B, L·ℓ, b): the sub-token marginals the ELBO scores

The trunk is reused by composition: a :class:`~unmask.models.Transformer` built for the token
vocabulary C and length L, whose (C + 1) × D token table is replaced by the concatenated
sub-token embedding (it receives each position's partially masked digits packed into one
state id, :meth:`SubTokenCodec.pack_state`, so the trunk's own ``forward`` runs unchanged).
D_j = ⌊D/ℓ⌋ (+1 for the first D mod ℓ slots) when ℓ does not divide D.

Interfaces:

* ``model(y_t, t, y)`` with y_t (B, L·ℓ) or (B, h, w·ℓ) flat sub-tokens → sub-token marginal
  log-probabilities (…, b). With ``model.cfg`` (vocab b, length L·ℓ) this is a plain masked
  model over sub-tokens, so :func:`unmask.training.train`, :func:`unmask.losses.diffusion_loss`
  and :func:`unmask.likelihood.nelbo_with_stderr` apply to it unchanged (the sub-token ELBO
  with marginals, see :mod:`unmask.prime.likelihood`).
* ``model.joint(y_t, t, y)`` with y_t (B, L, ℓ) → filtered joint logits (B, L, C), what the
  sampler (:mod:`unmask.prime.sampling`) draws full tokens from; :class:`JointView` exposes it
  as a module for :class:`~unmask.models.ConditionedDenoiser` (labels, CFG).

``carry_over: false`` (MDM-Prime Tab. A2's runs without it) drops the eq. 7 consistency filter
from ``joint`` and ``forward``: the joint is the plain softmax over the C ids and every sub-token,
observed or not, gets that joint's marginal, so training and the ELBO no longer force observed
digits to carry over. The sampler still filters the draws (a state must stay decodable), which
is carry-over at inference only (MDM-Prime §A.5.3 / Tab. A5).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from unmask.models import ModelConfig, Transformer
from unmask.models.transformer import modulate
from unmask.prime.rotary import RotaryAttention
from unmask.prime.subtokens import FILL, SubTokenCodec
from unmask.training.checkpoint import read_checkpoint, save_checkpoint

__all__ = [
    "PRESETS",
    "PrimeConfig",
    "SubTokenEmbedding",
    "PrimeTransformer",
    "JointView",
    "save_prime_model",
    "load_prime_model",
]

#: Model sizes of the MDM-Prime experiments (fields of :class:`ModelConfig`), resolved here so
#: :mod:`unmask.models.presets` stays untouched.
#:
#: * ``mdlm-small``: MDLM's OpenWebText model (Sahoo et al. 2024, the "small" DiT: 12 blocks,
#:   width 768, 12 heads, GPT-2 vocabulary, L = 1024), which MDM-Prime also uses for OWT.
#:   Rotary positions as MDLM (``rotary``: no position table, :mod:`unmask.prime.rotary`).
#: * ``prime-cifar``: a ~12-block width-768 transformer on the 32 × 96 pixel-token grid of
#:   CIFAR-10 / ImageNet-32 (C = 256 intensities, channels interleaved).
#: * ``prime-text-tiny``: the CPU default for the embedded corpus.
PRESETS: dict[str, dict[str, Any]] = {
    "mdlm-small": {"vocab_size": 50257, "seq_len": 1024, "dim": 768, "depth": 12, "heads": 12,
                   "mlp_ratio": 4.0, "dropout": 0.1, "pos": "learned1d", "rotary": True},
    "prime-cifar": {"vocab_size": 256, "grid": (32, 96), "dim": 768, "depth": 12, "heads": 12,
                    "mlp_ratio": 4.0, "pos": "learned2d"},
    "prime-text-tiny": {"dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 4.0},
}


class PrimeConfig(BaseModel):
    """A sub-token model: the token-level trunk config and the number of sub-tokens ℓ.

    Attributes:
        model: the trunk's :class:`ModelConfig` at the *token* level (vocab_size = C,
            seq_len = L or grid = (h, w)). ``null_cond`` must be ``learned`` (the [MASK]
            token has no single embedding row here).
        ell: sub-tokens per token (1 = plain MDM).
        rotary: rotary position embeddings in every attention layer instead of the trunk's
            learned position table (MDLM's choice; :mod:`unmask.prime.rotary`). Accepted
            inside the ``model`` dict too (``model: {preset: mdlm-small}`` sets it).
        carry_over: the carry-over parameterisation (MDM-Prime §3.2 eq. 6 via the eq. 7
            filter, Prop. A.4); ``False``: the unfiltered joint (Tab. A2's runs without it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig
    ell: int = Field(default=1, ge=1, le=32)
    rotary: bool = False
    carry_over: bool = True

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            m = dict(data["model"])
            name = m.get("preset")
            if name in PRESETS:
                base = dict(PRESETS[name])
                if m.get("seq_len") is not None and "grid" not in m:
                    base.pop("grid", None)
                    if base.get("pos") == "learned2d":
                        base.pop("pos")
                if m.get("grid") is not None and "seq_len" not in m:
                    base.pop("seq_len", None)
                m = {**base, **m, "preset": None}
                data = {**data, "model": m}
            m = dict(data["model"])
            if "rotary" in m:  # a PrimeConfig field written in the model section
                rot = m.pop("rotary")
                data = {**data, "model": m}
                data.setdefault("rotary", rot)
        return data

    @model_validator(mode="after")
    def _check(self) -> PrimeConfig:
        if self.model.null_cond != "learned":
            raise ValueError("prime models need model.null_cond = 'learned'")
        if self.rotary and (self.model.dim // self.model.heads) % 2:
            raise ValueError(f"model.rotary needs an even head width, got dim "
                             f"{self.model.dim} / heads {self.model.heads}")
        return self

    @property
    def codec(self) -> SubTokenCodec:
        return SubTokenCodec(self.model.vocab_size, self.ell)

    def interface(self) -> ModelConfig:
        """The sub-token-level config the training loop sees: vocab b, length L·ℓ
        (grid (h, w·ℓ)), same classes, dropout and timestep mode."""
        upd: dict[str, Any] = {"vocab_size": self.codec.base}
        if self.model.grid is not None:
            h, w = self.model.grid
            upd["grid"] = (h, w * self.ell)
        else:
            upd["seq_len"] = self.model.seq_len * self.ell
        return self.model.model_copy(update=upd)


class SubTokenEmbedding(nn.Module):
    """Concatenated per-slot embeddings of a position's ℓ sub-tokens (each table has b + 1
    rows, row b = that sub-token's [MASK]), indexed by packed state ids (see module doc)."""

    def __init__(self, codec: SubTokenCodec, dim: int) -> None:
        super().__init__()
        if dim < codec.ell:
            raise ValueError(f"model dim {dim} is smaller than ell={codec.ell}")
        self.codec = codec
        widths = [dim // codec.ell + (1 if j < dim % codec.ell else 0) for j in range(codec.ell)]
        self.tables = nn.ModuleList(nn.Embedding(codec.base + 1, w) for w in widths)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for t in self.tables:
            nn.init.normal_(t.weight, std=0.02)

    def forward(self, state: Tensor) -> Tensor:
        y = self.codec.unpack_state(state)  # (..., ℓ)
        return torch.cat([tab(y[..., j]) for j, tab in enumerate(self.tables)], dim=-1)


class PrimeTransformer(nn.Module):
    """MDM-Prime denoiser over sub-tokens (see the module docstring).

    Args:
        cfg: a :class:`PrimeConfig` (or a dict of its fields).
    """

    def __init__(self, cfg: PrimeConfig | dict) -> None:
        super().__init__()
        self.prime_cfg = cfg if isinstance(cfg, PrimeConfig) else PrimeConfig(**cfg)
        self.codec = self.prime_cfg.codec
        self.cfg = self.prime_cfg.interface()
        self.trunk = Transformer(self.prime_cfg.model)
        # Composition: the (C + 1) × D token table gives way to the sub-token embedding.
        self.trunk.tok_emb = SubTokenEmbedding(self.codec, self.prime_cfg.model.dim)
        if self.prime_cfg.rotary:  # RoPE in every block, no position table (as MDLM)
            for name in ("pos_emb", "pos_row", "pos_col", "pos_space", "pos_time"):
                if hasattr(self.trunk, name):
                    delattr(self.trunk, name)
            for block in self.trunk.blocks:
                old = block.attn
                block.attn = RotaryAttention(self.prime_cfg.model.dim, old.heads, old.dropout)
                block.attn.load_state_dict(old.state_dict())  # keep the trunk's init

    # -- attributes the samplers / training loop / ConditionedDenoiser read ----------------
    @property
    def ell(self) -> int:
        return self.codec.ell

    @property
    def time_conditioned(self) -> bool:
        return self.trunk.time_conditioned

    @property
    def null_class(self) -> int:
        return self.trunk.null_class

    @property
    def mask_id(self) -> int:
        """The sub-token mask id b."""
        return self.codec.mask_id

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.trunk.drop_labels(y, generator)

    # -- forward passes ---------------------------------------------------------------------
    def _grouped(self, y_t: Tensor) -> Tensor:
        """Any of (B, L, ℓ), (B, L·ℓ), (B, h, w·ℓ) → (B, L, ℓ)."""
        b, L = y_t.shape[0], self.prime_cfg.model.length
        if y_t.numel() != b * L * self.ell:
            raise ValueError(f"expected {L}×{self.ell} sub-tokens per sample, got "
                             f"shape {tuple(y_t.shape)}")
        return y_t.reshape(b, L, self.ell)

    def _features(self, yg: Tensor, t: Tensor | None, y: Tensor | None) -> Tensor:
        """The trunk up to its head: adaLN-modulated final features (B, L, D).

        Same computation as :meth:`Transformer.forward` (embedding + positions, condition,
        blocks, final norm/modulation), stopped before the C-way head so that the head can be
        applied to the positions that need it only."""
        tr = self.trunk
        h = tr.tok_emb(self.codec.pack_state(yg))
        h = tr.drop(h if self.prime_cfg.rotary else h + tr.positions())
        c = tr.condition(t, y, yg.shape[0], yg.device)
        for block in tr.blocks:
            h = block(h, c)
        shift, scale = tr.final.ada(c).chunk(2, dim=-1)
        return modulate(tr.final.norm(h), shift, scale)

    def joint(self, y_t: Tensor, t: Tensor | None, y: Tensor | None = None) -> Tensor:
        """Filtered joint logits over the C full-token classes, (B, L, C) (MDM-Prime eq. 7;
        filtered entries hold the finite :data:`FILL`); unfiltered without carry-over."""
        yg = self._grouped(y_t)
        logits = self.trunk.final.head(self._features(yg, t, y))  # (B, L, C)
        if not self.prime_cfg.carry_over:
            return logits
        return logits.masked_fill(~self.codec.valid_mask(yg), FILL)

    def forward(self, y_t: Tensor, t: Tensor | None, y: Tensor | None = None) -> Tensor:
        """Sub-token marginal log-probabilities, shaped like ``y_t`` plus a last axis of b.

        The C-way head runs only at positions with a masked sub-token; a fully observed
        position's marginals are its digits' point masses (log 1 = 0, elsewhere log(tiny)),
        exactly what the filtered joint gives there, and are never scored by the ELBO.
        Without carry-over every position gets the unfiltered joint's marginals."""
        yg = self._grouped(y_t)
        carry = self.prime_cfg.carry_over
        need = (yg == self.codec.mask_id).any(-1)  # (B, L)
        if not carry:  # observed digits get the head's marginals too (nothing forced)
            need = torch.ones_like(need)
        feats = self._features(yg, t, y)
        b = self.codec.base
        dig = yg.clamp(max=b - 1)
        tiny = torch.finfo(torch.float32).tiny
        out = torch.full((*yg.shape, b), math.log(tiny), device=yg.device)
        out = out.scatter(-1, dig[..., None], 0.0)
        if bool(need.any()):
            logits = self.trunk.final.head(feats[need])  # (n, C)
            if carry:
                logits = logits.masked_fill(~self.codec.valid_mask(yg[need]), FILL)
            out = out.index_put((need,), self.codec.log_marginals(logits).to(out.dtype))
        return out.reshape(*y_t.shape, b)


class JointView(nn.Module):
    """``forward = model.joint``: lets :class:`~unmask.models.ConditionedDenoiser` (labels,
    one-pass CFG) wrap the joint head for the sampler."""

    def __init__(self, model: PrimeTransformer) -> None:
        super().__init__()
        self.model = model

    @property
    def time_conditioned(self) -> bool:
        return self.model.time_conditioned

    @property
    def null_class(self) -> int:
        return self.model.null_class

    def forward(self, y_t: Tensor, t: Tensor | None, y: Tensor | None = None) -> Tensor:
        return self.model.joint(y_t, t, y)


def save_prime_model(model: PrimeTransformer, path: str | Path, *, weights: dict | None = None,
                     extra: dict | None = None) -> Path:
    """Write a self-describing model file (PrimeConfig + weights, sha256 beside it)."""
    state = {
        "prime_config": model.prime_cfg.model_dump(mode="json"),
        "model": weights if weights is not None else model.state_dict(),
        **(extra or {}),
    }
    return save_checkpoint(state, path)


def load_prime_model(path: str | Path, map_location: Any = "cpu") -> tuple[PrimeTransformer,
                                                                          dict]:
    """Rebuild a :class:`PrimeTransformer` from :func:`save_prime_model`'s file (eval mode)."""
    state = read_checkpoint(path, map_location)
    if "prime_config" not in state:
        raise ValueError(f"{path} is not a prime model file (no 'prime_config')")
    model = PrimeTransformer(PrimeConfig(**state["prime_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state
