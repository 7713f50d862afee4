"""Per-pixel quantising tokenizer for grayscale and RGB images.

An image x ∈ {0..255}^{H×W(×C)} is (optionally) resized to h×w by area averaging, then each
value v is quantised uniformly into ``levels`` bins of width Δ = 256 / levels:

    token = ⌊v / Δ⌋ ∈ {0, …, levels − 1},        decode(token) = round((token + ½) Δ − ½)

(the bin centre on the 0..255 scale; ``levels = 256`` is lossless without resizing). RGB
channels are interleaved along the last axis, so an RGB image gives tokens [h, w·C].
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PixelTokenizer"]


class PixelTokenizer:
    """Uniform per-pixel quantiser.

    Args:
        levels: number of intensity bins V (the vocabulary size), 2..256.
        size: target (h, w) or one int for square images; None keeps the input size.
        channels: 1 (grayscale, images [N, H, W]) or 3 (RGB, images [N, H, W, 3]).
    """

    def __init__(self, levels: int = 8, size: int | Sequence[int] | None = None, channels: int = 1):
        if not 2 <= levels <= 256:
            raise ValueError(f"pixel tokenizer: levels must be in 2..256, got {levels}")
        if channels not in (1, 3):
            raise ValueError(f"pixel tokenizer: channels must be 1 or 3, got {channels}")
        if isinstance(size, int):
            size = (size, size)
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"pixel tokenizer: size must be positive (h, w), got {size}")
        self.levels = int(levels)
        self.size: tuple[int, int] | None = tuple(int(s) for s in size) if size else None  # type: ignore[assignment]
        self.channels = channels

    @property
    def vocab_size(self) -> int:
        return self.levels

    @property
    def identity(self) -> str:
        """A string naming the exact tokenizer configuration (stored in shard manifests)."""
        size = "x".join(map(str, self.size)) if self.size else "native"
        return f"pixel(levels={self.levels},size={size},channels={self.channels},resize=area)"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def token_shape(self, image_shape: Sequence[int]) -> tuple[int, int]:
        """Token grid (h, w·C) produced for one image of shape (H, W) or (H, W, C)."""
        h, w = self.size or (image_shape[0], image_shape[1])
        return h, w * self.channels

    def encode(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images [N, H, W] (grayscale) or [N, H, W, C] (RGB) → LongTensor [N, h, w·C]."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.dtype != torch.uint8:
            raise ValueError(f"pixel tokenizer: expected uint8 images, got {x.dtype}")
        expected_dim = 3 if self.channels == 1 else 4
        if x.dim() != expected_dim or (self.channels == 3 and x.shape[-1] != 3):
            want = "[N, H, W]" if self.channels == 1 else "[N, H, W, 3]"
            raise ValueError(f"pixel tokenizer: expected images {want}, got {list(x.shape)}")
        xf = x.float().reshape(*x.shape[:3], self.channels).permute(0, 3, 1, 2)  # N, C, H, W
        if self.size is not None and tuple(xf.shape[-2:]) != self.size:
            xf = F.interpolate(xf, size=self.size, mode="area")
        tokens = torch.floor(xf * (self.levels / 256.0)).clamp_(0, self.levels - 1).long()
        n, c, h, w = tokens.shape
        return tokens.permute(0, 2, 3, 1).reshape(n, h, w * c)

    def decode(self, tokens: torch.Tensor | np.ndarray) -> np.ndarray:
        """Tokens [N, h, w·C] (or [N, h·w·C] with a known ``size``) → uint8 images at bin centres,
        [N, h, w] or [N, h, w, C]."""
        t = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, torch.Tensor) else tokens)
        t = t.long()
        if t.dim() == 2:
            if self.size is None:
                raise ValueError("pixel tokenizer: flat tokens need a known size to decode")
            t = t.reshape(t.shape[0], self.size[0], self.size[1] * self.channels)
        if int(t.min()) < 0 or int(t.max()) >= self.levels:
            raise ValueError(f"pixel tokenizer: token ids must lie in 0..{self.levels - 1}")
        step = 256.0 / self.levels
        v = torch.round((t.double() + 0.5) * step - 0.5).clamp(0, 255).to(torch.uint8).numpy()
        if self.channels == 1:
            return v
        n, h, wc = v.shape
        return v.reshape(n, h, wc // self.channels, self.channels)

    def __repr__(self) -> str:
        return f"PixelTokenizer({self.identity})"
