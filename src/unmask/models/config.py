"""Typed, validated model configuration (an unknown key is an error that names it)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from unmask.models import presets

__all__ = ["ModelConfig", "Modality"]


class Modality(BaseModel):
    """One segment of a multi-modal token sequence (DI §3.4: image + segmentation mask).

    Positions ``[offset, offset + length)`` of the sequence belong to this modality, where the
    offset is the summed length of the modalities before it; their clean ids are restricted to
    ``vocab = (lo, hi)``, i.e. ids lo..hi−1 of the model's combined vocabulary.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    length: int = Field(gt=0)
    vocab: tuple[int, int]


class ModelConfig(BaseModel):
    """Architecture of the :class:`~unmask.models.Transformer` denoiser.

    Exactly one of ``seq_len`` (1-D sequences) and ``grid`` ((h, w) token grids) is set.
    ``preset`` names a size in :mod:`unmask.models.presets` whose fields fill in whatever is not
    given explicitly.

    Attributes:
        vocab_size: V, the number of clean token ids (0..V−1); the mask id is V.
        seq_len: L for 1-D data.
        grid: (h, w) for 2-D token grids (L = h·w, row-major).
        num_classes: class labels 0..C−1; C is the null ("unconditional") class. 0 means an
            unconditional model (the single null row then acts as a learned constant).
        dim, depth, heads, mlp_ratio, dropout: transformer width, blocks, attention heads,
            MLP hidden = mlp_ratio·dim, dropout on attention and residual branches.
        timestep: ``explicit`` (ETM: the network sees t) or ``implicit`` (ITM: it ignores t and
            infers the noise level from the number of [MASK] tokens, DI §3.2).
        cond_dropout: probability that a training label is replaced by the null class (CFG).
        null_cond: the unconditional input of CFG: ``learned`` = a learned null-class
            embedding (DI, DiT); ``mask`` = the [MASK] token's embedding stands in for the
            class (eMIGM §4 "CFG with Mask"), so no extra parameters are learned.
        pos: ``learned1d`` = one learned vector per position (L·dim); ``learned2d`` = separable
            row + column tables, pos[i, j] = row[i] + col[j] ((h + w)·dim; needs ``grid``),
            which shares statistics across rows/columns of the grid.
        modalities: optional segments of the sequence (:class:`Modality`), in order; they
            add a learned modality embedding to every position and restrict each position's
            logits to its modality's id range (the others get −inf). Joint image–mask models.
        frames: T for video: ``grid`` is then one frame's (h, w) and L = T·h·w, frame-major.
        attention: ``full`` (every token attends to every token) or ``factorized``
            (Latte, Ma et al. 2024, variant 1: blocks alternate spatial attention within a frame
            and temporal attention across frames at one spatial position; needs ``frames``).
        preset: the preset the defaults came from (kept for logging).

    Positions for video (``frames`` set): ``learned1d`` = one vector per (t, i, j);
    ``learned2d`` = row + column tables shared by every frame, plus a learned time table;
    ``spacetime`` = one vector per spatial position (h·w) plus one per frame (separate space
    and time embeddings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(gt=0)
    seq_len: int | None = Field(default=None, gt=0)
    grid: tuple[int, int] | None = None
    num_classes: int = Field(default=0, ge=0)
    dim: int = Field(default=128, gt=0)
    depth: int = Field(default=4, ge=0)
    heads: int = Field(default=4, gt=0)
    mlp_ratio: float = Field(default=4.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    timestep: Literal["explicit", "implicit"] = "explicit"
    cond_dropout: float = Field(default=0.1, ge=0, le=1)
    null_cond: Literal["learned", "mask"] = "learned"
    pos: Literal["learned1d", "learned2d", "spacetime"] = "learned1d"
    modalities: tuple[Modality, ...] | None = None
    frames: int | None = Field(default=None, gt=0)
    attention: Literal["full", "factorized"] = "full"
    preset: str | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # Fields added after the first checkpoints are omitted at their defaults, so dumps (and
        # the run keys hashed from them) of existing configs are unchanged.
        out = handler(self)
        for key, default in (("modalities", None), ("frames", None), ("attention", "full")):
            if out.get(key) == default:
                out.pop(key, None)
        return out

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            base = presets.get(data["preset"])
            # An explicit 1-D length replaces a preset's grid (and its 2-D positions).
            if data.get("seq_len") is not None and "grid" not in data:
                base.pop("grid", None)
                if base.get("pos") == "learned2d":
                    base.pop("pos")
            data = {**base, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if (self.seq_len is None) == (self.grid is None):
            raise ValueError("set exactly one of 'seq_len' (1-D) and 'grid' (2-D (h, w))")
        if self.grid is not None and min(self.grid) <= 0:
            raise ValueError(f"'grid' sides must be positive, got {self.grid}")
        if self.pos in ("learned2d", "spacetime") and self.grid is None:
            raise ValueError(f"'pos' = {self.pos!r} needs 'grid' (h, w)")
        if self.frames is not None and self.grid is None:
            raise ValueError("'frames' needs 'grid' (the (h, w) of one frame)")
        if self.pos == "spacetime" and self.frames is None:
            raise ValueError("'pos' = 'spacetime' needs 'frames'")
        if self.attention == "factorized" and self.frames is None:
            raise ValueError("'attention' = 'factorized' needs 'frames' (video)")
        if self.modalities is not None:
            total = sum(m.length for m in self.modalities)
            if total != self.length:
                raise ValueError(f"'modalities' lengths sum to {total}, but the model has "
                                 f"{self.length} tokens per sample")
            for m in self.modalities:
                lo, hi = m.vocab
                if not 0 <= lo < hi <= self.vocab_size:
                    raise ValueError(f"'modalities': {m.name!r} vocab {m.vocab} must satisfy "
                                     f"0 <= lo < hi <= vocab_size = {self.vocab_size}")
        if self.dim % self.heads:
            raise ValueError(f"'dim' ({self.dim}) must be divisible by 'heads' ({self.heads})")
        return self

    @property
    def length(self) -> int:
        """L, the number of tokens per sample."""
        if self.seq_len is not None:
            return self.seq_len
        return math.prod(self.grid) * (self.frames or 1)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def null_class(self) -> int:
        return self.num_classes
