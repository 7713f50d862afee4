"""eMIGM's MAE encoder–decoder (after MAE / MAR).

Let x_t have masked set M and visible set V = {1..L} \\ M, and let c be the condition vector
(class embedding, or the null vector; plus a time embedding for explicit-timestep models).

    encoder:  e = Enc( [b_1..b_K ; h_i + p_i for i ∈ V] )        (only visible tokens + buffer)
              b_k = c + p_k  (class-token conditioning, eMIGM)   or  p_k  (adaLN conditioning)
    decoder:  d_j = W e_{slot(j)} for j ∈ V ∪ buffer,   d_j = m for j ∈ M   ("scatter back")
              f = Dec(d + q)                                       (all L + K positions)
    output:   f_j for j = 1..L (the buffer is dropped)

with h_i the token embedding, p / q learned encoder / decoder positions, m the learned [MASK]
vector and K the buffer size. The encoder therefore costs O(|V| + K) tokens: at eMIGM's high
mask ratios (t_min truncation keeps γ ≥ γ(t_min)) it processes a fraction of the sequence.

CFG with the mask token (eMIGM): with ``null_cond="mask"`` the unconditional condition
vector c_∅ *is* m, the decoder's [MASK] vector — no extra parameter, and "unconditional" means
"the class token is masked" (eMIGM's ``use_unsup_cfg``).

Rows of a batch may have different |V| (the foundation's independent masking): the visible
tokens are gathered into a (B, max|V|) tensor, padding slots are zeroed and excluded as
attention keys, so a row's output does not depend on the other rows.

:class:`MAE` is the discrete model: ``forward(x_t, t, y) -> logits`` over the V clean ids (mask
id V), a drop-in network for :func:`unmask.training.train`, :class:`~unmask.models.
ConditionedDenoiser` and the samplers. The continuous model is :mod:`unmask.emigm.continuous`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from unmask.emigm.config import MAEConfig
from unmask.models.transformer import TimestepEmbedder, modulate

__all__ = ["MaskedAttention", "Block", "Visible", "gather_visible", "scatter_back",
           "MAEBackbone", "MAEBase", "MAE"]


class MaskedAttention(nn.Module):
    """Multi-head self-attention softmax(QKᵀ/√d)V over the keys marked valid (SDPA)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_valid: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (n h d) -> n b h l d", n=3, h=self.heads)
        mask = key_valid[:, None, None, :] if key_valid is not None else None
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj_drop(self.proj(rearrange(y, "b h l d -> b l (h d)")))


