"""Our samplers vs the peer libraries, on the same denoiser, steps and batch, in one run.

* ``euler``   vs flow_matching's ``MixtureDiscreteEulerSolver`` (κ_t = t);
* ``maskgit`` vs a diffusers ``AmusedScheduler`` loop (cosine mask schedule, same choice
  temperature annealing: diffusers' linspace(τ(N−1)/N, 0, N) equals MaskGIT's τ(1 − (k+1)/N)).

Speed: a small random transformer (ETM, so neither side may cache on unchanged states),
wall time of the whole loop, ratio peer / ours (goal ≥ 1.5×). Agreement: on an exact V = 3,
L = 4 problem, the TV distance of each side's 10⁴ samples to the target (euler) or between the
two sides (maskgit), next to the noise band of exact sampling.

    .venv/bin/python benchmarks/peers.py [--device cuda] [--batch 32] [--seq-len 256] [--steps 64]
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import AmusedScheduler
from flow_matching.path import MixtureDiscreteProbPath
from flow_matching.path.scheduler import PolynomialConvexScheduler
from flow_matching.solver import MixtureDiscreteEulerSolver
from flow_matching.utils import ModelWrapper

from unmask.exact import ExactDenoiser, random_distribution
from unmask.models import ModelConfig, Transformer
from unmask.models.denoiser import ConditionedDenoiser
from unmask.sampling import sample


class _Probs(ModelWrapper):
    """flow_matching wants probabilities over V+1 ids, one-hot on clean tokens."""

    def __init__(self, den, vocab: int) -> None:
        super().__init__(torch.nn.Identity())
        self.den, self.vocab = den, vocab

    def forward(self, x, t, **extras):
        p = self.den(x, t).float().softmax(-1)
        p = torch.cat([p, torch.zeros(*x.shape, 1, device=x.device)], -1)
        onehot = torch.nn.functional.one_hot(x, self.vocab + 1).float()
        return torch.where((x != self.vocab)[..., None], onehot, p)


def peer_euler(den, vocab, batch, seq_len, steps, device, seed):
    torch.manual_seed(seed)
    solver = MixtureDiscreteEulerSolver(
        _Probs(den, vocab), MixtureDiscreteProbPath(PolynomialConvexScheduler(n=1.0)),
        vocabulary_size=vocab + 1,
    )
    x0 = torch.full((batch, seq_len), vocab, device=device)
    return solver.sample(x0, step_size=None, time_grid=torch.linspace(0, 1, steps + 1))


def peer_maskgit(den, vocab, batch, seq_len, steps, device, seed, tau=4.5):
    g = torch.Generator(device).manual_seed(seed)
    sch = AmusedScheduler(mask_token_id=vocab, masking_schedule="cosine")
    sch.set_timesteps(steps, temperature=(tau * (steps - 1) / steps, 0.0), device=device)
    x = torch.full((batch, seq_len), vocab, device=device)
    for k, ts in enumerate(sch.timesteps):
        logits = den(x, torch.full((batch,), k / steps, device=device)).float()
        x = sch.step(logits, ts, x, generator=g).prev_sample
    return x


def ours(den, vocab, batch, seq_len, steps, device, seed, method):
    g = torch.Generator(device).manual_seed(seed)
    return sample(den, batch_size=batch, seq_len=seq_len, mask_id=vocab, method=method,
                  steps=steps, schedule="linear" if method == "euler" else "cosine",
                  generator=g, device=device)


def timed(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def tv(den: ExactDenoiser, a, b=None):
    ea = torch.bincount(den.index(a), minlength=den.probs.numel()).double() / len(a)
    eb = den.probs if b is None else torch.bincount(den.index(b), minlength=ea.numel()) / len(b)
    return 0.5 * float((ea - eb).abs().sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--steps", type=int, default=64)
    args = ap.parse_args()
    dev = args.device
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=args.vocab, seq_len=args.seq_len, dim=128, depth=4, heads=4)
    model = Transformer(cfg).to(dev).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    den = ConditionedDenoiser(model)
    a = (den, args.vocab, args.batch, args.seq_len, args.steps, dev, 0)

    print(f"speed: B={args.batch} L={args.seq_len} V={args.vocab} steps={args.steps} on {dev}")
    for name, mine, peer in (
        ("euler vs flow_matching", lambda: ours(*a, "euler"), lambda: peer_euler(*a)),
        ("maskgit vs diffusers aMUSEd", lambda: ours(*a, "maskgit"), lambda: peer_maskgit(*a)),
    ):
        t_ours, t_peer = timed(mine), timed(peer)
        print(f"  {name:28s} ours {t_ours:7.3f}s  peer {t_peer:7.3f}s  "
              f"ratio {t_peer / t_ours:5.2f}x  (goal >= 1.5x)")

    n = 10_000
    g = torch.Generator().manual_seed(1)
    ex = ExactDenoiser(random_distribution(3, 4, generator=g), 3, 4)
    band = sorted(tv(ex, ex.sample(n, g)) for _ in range(100))[98]
    print(f"agreement on an exact V=3, L=4 problem, {n} samples (noise band TV {band:.4f}):")
    e = (ex, 3, n, 4, 256, "cpu")
    print(f"  euler TV to target: ours {tv(ex, ours(*e, 2, 'euler')):.4f}  "
          f"flow_matching {tv(ex, peer_euler(*e, 3)):.4f}")
    m = (ex, 3, n, 4, 4, "cpu")
    ours_a, ours_b, peer = ours(*m, 4, "maskgit"), ours(*m, 5, "maskgit"), peer_maskgit(*m, 6)
    print(f"  maskgit two-sample TV: ours vs aMUSEd {tv(ex, ours_a, peer):.4f}  "
          f"ours vs ours (noise) {tv(ex, ours_a, ours_b):.4f}")


if __name__ == "__main__":
    main()
