"""Text conditions (COCO / CC12M captions): pluggable text encoders and the model adaptor.

A *text encoder* maps captions to fixed vectors: ``encode(list[str]) -> float32 [n, dim]``, with
``dim``, ``identity`` and ``hash`` (stored in the shard manifest like a tokenizer's). The
``tokenize`` stage of the text pipelines pre-computes the embedding of every caption into the
shard (``latents.npy``), so training never runs the text encoder.

* :class:`OpenCLIPTextEncoder`: CLIP's text tower from a local open_clip checkpoint (DI conditions
  COCO / CC12M on CLIP text features). Needs ``open_clip`` and the weights on disk.
* :class:`HashedBagOfWords`: no weights needed: signed feature hashing of the caption's lowercase
  word unigrams and bigrams into ``dim`` buckets, L2-normalised (Weinberger et al. 2009). The
  projection into the model is learned jointly with the denoiser, so together they form a small
  text encoder trained here.

:class:`TextConditionedTransformer` is the :class:`~unmask.models.Transformer` whose class table
is replaced by :class:`TextConditioning`: the label of a row is the index of its caption
embedding in a table (the shard's latents, read as a memmap), projected by a learned linear
map; label ``num_classes`` (= number of captions) is the null condition (a learned vector) used
for CFG dropout. So the training loop's class-label path carries text conditions unchanged.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unmask.models import ModelConfig, Transformer

__all__ = [
    "HashedBagOfWords",
    "OpenCLIPTextEncoder",
    "build_text_encoder",
    "TextConditioning",
    "TextConditionedTransformer",
]

_WORD = re.compile(r"[a-z0-9]+")


class HashedBagOfWords:
    """Signed feature hashing of word uni- and bigrams, L2-normalised (no weights)."""

    name = "hashed-bow"

    def __init__(self, dim: int = 512):
        if dim < 2:
            raise ValueError(f"text encoder dim must be >= 2, got {dim}")
        self.dim = int(dim)

    @property
    def identity(self) -> str:
        return f"{self.name}(dim={self.dim},ngrams=1-2,hash=blake2b)"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def _features(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        v = np.zeros(self.dim, dtype=np.float32)
        for g in grams:
            h = int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._features(t) for t in texts]).astype(np.float32)


class OpenCLIPTextEncoder:
    """CLIP text features (L2-normalised) from a local open_clip checkpoint."""

    name = "open-clip"

    def __init__(self, path: str | Path, model_name: str = "ViT-L-14", device: str = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no open_clip checkpoint (CLIP cannot be downloaded)")
        try:
            import open_clip
        except ImportError:
            raise ImportError(
                "open_clip is not installed (pip install open_clip_torch); use text.encoder: bow"
            ) from None
        from unmask.data.shards import file_sha256

        model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=str(path))
        self.model = model.to(device).eval()
        self.tokenize = open_clip.get_tokenizer(model_name)
        self.model_name, self.device = model_name, device
        self.weights_sha256 = file_sha256(path)
        with torch.no_grad():
            self.dim = int(self.model.encode_text(self.tokenize(["a"]).to(device)).shape[-1])

    @property
    def identity(self) -> str:
        return f"{self.name}({self.model_name},weights=sha256:{self.weights_sha256})"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> np.ndarray:
        f = self.model.encode_text(self.tokenize(list(texts)).to(self.device)).float()
        return (f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def build_text_encoder(
    kind: str, *, dim: int = 512, path: str | None = None, model_name: str = "ViT-L-14"
) -> Any:
    """``kind`` ``bow`` → :class:`HashedBagOfWords`; ``clip`` → :class:`OpenCLIPTextEncoder`."""
    if kind == "bow":
        return HashedBagOfWords(dim)
    if kind == "clip":
        if path is None:
            raise ValueError("text.encoder: clip needs text.path (a local open_clip checkpoint)")
        return OpenCLIPTextEncoder(path, model_name)
    raise ValueError(f"unknown text encoder {kind!r}; valid: bow, clip")


class TextConditioning(nn.Module):
    """c = W·e[y] + b for caption rows y < N (e: the table of caption embeddings, [N, text_dim],
    any array: a numpy memmap stays on disk); y = N gives the learned null vector (CFG)."""

    def __init__(self, text_dim: int, dim: int, num_rows: int):
        super().__init__()
        self.proj = nn.Linear(text_dim, dim)
        self.null = nn.Parameter(torch.zeros(dim))
        self.num_rows = num_rows
        self.table: Any = None
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, y: Tensor) -> Tensor:
        null = y == self.num_rows
        if self.table is None:
            if not bool(null.all()):
                raise ValueError("TextConditioning has no embedding table (set .table)")
            return self.null.expand(len(y), -1)
        rows = y.clamp(max=self.num_rows - 1).cpu().numpy()
        e = torch.from_numpy(np.asarray(self.table[rows], dtype=np.float32)).to(y.device)
        c = self.proj(e.to(self.proj.weight.dtype))
        return torch.where(null[:, None], self.null.expand_as(c), c)


class TextConditionedTransformer(Transformer):
    """A :class:`~unmask.models.Transformer` conditioned on caption embeddings.

    Args:
        cfg: the model config; ``num_classes`` = N, the number of caption rows (labels are row
            indices; N is the null condition).
        text_dim: the text encoder's embedding size.
        table: the [N, text_dim] caption embeddings (e.g. the shard's ``latents`` memmap).
    """

    def __init__(self, cfg: ModelConfig | dict, text_dim: int = 512, table: Any = None):
        cfg = cfg if isinstance(cfg, ModelConfig) else ModelConfig(**cfg)
        if cfg.num_classes < 1:
            raise ValueError("a text-conditioned model needs num_classes = the number of captions")
        # Build without the N-row class table (N can be millions), then install the text path.
        super().__init__(cfg.model_copy(update={"num_classes": 0}))
        self.cfg = cfg
        self.class_emb = TextConditioning(text_dim, cfg.dim, cfg.num_classes)
        if table is not None:
            if len(table) != cfg.num_classes or np.shape(table)[-1] != text_dim:
                raise ValueError(
                    f"caption table {list(np.shape(table))} != [{cfg.num_classes}, {text_dim}]"
                )
            self.class_emb.table = table
