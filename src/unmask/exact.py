"""Exact analytic denoisers for tiny enumerable distributions.

For a distribution p over V^L given as a table, the optimal denoiser of every masked
generative model is the true conditional marginal

    p(x^i = v | x_t) = Σ_{x ⊒ x_t, x^i = v} p(x) / Σ_{x ⊒ x_t} p(x),

where x ⊒ x_t means x agrees with x_t on its unmasked positions. It depends on x_t only
(an implicit-timestep denoiser). Samplers and likelihood code are checked against it:
samples must reproduce p, and the NELBO must equal −log p(x).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

__all__ = ["ExactDenoiser", "random_distribution"]


def random_distribution(
    vocab_size: int, seq_len: int, *, generator: torch.Generator | None = None,
    concentration: float = 0.3,
) -> Tensor:
    """A random, strongly correlated distribution over V^L (Dirichlet(α) with small α)."""
    n = vocab_size**seq_len
    g = torch.distributions.Gamma(torch.full((n,), concentration, dtype=torch.float64), 1.0)
    # Gamma sampling does not take a generator: derive its seed from the generator.
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        w = g.sample()
    return w / w.sum()


class ExactDenoiser:
    """The exact denoiser of a table ``probs`` (V^L entries, row-major over positions).

    Args:
        probs: (V**L,) probabilities of every sequence, in the order of
            ``itertools.product(range(V), repeat=L)``.
        vocab_size: V; the mask id is V.
        seq_len: L.
    Calls return float64 log-probabilities (valid logits) of shape (B, L, V); impossible values
    get log(1e-30) instead of −inf so downstream softmaxes stay finite.
    """

    time_conditioned = False
    row_independent = True  # row i of the output depends on row i of x_t only

    def __init__(self, probs: Tensor, vocab_size: int, seq_len: int) -> None:
        if probs.numel() != vocab_size**seq_len:
            raise ValueError(
                f"probs has {probs.numel()} entries, expected V**L = {vocab_size**seq_len}"
            )
        self.vocab_size, self.seq_len, self.mask_id = vocab_size, seq_len, vocab_size
        self.probs = probs.to(torch.float64)
        self.states = torch.tensor(
            list(itertools.product(range(vocab_size), repeat=seq_len)), dtype=torch.long
        )
        self.calls = 0

    def index(self, x: Tensor) -> Tensor:
        """Row index of each clean sequence x (B, L) in the table."""
        powers = self.vocab_size ** torch.arange(self.seq_len - 1, -1, -1, device=x.device)
        return (x * powers).sum(-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) for clean sequences x (B, L)."""
        return self.probs.to(x.device)[self.index(x)].log()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact samples from p."""
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.states[idx]

    def __call__(self, x_t: Tensor, t: Tensor | None = None) -> Tensor:
        self.calls += 1
        # At most (V+1)^L distinct inputs: evaluate each once (large batches stay cheap).
        uniq, inverse = torch.unique(x_t, dim=0, return_inverse=True)
        return self._marginals(uniq)[inverse]

    def _marginals(self, x_t: Tensor) -> Tensor:
        states, probs = self.states.to(x_t.device), self.probs.to(x_t.device)
        clean = x_t != self.mask_id  # (B, L)
        agree = (states[None] == x_t[:, None]) | ~clean[:, None]  # (B, S, L)
        w = probs[None] * agree.all(-1)  # (B, S): p(x) 1[x ⊒ x_t]
        onehot = torch.nn.functional.one_hot(states, self.vocab_size).to(w)  # (S, L, V)
        marg = torch.einsum("bs,slv->blv", w, onehot)
        marg = marg / marg.sum(-1, keepdim=True).clamp_min(1e-300)
        return marg.clamp_min(1e-30).log()


def total_variation(den: ExactDenoiser, samples: Tensor) -> float:
    """TV distance between the empirical distribution of ``samples`` (N, L) and ``den.probs``."""
    idx = den.index(samples)
    emp = torch.bincount(idx, minlength=den.probs.numel()).double() / len(idx)
    return 0.5 * float((emp - den.probs.to(emp)).abs().sum())


def tv_noise_band(den: ExactDenoiser, n: int, *, quantile: float = 0.995, repeats: int = 200,
                  seed: int = 99) -> float:
    """The ``quantile`` of the TV distance of n exact samples from the target: what sampling
    noise alone produces, the pass band for a sampler of the right distribution."""
    g = torch.Generator().manual_seed(seed)
    tvs = sorted(total_variation(den, den.sample(n, g)) for _ in range(repeats))
    return tvs[max(0, int(quantile * repeats) - 1)]
