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
Its config is a :class:`TextModelConfig` (a :class:`~unmask.models.ModelConfig` plus
``text_dim``), so a checkpoint's stored config rebuilds it with
:func:`unmask.training.load_checkpoint`; the caption table is data, not weights, and is set again
on the loaded model (``model.class_emb.table = ...``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from unmask.data.shards import file_sha256
from unmask.models import ModelConfig, Transformer

__all__ = [
    "HashedBagOfWords",
    "OpenCLIPTextEncoder",
    "build_text_encoder",
    "TextConditioning",
    "TextModelConfig",
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
            import open_clip  # why: optional: CLIP checkpoints only
        except ImportError:
            raise ImportError(
                "open_clip is not installed (pip install open_clip_torch); use text.encoder: bow"
            ) from None

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


class TextModelConfig(ModelConfig):
    """A :class:`~unmask.models.ModelConfig` plus ``text_dim``, the text encoder's embedding
    size (the input width of :class:`TextConditioning`'s projection). Checkpoints store it with
    the rest of the config; configs written before it existed read back as 512."""

    text_dim: int = Field(default=512, ge=2)


class TextConditionedTransformer(Transformer):
    """A :class:`~unmask.models.Transformer` conditioned on caption embeddings.

    Args:
        cfg: the model config (a :class:`TextModelConfig`, a plain ``ModelConfig`` or a dict, e.g.
            a checkpoint's stored one); ``num_classes`` = N, the number of caption rows (labels
            are row indices; N is the null condition).
        text_dim: the text encoder's embedding size; default ``cfg``'s ``text_dim`` (512 when
            absent). Must agree with a ``text_dim`` set explicitly in ``cfg``.
        table: the [N, text_dim] caption embeddings (e.g. the shard's ``latents`` memmap).
    """

    cfg: TextModelConfig

    def __init__(
        self, cfg: ModelConfig | dict, text_dim: int | None = None, table: Any = None
    ) -> None:
        raw = dict(cfg) if isinstance(cfg, dict) else cfg.model_dump()
        if text_dim is not None:
            given = raw.get("text_dim")
            explicit = isinstance(cfg, dict) or (
                isinstance(cfg, TextModelConfig) and "text_dim" in cfg.model_fields_set
            )
            if explicit and given is not None and int(given) != int(text_dim):
                raise ValueError(f"text_dim={text_dim} but the model config has text_dim={given}")
            raw["text_dim"] = int(text_dim)
        cfg = TextModelConfig(**raw)
        if cfg.num_classes < 1:
            raise ValueError("a text-conditioned model needs num_classes = the number of captions")
        # Build without the N-row class table (N can be millions), then install the text path.
        super().__init__(cfg.model_copy(update={"num_classes": 0}))
        self.cfg = cfg
        self.class_emb = TextConditioning(cfg.text_dim, cfg.dim, cfg.num_classes)
        if table is not None:
            self.set_table(table)

    @property
    def text_dim(self) -> int:
        return self.cfg.text_dim

    def set_table(self, table: Any) -> None:
        """Install the [N, text_dim] caption embeddings (rows = labels 0..N−1)."""
        n, d = self.cfg.num_classes, self.cfg.text_dim
        if np.ndim(table) != 2 or tuple(np.shape(table)) != (n, d):
            raise ValueError(f"caption table {list(np.shape(table))} != [{n}, {d}]")
        self.class_emb.table = table

    def condition_on(self, table: Any) -> TextConditionedTransformer:
        """Condition on new captions (e.g. held-out ones, for sampling): the [M, text_dim]
        ``table`` replaces the training table, labels 0..M−1 index it and M becomes the null
        label. No weight depends on N, so the model is rebound in place (and returned)."""
        m = len(table)
        if m < 1:
            raise ValueError("condition_on needs at least one caption embedding")
        self.cfg = self.cfg.model_copy(update={"num_classes": m})
        self.class_emb.num_rows = m
        self.set_table(table)
        return self
