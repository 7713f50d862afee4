"""Base-b sub-tokens and the validity filter of MDM-Prime's joint parameterisation.

Sub-tokenizer (MDM-Prime §3.1, the invertible f_ℓ): a token x ∈ {0..C−1} becomes ℓ base-b digits

    f_ℓ(x) = (y^1, …, y^ℓ),   x = Σ_j y^j b^{ℓ−j},   b = ⌈C^{1/ℓ}⌉

(most significant digit first), so b^ℓ ≥ C and f_ℓ is a bijection from {0..C−1} onto the *valid*
digit tuples (those encoding an id < C). Sub-token ids are 0..b−1 and the sub-token mask id is b:
each sub-token has a vocabulary of b + 1 symbols. ℓ = 1 gives b = C (plain MDM).

Joint parameterisation with validity filtering (MDM-Prime eq. 7): a network outputs logits
f_θ(y_t)^i ∈ R^C over the *full* token at position i, and

    p_θ(x^i = c | y_t) ∝ exp(f_θ(y_t)^i_c) · 1[c < C] · Π_j 1[y_t^{i,j} ∈ {m, f_ℓ(c)^j}],

i.e. ids ≥ C (never representable by a C-way head) and ids inconsistent with the observed
sub-tokens of position i get probability 0 before normalisation. Carry-over of unmasked
sub-tokens follows: a token drawn from this distribution agrees with every observed digit.

The sub-token marginals used by the ELBO (see :mod:`unmask.prime.likelihood`) are sums of the
joint over the ids sharing a digit:

    p_θ(y^{i,j} = v | y_t) = Σ_{c : f_ℓ(c)^j = v} p_θ(x^i = c | y_t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = ["SubTokenCodec", "SubTokenView", "int_root_ceil", "FILL"]

#: Logit given to filtered entries by the model: finite, so classifier-free guidance
#: (1 + w)·cond − w·uncond keeps it at FILL instead of producing inf − inf = NaN; exp(FILL − lse)
#: underflows to exactly 0 in float32 and float64.
FILL = -1.0e9


def int_root_ceil(c: int, ell: int) -> int:
    """Smallest integer b ≥ 2 with b**ell ≥ c (exact ⌈c^{1/ℓ}⌉ without float error)."""
    if c < 1 or ell < 1:
        raise ValueError(f"need C >= 1 and ell >= 1, got C={c}, ell={ell}")
    b = max(2, int(round(c ** (1.0 / ell))))
    while b**ell < c:
        b += 1
    while b > 2 and (b - 1) ** ell >= c:
        b -= 1
    return b


@dataclass(frozen=True)
class SubTokenCodec:
    """Base-b encoding of a C-token vocabulary into ℓ sub-tokens (see the module docstring).

    Args:
        vocab_size: C, the number of clean token ids.
        ell: ℓ, sub-tokens per token.

    Attributes:
        base: b = ⌈C^{1/ℓ}⌉ (for ℓ = 1, b = C; b ≥ 2 always).
        mask_id: the sub-token mask id, b.
    """

    vocab_size: int
    ell: int
    base: int = field(init=False)

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size (C) must be >= 2, got {self.vocab_size}")
        if self.ell < 1:
            raise ValueError(f"ell must be >= 1, got {self.ell}")
        base = self.vocab_size if self.ell == 1 else int_root_ceil(self.vocab_size, self.ell)
        object.__setattr__(self, "base", base)

    @property
    def mask_id(self) -> int:
        return self.base

    @property
    def num_combinations(self) -> int:
        """b^ℓ, the number of digit tuples (≥ C; the surplus ones are invalid)."""
        return self.base**self.ell

    def _powers(self, device: torch.device | None) -> Tensor:
        return self.base ** torch.arange(self.ell - 1, -1, -1, device=device, dtype=torch.long)

    def encode(self, x: Tensor) -> Tensor:
        """Token ids (...,) in [0, C) → sub-tokens (..., ℓ), most significant digit first."""
        if x.is_floating_point():
            raise TypeError(f"token ids must be integers, got {x.dtype}")
        x = x.long()
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), "
                             f"got [{int(x.min())}, {int(x.max())}]")
        return (x[..., None] // self._powers(x.device)) % self.base

    def decode(self, y: Tensor) -> Tensor:
        """Sub-tokens (..., ℓ) with no mask → token ids (...,). Raises on masked or invalid
        digit tuples (ids ≥ C)."""
        y = y.long()
        if y.shape[-1] != self.ell:
            raise ValueError(f"last dimension must be ell={self.ell}, got shape {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.base):
            raise ValueError(f"sub-tokens must be clean digits in [0, {self.base}) to decode")
        x = (y * self._powers(y.device)).sum(-1)
        if x.numel() and int(x.max()) >= self.vocab_size:
            raise ValueError(f"invalid sub-token combination: id {int(x.max())} >= C = "
                             f"{self.vocab_size}")
        return x

    def digits(self, device: torch.device | str | None = None) -> Tensor:
        """(C, ℓ) table: row c holds f_ℓ(c)."""
        return self.encode(torch.arange(self.vocab_size, device=device))

    def group(self, y: Tensor) -> Tensor:
        """(B, N) flat sub-tokens → (B, N/ℓ, ℓ) per token position."""
        if y.shape[-1] % self.ell:
            raise ValueError(f"{y.shape[-1]} sub-tokens are not a multiple of ell={self.ell}")
        return y.reshape(*y.shape[:-1], y.shape[-1] // self.ell, self.ell)

    def pack_state(self, y_t: Tensor) -> Tensor:
        """Partially masked sub-tokens (..., ℓ) in [0, b] → one state id (...,) in
        [0, (b+1)^ℓ): the base-(b+1) number of the digits (mask id b included)."""
        pw = (self.base + 1) ** torch.arange(self.ell - 1, -1, -1, device=y_t.device)
        return (y_t.long() * pw).sum(-1)

    def unpack_state(self, s: Tensor) -> Tensor:
        """Inverse of :meth:`pack_state`."""
        pw = (self.base + 1) ** torch.arange(self.ell - 1, -1, -1, device=s.device)
        return (s.long()[..., None] // pw) % (self.base + 1)

    def _allowed(self, y_t: Tensor) -> Tensor:
        """(..., ℓ) → bool (..., ℓ, b): digit v of slot j is allowed (slot masked or = v)."""
        if y_t.shape[-1] != self.ell:
            raise ValueError(f"last dimension must be ell={self.ell}, got {tuple(y_t.shape)}")
        v = torch.arange(self.base, device=y_t.device)
        obs = y_t[..., None]
        return (obs == self.mask_id) | (obs == v)

    def valid_mask(self, y_t: Tensor) -> Tensor:
        """(..., ℓ) partially masked sub-tokens → bool (..., C): id c is consistent with every
        observed sub-token (the indicator of MDM-Prime eq. 7; ids ≥ C are outside the C-way
        head and hence always excluded).

        Computed on the digit grid: the indicator over all b^ℓ digit tuples is the outer
        product Π_j allowed_j(y^j) of per-slot indicators; row-major flattening of that grid is
        exactly the id order of :meth:`encode`, so its first C entries are the ids 0..C−1.
        """
        allowed = self._allowed(y_t)  # (..., ℓ, b)
        acc = allowed[..., 0, :]
        for j in range(1, self.ell):
            acc = (acc[..., :, None] & allowed[..., j, None, :]).flatten(-2)
        return acc[..., : self.vocab_size]

    def filter_logits(self, logits: Tensor, y_t: Tensor, fill: float = float("-inf")) -> Tensor:
        """MDM-Prime eq. 7: set the logits of ids inconsistent with ``y_t`` to ``fill``.

        Args:
            logits: (..., C) unnormalised joint logits.
            y_t: (..., ℓ) partially masked sub-tokens of the same positions.
        """
        return logits.masked_fill(~self.valid_mask(y_t), fill)

    def log_marginals(self, logits: Tensor) -> Tensor:
        """Filtered joint logits (..., C) → log p(y^j = v | y_t) (..., ℓ, b), float32 or wider.

        p(y^j = v) = Σ_{c: f_ℓ(c)^j = v} softmax(logits)_c: the probabilities are padded with
        zeros to b^ℓ entries (ids ≥ C), viewed as a (b, …, b) digit grid and summed over every
        axis but j (one cheap reduction per digit instead of a scatter). Digit values no valid
        id takes get log(tiny) (≈ −87 in float32, −708 in float64), as does a group whose mass
        underflows, so the result and its gradient stay finite. ℓ = 1 is log_softmax itself.
        """
        x = logits if logits.dtype == torch.float64 else logits.float()
        if self.ell == 1:
            return x.log_softmax(-1)[..., None, :]
        p = x.softmax(-1)
        pad = self.num_combinations - self.vocab_size
        g = torch.nn.functional.pad(p, (0, pad)).reshape(*x.shape[:-1], *([self.base] * self.ell))
        nd = g.dim()
        axes = list(range(nd - self.ell, nd))
        tiny = torch.finfo(g.dtype).tiny
        out = [g.sum(dim=[a for a in axes if a != axes[j]]) for j in range(self.ell)]
        return torch.stack(out, dim=-2).clamp_min(tiny).log()


class SubTokenView:
    """Lazy sub-token view of a token array, for :func:`unmask.training.train`.

    Behaves like the (N, L·ℓ) (or (N, h, w·ℓ)) tensor ``codec.encode(tokens)`` flattened
    per position, but encodes only the rows that are indexed, so a memory-mapped corpus (e.g.
    OpenWebText as a numpy memmap of uint16) is never materialised, let alone ℓ times. Supports
    what the training loop uses: ``shape``, ``is_floating_point``, ``is_cuda``, ``min``/``max``
    (the digit range, valid by construction), ``[0]`` and integer-tensor row indexing.

    Args:
        tokens: (N, ...) token ids < C, a torch tensor or a numpy array / memmap.
        codec: the :class:`SubTokenCodec`.
    """

    def __init__(self, tokens: Tensor | np.ndarray, codec: SubTokenCodec) -> None:
        kind = tokens.dtype.kind if isinstance(tokens, np.ndarray) else (
            "f" if tokens.is_floating_point() else "i")
        if kind not in "iu":
            raise TypeError(f"tokens must be integers, got {tokens.dtype}")
        self.tokens, self.codec = tokens, codec
        self.shape = torch.Size([*tokens.shape[:-1], tokens.shape[-1] * codec.ell])
        self.dtype = torch.long
        self.is_cuda = False

    def __len__(self) -> int:
        return self.shape[0]

    def is_floating_point(self) -> bool:
        return False

    def _rows(self, index) -> Tensor:
        if isinstance(self.tokens, np.ndarray):
            if isinstance(index, Tensor):
                index = index.cpu().numpy()
            return torch.from_numpy(np.asarray(self.tokens[index], dtype=np.int64))
        return self.tokens[index].long()

    def _encode(self, x: Tensor) -> Tensor:
        y = self.codec.encode(x)  # (..., L, ℓ)
        return y.reshape(*y.shape[:-2], y.shape[-2] * self.codec.ell)

    def __getitem__(self, index) -> Tensor:
        return self._encode(self._rows(index))

    def min(self) -> Tensor:
        return torch.tensor(0)

    def max(self) -> Tensor:
        return torch.tensor(self.codec.base - 1)

    def materialize(self) -> Tensor:
        """The full encoded tensor."""
        return self._encode(self._rows(slice(None)))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)
