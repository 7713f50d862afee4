"""Bidirectional DiT-style transformer denoiser over discrete tokens.

    x_t (B, L) ∈ {0..V}  ──tok_emb + pos──▶  h_0 (B, L, D)
    c = class_emb(y) [+ time_emb(t) for ETM]                       (B, D)
    h_{k+1} = Block_k(h_k, c)      adaLN-Zero (DiT, Peebles & Xie 2023):
        h ← h + g1 ⊙ Attn(LN(h)(1 + s1) + b1)
        h ← h + g2 ⊙ MLP (LN(h)(1 + s2) + b2),     (b1, s1, g1, b2, s2, g2) = W(SiLU(c))
    logits = Head(LN(h)(1 + s) + b)                                (B, L, V)

The embedding table has V + 1 rows (id V is [MASK]); the head has V outputs, so the model
never assigns probability to [MASK]. adaLN-Zero initialises every W and the head to zero, so
at initialisation each block is the identity and the logits are 0 (uniform over the V tokens).

ETM ("explicit timestep") adds a sinusoidal embedding of t to c; ITM ("implicit") ignores t:
the fraction of [MASK] tokens in x_t already determines the noise level (DI §3.2).

Multi-modal sequences (``cfg.modalities``, DI §3.4 joint image + segmentation mask): h_0 also
gets a learned modality embedding, and the logits of a position of modality m are −inf outside
m's id range (:data:`MASKED_LOGIT`, finite so that CFG's (1 + w)ℓ_c − wℓ_u stays defined; its
softmax weight is exactly 0 in float32/64), so p_θ(x_1^i | x_t) puts no mass on the other
modality's vocabulary.

Video (``cfg.frames`` = T, tokens frame-major (t, i, j)): ``attention = "factorized"`` makes
block k attend within each frame (k even, "spatial") or across the T frames at each spatial
position (k odd, "temporal") — Latte's interleaved variant; ``full`` attends over all T·h·w.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from unmask.models.config import ModelConfig

__all__ = ["Transformer", "Attention", "Block", "TimestepEmbedder", "timestep_embedding",
           "MASKED_LOGIT"]

#: Logit of an id outside a position's modality (exp underflows to exactly 0).
MASKED_LOGIT = -1e9


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features [cos(t ω_k), sin(t ω_k)], ω_k = max_period^{−k/(dim/2)} (DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    """t ∈ [0, 1] ↦ MLP(sinusoid(1000·t)); the ×1000 puts t on the scale the frequencies
    were designed for (DiT's integer diffusion steps)."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(1000.0 * t, self.freq_dim))


class Attention(nn.Module):
    """Multi-head bidirectional self-attention, softmax(QKᵀ/√d_head) V, through SDPA."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (n h d) -> n b h l d", n=3, h=self.heads)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=False
        )
        return self.proj(rearrange(y, "b h l d -> b l (h d)"))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (1 + scale) + shift, with per-sample (B, D) shift/scale broadcast over L."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """Transformer block with adaLN-Zero conditioning on c (B, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.drop = nn.Dropout(dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, axis: str | None = None, frames: int = 1) -> Tensor:
        """``axis`` None: attention over all L tokens; ``"space"``: within each of the
        ``frames`` frames of the frame-major sequence; ``"time"``: across frames at each
        spatial position. The MLP and adaLN act per token either way."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        a = modulate(self.norm1(x), shift1, scale1)
        if axis == "space":
            a = rearrange(self.attn(rearrange(a, "b (t s) d -> (b t) s d", t=frames)),
                          "(b t) s d -> b (t s) d", t=frames)
        elif axis == "time":
            s_ = a.shape[1] // frames
            a = rearrange(self.attn(rearrange(a, "b (t s) d -> (b s) t d", t=frames)),
                          "(b s) t d -> b (t s) d", s=s_)
        else:
            a = self.attn(a)
        x = x + gate1[:, None] * self.drop(a)
        x = x + gate2[:, None] * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm + linear head to V logits."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.head(modulate(self.norm(x), shift, scale))


class Transformer(nn.Module):
    """The denoiser network: ``forward(x_t, t, y) -> logits`` over the V clean tokens.

    Args:
        cfg: a :class:`ModelConfig` (or a dict of its fields).
    """

    def __init__(self, cfg: ModelConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = cfg if isinstance(cfg, ModelConfig) else ModelConfig(**cfg)
        d = cfg.dim
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, d)  # row V is [MASK]
        if cfg.pos == "learned2d":
            h, w = cfg.grid
            self.pos_row = nn.Parameter(torch.zeros(h, 1, d))
            self.pos_col = nn.Parameter(torch.zeros(1, w, d))
        elif cfg.pos == "spacetime":
            self.pos_space = nn.Parameter(torch.zeros(math.prod(cfg.grid), d))
        else:
            self.pos_emb = nn.Parameter(torch.zeros(cfg.length, d))
        if cfg.frames is not None and cfg.pos != "learned1d":
            self.pos_time = nn.Parameter(torch.zeros(cfg.frames, d))
        if cfg.modalities is not None:
            self.mod_emb = nn.Embedding(len(cfg.modalities), d)
            ids = torch.cat([torch.full((m.length,), k, dtype=torch.long)
                             for k, m in enumerate(cfg.modalities)])
            valid = torch.zeros(cfg.length, cfg.vocab_size, dtype=torch.bool)
            start = 0
            for m in cfg.modalities:
                valid[start : start + m.length, m.vocab[0] : m.vocab[1]] = True
                start += m.length
            # derived from the config: not part of the state dict
            self.register_buffer("modality_ids", ids, persistent=False)
            self.register_buffer("valid_vocab", valid, persistent=False)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, d)  # row num_classes is null
        self.time_emb = TimestepEmbedder(d) if self.time_conditioned else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)
        )
        self.final = FinalLayer(d, cfg.vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiT initialisation: Xavier linears, N(0, 0.02) embeddings, zero adaLN and head."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        extra = [self.mod_emb.weight] if self.cfg.modalities is not None else []
        for p in (self.tok_emb.weight, self.class_emb.weight, *self._pos_params(), *extra):
            nn.init.normal_(p, std=0.02)
        if self.time_emb is not None:
            for m in self.time_emb.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        for ada in [b.ada[-1] for b in self.blocks] + [self.final.ada[-1], self.final.head]:
            nn.init.zeros_(ada.weight)
            nn.init.zeros_(ada.bias)

    def _pos_params(self) -> list[nn.Parameter]:
        if self.cfg.pos == "learned2d":
            ps = [self.pos_row, self.pos_col]
        elif self.cfg.pos == "spacetime":
            ps = [self.pos_space]
        else:
            ps = [self.pos_emb]
        return ps + ([self.pos_time] if hasattr(self, "pos_time") else [])

    @property
    def time_conditioned(self) -> bool:
        """False for ITM: the output does not depend on t."""
        return self.cfg.timestep == "explicit"

    @property
    def null_class(self) -> int:
        """The label id meaning "no class" (CFG's unconditional branch)."""
        return self.cfg.num_classes

    @property
    def mask_id(self) -> int:
        return self.cfg.vocab_size

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def positions(self) -> Tensor:
        """(L, D) positional embeddings in row-major (video: frame-major) token order, plus
        the modality embedding of each position for multi-modal models."""
        if self.cfg.pos == "learned1d":
            pos = self.pos_emb
        else:
            space = ((self.pos_row + self.pos_col).flatten(0, 1) if self.cfg.pos == "learned2d"
                     else self.pos_space)
            if self.cfg.frames is not None:  # space table shared by frames + a time table
                space = (self.pos_time[:, None] + space[None]).flatten(0, 1)
            pos = space
        if self.cfg.modalities is not None:
            pos = pos + self.mod_emb(self.modality_ids)
        return pos

    def attention_axes(self) -> list[str | None]:
        """Per block: None (full attention), ``"space"`` or ``"time"`` (factorised video)."""
        if self.cfg.attention == "factorized":
            return ["space" if k % 2 == 0 else "time" for k in range(self.cfg.depth)]
        return [None] * self.cfg.depth

    def condition(self, t: Tensor | None, y: Tensor | None, batch: int, device) -> Tensor:
        """c (B, D) = class_emb(y or null) [+ time_emb(t) if ETM]."""
        if y is None:
            y = torch.full((batch,), self.null_class, dtype=torch.long, device=device)
        y = y.reshape(1).expand(batch) if y.numel() == 1 else y  # one label for every row
        if y.shape != (batch,):  # else one label per row: a mismatch is an error, not a broadcast
            raise ValueError(f"y: expected {batch} labels (one per row of x), got shape "
                             f"{tuple(y.shape)}")
        c = self.class_emb(y)
        if self.cfg.null_cond == "mask":  # eMIGM: the [MASK] embedding is the null condition
            c = torch.where((y == self.null_class)[:, None], self.tok_emb.weight[self.mask_id], c)
        if self.time_emb is not None:
            if t is None:
                raise ValueError("an explicit-timestep (ETM) model needs t")
            t = torch.as_tensor(t, dtype=torch.float32, device=device)
            c = c + self.time_emb(t.expand(batch) if t.dim() == 0 else t)
        return c

    def forward(self, x: Tensor, t: Tensor | None, y: Tensor | None = None) -> Tensor:
        """Logits of p_θ(x_1^i | x_t) for every position.

        Args:
            x: (B, L) or (B, h, w) token ids in 0..V (V = [MASK]).
            t: (B,) times in [0, 1] (ignored by ITM models, which accept None).
            y: (B,) class labels in 0..num_classes (num_classes = null); None = null class.

        Returns:
            (*x.shape, V) logits over the clean tokens.
        """
        shape = x.shape
        b = shape[0]
        x = x.reshape(b, -1)
        if x.shape[1] != self.cfg.length:
            raise ValueError(f"expected {self.cfg.length} tokens per sample, got shape {shape}")
        h = self.drop(self.tok_emb(x) + self.positions())
        c = self.condition(t, y, b, x.device)
        frames = self.cfg.frames or 1
        for block, axis in zip(self.blocks, self.attention_axes(), strict=True):
            h = block(h, c, axis, frames)
        logits = self.final(h, c)
        if self.cfg.modalities is not None:
            logits = logits.masked_fill(~self.valid_vocab, MASKED_LOGIT)
        return logits.reshape(*shape, self.cfg.vocab_size)

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Replace each label by the null class with probability ``cond_dropout`` (CFG training)."""
        p = self.cfg.cond_dropout
        if self.cfg.num_classes == 0 or p == 0.0:
            return y
        drop = torch.rand(y.shape, generator=generator, device=y.device) < p
        return torch.where(drop, torch.full_like(y, self.null_class), y)
