"""Exact analytic sub-token denoiser for tiny enumerable distributions (the test oracle).

For p over C^L given as a table and a partially masked sub-token state y_t (each token's ℓ
digits individually masked), the optimal MDM-Prime denoiser is the true conditional of the
full token given everything observed:

    p(x^i = c | y_t) = Σ_{x ⊒ y_t, x^i = c} p(x) / Σ_{x ⊒ y_t} p(x),

where x ⊒ y_t means f_ℓ(x) agrees with y_t on every unmasked sub-token. It is zero on ids
inconsistent with y_t^i, so it satisfies MDM-Prime eq. 7 by construction; its sub-token
marginals (:meth:`SubTokenCodec.log_marginals`) are the true p(y^{i,j} | y_t). With it the
sampler must reproduce p and the sub-token NELBO must equal −log p(x) in expectation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unmask.exact import ExactDenoiser, random_distribution
from unmask.prime.subtokens import SubTokenCodec

__all__ = ["ExactPrimeDenoiser"]

_TABLE_MAX = 1 << 16  # partial states tabulated up front when there are at most this many


class ExactPrimeDenoiser(ExactDenoiser):
    """Exact joint denoiser of ``probs`` over C^L under ℓ-digit partial masking.

    ``joint(y_t (B, L, ℓ), t)`` returns float64 log-probabilities (B, L, C) (impossible ids
    get log 1e-30, like :class:`~unmask.exact.ExactDenoiser`); ``marginals(y_flat, t)`` the
    sub-token marginal log-probabilities (B, L·ℓ, b) — a plain masked-model denoiser over the
    L·ℓ sub-tokens (mask id b) for :func:`unmask.likelihood.nelbo_with_stderr`.
    """

    def __init__(self, probs: Tensor, vocab_size: int, seq_len: int, ell: int) -> None:
        super().__init__(probs, vocab_size, seq_len)
        self.codec = SubTokenCodec(vocab_size, ell)
        if (self.codec.base + 1) ** (seq_len * ell) >= 2**62:
            raise ValueError("distribution too large for the exact sub-token denoiser")
        self._table: Tensor | None = None
        self.state_digits = self.codec.encode(self.states)  # (S, L, ℓ)

    def joint(self, y_t: Tensor, t: Tensor | None = None) -> Tensor:
        self.calls += 1
        b, n = y_t.shape[0], self.seq_len * self.codec.ell
        flat = y_t.reshape(b, n).long()
        # Each row as one base-(b+1) integer: a 1-D unique is far cheaper than unique(dim=0).
        radix = self.codec.base + 1
        powers = radix ** torch.arange(n - 1, -1, -1, device=flat.device)
        ids = (flat * powers).sum(-1)
        if radix**n <= _TABLE_MAX:  # small: tabulate every partial state once, then look up
            if self._table is None or self._table.device != flat.device:
                every = (torch.arange(radix**n, device=flat.device)[:, None] // powers) % radix
                self._table = self._joint(every.reshape(-1, self.seq_len, self.codec.ell))
            return self._table[ids]
        uniq, inverse = torch.unique(ids, return_inverse=True)
        states = (uniq[:, None] // powers) % radix
        return self._joint(states.reshape(-1, self.seq_len, self.codec.ell))[inverse]

    def _joint(self, y_t: Tensor) -> Tensor:
        dig, probs = self.state_digits.to(y_t.device), self.probs.to(y_t.device)
        obs = y_t != self.codec.mask_id  # (B, L, ℓ)
        agree = (dig[None] == y_t[:, None]) | ~obs[:, None]  # (B, S, L, ℓ)
        w = probs[None] * agree.flatten(2).all(-1)  # (B, S)
        onehot = torch.nn.functional.one_hot(self.states, self.vocab_size).to(w)  # (S, L, C)
        marg = torch.einsum("bs,slc->blc", w, onehot)
        marg = marg / marg.sum(-1, keepdim=True).clamp_min(1e-300)
        return marg.clamp_min(1e-30).log()

    def marginals(self, y_flat: Tensor, t: Tensor | None = None) -> Tensor:
        """Sub-token marginal log-probs (B, L·ℓ, b) of flat sub-tokens (B, L·ℓ)."""
        joint = self.codec.filter_logits(self.joint(y_flat, t),
                                         self.codec.group(y_flat))
        lm = self.codec.log_marginals(joint)
        return lm.reshape(y_flat.shape[0], -1, self.codec.base)


def make_exact(c: int, length: int, ell: int, seed: int) -> ExactPrimeDenoiser:
    """An exact sub-token denoiser of a random correlated distribution over C^L."""
    g = torch.Generator().manual_seed(seed)
    return ExactPrimeDenoiser(random_distribution(c, length, generator=g), c, length, ell)