class Block(nn.Module):
    """Pre-LN ViT block (timm's ``Block``: qkv bias, GELU MLP, dropout on attention and MLP);
    with ``adaln`` the LayerNorms lose their affine and a zero-initialised adaLN-Zero
    modulation by the condition c (DiT) replaces it."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 adaln: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=not adaln)
        self.attn = MaskedAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=not adaln)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim)) if adaln else None

    def forward(self, x: Tensor, c: Tensor | None = None, key_valid: Tensor | None = None
                ) -> Tensor:
        if self.ada is None:
            x = x + self.attn(self.norm1(x), key_valid)
            return x + self.mlp(self.norm2(x))
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1), key_valid)
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


@dataclass
class Visible:
    """The visible (unmasked) positions of each row, left-aligned and padded.

    Attributes:
        index: (B, K) positions in 0..L−1, ascending within a row; padding slots hold 0.
        valid: (B, K) True for real visible tokens, False for padding. K = max_b |V_b|.
    """

    index: Tensor
    valid: Tensor


def gather_visible(masked: Tensor) -> Visible:
    """Left-align the unmasked positions of every row of ``masked`` (B, L) bool."""
    b, _ = masked.shape
    n_vis = (~masked).sum(-1)
    k = int(n_vis.max()) if b else 0
    order = torch.argsort(masked.to(torch.int8), dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=masked.device)[None] < n_vis[:, None]
    return Visible(torch.where(valid, order, torch.zeros_like(order)), valid)


def scatter_back(enc: Tensor, vis: Visible, fill: Tensor, length: int, buffer: int) -> Tensor:
    """The decoder input: (B, buffer + L, D) with the buffer outputs first, each visible token's
    encoder output at its own position and ``fill`` (the [MASK] vector, (D,)) everywhere else.

    Args:
        enc: (B, buffer + K, D) encoder outputs (buffer slots, then the gathered visible ones).
    """
    b, _, d = enc.shape
    out = fill.to(enc.dtype).expand(b, buffer + length + 1, d).clone()  # last row: a sink
    out[:, :buffer] = enc[:, :buffer]
    dest = torch.where(vis.valid, vis.index + buffer, buffer + length)
    out = out.scatter(1, dest[..., None].expand(-1, -1, d), enc[:, buffer:])
    return out[:, : buffer + length]


class MAEBackbone(nn.Module):
    """Encoder–decoder over embedded tokens: ``forward(h, masked, c) -> features (B, L, D_dec)``.

    ``h`` (B, L, D) are the token embeddings (their values at masked positions are never read
    when ``use_mae``), ``masked`` (B, L) bool, ``c`` (B, D) the condition vector.
    """

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, dd, n, buf = cfg.dim, cfg.decoder_dim, cfg.length, cfg.buffer_size
        adaln = cfg.conditioning == "adaln"
        self.enc_pos = nn.Parameter(torch.zeros(buf + n, d))
        self.enc_ln = nn.LayerNorm(d, eps=1e-6)  # eMIGM's z_proj_ln (after the positions)
        self.enc_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout, adaln) for _ in range(cfg.depth))
        self.enc_norm = nn.LayerNorm(d, eps=1e-6)
        self.dec_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(dd))
        self.dec_pos = nn.Parameter(torch.zeros(buf + n, dd))
        self.dec_blocks = nn.ModuleList(
            Block(dd, cfg.decoder_heads, cfg.mlp_ratio, cfg.dropout, adaln)
            for _ in range(cfg.decoder_depth))
        self.dec_norm = nn.LayerNorm(dd, eps=1e-6)
        self.dec_cond = nn.Linear(d, dd) if adaln and dd != d else None

    def encode(self, h: Tensor, masked: Tensor, c: Tensor) -> tuple[Tensor, Visible]:
        """Encoder outputs (B, buffer + K, D) over the buffer and the visible tokens only."""
        buf = self.cfg.buffer_size
        if not self.cfg.use_mae:  # eMIGM's non-MAE ablation: masked slots hold the [MASK] vector
            h = torch.where(masked[..., None], self.mask_token.to(h.dtype), h)
            masked = torch.zeros_like(masked)
        vis = gather_visible(masked)
        hv = torch.gather(h, 1, vis.index[..., None].expand(-1, -1, h.shape[-1]))
        slots = self.enc_pos[:buf].expand(h.shape[0], -1, -1)
        if self.cfg.conditioning == "buffer":
            slots = slots + c[:, None]
        x = torch.cat([slots, hv + self.enc_pos[buf + vis.index]], dim=1)
        always = torch.ones(h.shape[0], buf, dtype=torch.bool, device=h.device)
        valid = torch.cat([always, vis.valid], dim=1)
        x = self.enc_ln(x) * valid[..., None]  # padding slots are exact zeros
        cc = c if self.cfg.conditioning == "adaln" else None
        for block in self.enc_blocks:
            x = block(x, cc, valid)
        return self.enc_norm(x), vis

    def decode(self, enc: Tensor, vis: Visible, c: Tensor) -> Tensor:
        """Decoder features (B, L, D_dec) from the encoder outputs scattered back."""
        buf = self.cfg.buffer_size
        x = scatter_back(self.dec_embed(enc), vis, self.mask_token, self.cfg.length, buf)
        x = x + self.dec_pos
        cc = None
        if self.cfg.conditioning == "adaln":
            cc = self.dec_cond(c) if self.dec_cond is not None else c
        for block in self.dec_blocks:
            x = block(x, cc)
        return self.dec_norm(x)[:, buf:]

    def forward(self, h: Tensor, masked: Tensor, c: Tensor) -> Tensor:
        enc, vis = self.encode(h, masked, c)
        return self.decode(enc, vis, c)


class MAEBase(nn.Module):
    """Base of the discrete (:class:`MAE`) and continuous (:class:`~unmask.emigm.continuous.
    ContinuousMAE`) models: condition vectors c(y, t), label dropout, initialisation."""

    cfg: MAEConfig
    backbone: MAEBackbone

    def _init_conditioning(self) -> None:
        cfg = self.cfg
        self.class_emb = nn.Embedding(cfg.num_classes, cfg.dim) if cfg.num_classes else None
        self.null_emb = nn.Parameter(torch.zeros(cfg.dim)) if cfg.null_cond == "learned" else None
        self.time_emb = TimestepEmbedder(cfg.dim) if cfg.timestep == "explicit" else None

    def _reset(self, zero: list[nn.Linear]) -> None:
        """eMIGM / MAE initialisation: Xavier-uniform linears with zero bias, unit LayerNorms,
        N(0, 0.02) embeddings, positions and [MASK]; adaLN modulations and ``zero`` set to 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        bb = self.backbone
        for p in (bb.enc_pos, bb.dec_pos, bb.mask_token, self.null_emb,
                  *(e.weight for e in self.modules() if isinstance(e, nn.Embedding))):
            if p is not None:
                nn.init.normal_(p, std=0.02)
        if self.time_emb is not None:
            for m in self.time_emb.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        for blk in [*bb.enc_blocks, *bb.dec_blocks]:
            if blk.ada is not None:
                zero.append(blk.ada[-1])
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def null_class(self) -> int:
        """The label id meaning "unconditional" (CFG's second branch)."""
        return self.cfg.num_classes

    @property
    def null_vector(self) -> Tensor:
        """c_∅: the [MASK] vector itself (eMIGM's CFG with the mask token) or a learned one."""
        return self.null_emb if self.null_emb is not None else self.backbone.mask_token

    @property
    def time_conditioned(self) -> bool:
        """False for implicit-timestep models (eMIGM's default): the output ignores t."""
        return self.cfg.timestep == "explicit"

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def condition(self, t: Tensor | None, y: Tensor | None, batch: int, device) -> Tensor:
        """c (B, D) = class embedding of y, or c_∅ where y is the null class / None [+ time]."""
        null = self.null_vector.expand(batch, -1)
        if y is None or self.class_emb is None:
            c = null
        else:
            y = y.to(device).expand(batch) if y.dim() == 0 else y.to(device)
            emb = self.class_emb(y.clamp(0, self.cfg.num_classes - 1))
            c = torch.where((y == self.null_class)[:, None], null.to(emb.dtype), emb)
        if self.time_emb is not None:
            if t is None:
                raise ValueError("an explicit-timestep model needs t")
            t = torch.as_tensor(t, dtype=torch.float32, device=device)
            c = c + self.time_emb(t.expand(batch) if t.dim() == 0 else t)
        return c

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Replace each label by the null class with probability ``cond_dropout`` (CFG)."""
        p = self.cfg.cond_dropout
        if self.cfg.num_classes == 0 or p == 0.0:
            return y
        drop = torch.rand(y.shape, generator=generator, device=y.device) < p
        return torch.where(drop, torch.full_like(y, self.null_class), y)


class MAE(MAEBase):
    """Discrete eMIGM model: ``forward(x_t, t, y) -> logits (*x_t.shape, V)``.

    Args:
        cfg: a :class:`MAEConfig` with ``vocab_size`` set (or a dict of its fields).
    """

    def __init__(self, cfg: MAEConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = cfg if isinstance(cfg, MAEConfig) else MAEConfig(**cfg)
        if cfg.vocab_size is None:
            raise ValueError("MAE is the discrete model: set 'vocab_size' (continuous tokens: "
                             "unmask.emigm.continuous.ContinuousMAE)")
        self.backbone = MAEBackbone(cfg)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)  # no [MASK] row: never embedded
        self._init_conditioning()
        self.out = nn.Linear(cfg.decoder_dim, cfg.vocab_size)
        self._reset([])

    @property
    def mask_id(self) -> int:
        return self.cfg.vocab_size

    def forward(self, x: Tensor, t: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """Logits of p_θ(x_1^i | x_t, y) at every position.

        Args:
            x: (B, L) or (B, h, w) ids in 0..V (V = [MASK]).
            t: (B,) times (used by explicit-timestep models only).
            y: (B,) labels in 0..num_classes (num_classes = null), or None (null).
        """
        shape, b = x.shape, x.shape[0]
        x = x.reshape(b, -1)
        if x.shape[1] != self.cfg.length:
            raise ValueError(f"expected {self.cfg.length} tokens per sample, got shape {shape}")
        masked = x == self.mask_id
        h = self.tok_emb(torch.where(masked, torch.zeros_like(x), x))
        feats = self.backbone(h, masked, self.condition(t, y, b, x.device))
        return self.out(feats).reshape(*shape, self.cfg.vocab_size)
