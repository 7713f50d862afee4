"""Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer", eq. 34), as MDLM's DiT uses them.

For a head of even width d and position m, the pairs (x_i, x_{i+d/2}), i < d/2, of a query or
key are rotated by the angle m·θ_i, θ_i = base^{−2i/d} (base 10⁴), the "rotate-half" layout of
GPT-NeoX / MDLM (``flash_attn.layers.rotary``):

    R_m x = x ⊙ cos(m θ) + rotate_half(x) ⊙ sin(m θ),   rotate_half(x₁ ‖ x₂) = (−x₂ ‖ x₁),

i.e. the complex number z_i = x_i + i·x_{i+d/2} becomes z_i · e^{i m θ_i}. Since
⟨R_m q, R_n k⟩ = Re Σ_i q̃_i k̃_i^* e^{i (m−n) θ_i}, attention logits depend on the positions
only through m − n (RoFormer eq. 16): the network sees relative positions only, and has no
position table (MDLM: no absolute position embedding at all).

:class:`RotaryAttention` is :class:`unmask.models.transformer.Attention` (same parameters
``qkv`` / ``proj``, so weights load either way) with R applied to q and k before SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from unmask.models.transformer import Attention

__all__ = ["rotary_angles", "apply_rotary", "RotaryAttention", "BASE"]

#: RoFormer's / MDLM's frequency base
BASE = 10000.0


def rotary_angles(positions: Tensor, head_dim: int, base: float = BASE) -> Tensor:
    """Angles m·θ_i, shape (*positions.shape, head_dim / 2), in float64 for exact large m."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head width, got {head_dim}")
    i = torch.arange(head_dim // 2, dtype=torch.float64, device=positions.device)
    theta = base ** (-2.0 * i / head_dim)
    return positions.to(torch.float64)[..., None] * theta


def apply_rotary(x: Tensor, positions: Tensor, base: float = BASE) -> Tensor:
    """R_m x for x (..., L, d) and integer positions (L,) (rotate-half layout, see module doc)."""
    ang = rotary_angles(positions, x.shape[-1], base)
    cos = torch.cat([ang.cos(), ang.cos()], dim=-1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], dim=-1).to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class RotaryAttention(Attention):
    """Bidirectional multi-head self-attention with RoPE on queries and keys.

    ``offset`` shifts every position (m → m + offset); outputs do not depend on it (relative
    positions only), which the tests check.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, base: float = BASE) -> None:
        super().__init__(dim, heads, dropout)
        if (dim // heads) % 2:
            raise ValueError(
                f"rotary positions need an even head width, got dim {dim} / heads {heads}"
            )
        self.base = base
        self.offset = 0

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b l (n h d) -> n b h l d", n=3, h=self.heads)
        pos = torch.arange(x.shape[1], device=x.device) + self.offset
        q, k = apply_rotary(q, pos, self.base), apply_rotary(k, pos, self.base)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=False
        )
        return self.proj(rearrange(y, "b h l d -> b l (h d)"))
