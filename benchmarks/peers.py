"""Our samplers vs the peer libraries, on the same denoiser, steps and batch, in one run.

* ``euler``   vs flow_matching's ``MixtureDiscreteEulerSolver`` (κ_t = t);
* ``maskgit`` vs a diffusers ``AmusedScheduler`` loop (cosine mask schedule, same choice
  temperature annealing: diffusers' linspace(τ(N−1)/N, 0, N) equals MaskGIT's τ(1 − (k+1)/N)).

Speed. The denoiser is a small, randomly initialised transformer (realistic but cheap, so
the samplers' own costs are visible): ``--dim`` 64, ``--depth`` 2, 4 heads, V = ``--vocab`` 512.
Both sides run the same network, batch and step count; wall time of the whole loop. Each side
is warmed up once (untimed) before the timed repetitions; repetitions are interleaved with the
order alternating (ours, peer, peer, ours, …) so neither side always runs first; the median is
reported, ratio = peer / ours (goal ≥ 1.5× end to end). Rows:

1. ``ETM`` (explicit timestep: the output depends on t, so nothing can be cached): euler vs
   flow_matching and maskgit vs aMUSEd at ``--steps``, twice: *end to end* (our default: a
   step evaluates only the rows in which some token jumps) and *at equal rows evaluated*
   (ours with ``cache=False``: every row at every step, as the peers do), so the second
   compares the samplers doing the same network work. Rows evaluated are printed per side.
2. ``ITM`` (implicit timestep) at ``--cached-steps`` (default 1024 ≥ L): our euler with
   ``cache=False`` vs flow_matching (equal rows: both evaluate every row at every step), and,
   as its own row, the idle-step cache's speed-up: ours cached vs ours uncached, beside the
   ideal speed-up (rows evaluated uncached ÷ cached; goal ≥ 0.9 × ideal). The cache is fewer
   network calls, not a faster sampler, so it is not folded into the peer ratio.
3. ``sampler only``: a free denoiser (fixed logits, no network) at ``--steps``: the samplers'
   own per-step overhead.

Agreement. On an exact V = 3, L = 4 problem: the TV distance of each side's 10⁴ euler samples
to the target, next to the one-sample noise band (99th percentile of the TV of 10⁴ exact
samples to the target), and the two-sample TV between our maskgit and aMUSEd's, next to the
two-sample noise band (99th percentile of the TV between two sets of 10⁴ exact samples) —
the threshold ``run_all.py`` checks.

    .venv/bin/python benchmarks/peers.py [--quick] [--device cuda] [--batch 16] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import AmusedScheduler
from flow_matching.path import MixtureDiscreteProbPath
from flow_matching.path.scheduler import PolynomialConvexScheduler
from flow_matching.solver import MixtureDiscreteEulerSolver
from flow_matching.utils import ModelWrapper

from unmask.exact import ExactDenoiser, random_distribution
from unmask.models import ModelConfig, Transformer
from unmask.models.denoiser import ConditionedDenoiser
from unmask.sampling import sample, sample_with_info

GOAL = 1.5
CACHE_GOAL = 0.9  # cache speed-up ≥ 0.9 × its ideal (rows evaluated uncached / cached)


class _Probs(ModelWrapper):
    """flow_matching wants probabilities over V+1 ids, one-hot on clean tokens (otherwise its
    solver would let clean tokens jump). Built with in-place ops so the adapter is cheap."""

    def __init__(self, den, vocab: int) -> None:
        super().__init__(torch.nn.Identity())
        self.den, self.vocab = den, vocab

    def forward(self, x, t, **extras):
        p = torch.nn.functional.pad(self.den(x, t).float().softmax(-1), (0, 1))
        clean = (x != self.vocab)[..., None]
        return p.masked_fill_(clean, 0.0).scatter_(-1, x[..., None], clean.to(p.dtype))


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


def ours(den, vocab, batch, seq_len, steps, device, seed, method, info=False, cache=True):
    g = torch.Generator(device).manual_seed(seed)
    fn = sample_with_info if info else sample
    return fn(den, batch_size=batch, seq_len=seq_len, mask_id=vocab, method=method,
              steps=steps, schedule="linear" if method == "euler" else "cosine",
              generator=g, device=device, cache=cache)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each callable over ``repeats`` timed runs.

    Every callable is first run once untimed (both sides warmed alike: lazy imports, the
    allocator, caches); then the callables run in turn with the order reversed on every
    other repetition, so no side always runs first (or always right after the other).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn()
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            with torch.no_grad():
                fns[name]()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def tv(den: ExactDenoiser, a, b=None):
    ea = torch.bincount(den.index(a), minlength=den.probs.numel()).double() / len(a)
    eb = den.probs if b is None else torch.bincount(den.index(b), minlength=ea.numel()) / len(b)
    return 0.5 * float((ea - eb).abs().sum())


class FixedLogits:
    """A free denoiser: the same logits every call (isolates the samplers' own cost)."""

    time_conditioned = True

    def __init__(self, batch: int, seq_len: int, vocab: int, device) -> None:
        g = torch.Generator().manual_seed(0)
        self.logits = (2 * torch.randn(batch, seq_len, vocab, generator=g)).to(device)

    def __call__(self, x, t):
        return self.logits[: x.shape[0]]


def transformer(vocab, seq_len, dim, depth, timestep, device):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab, seq_len=seq_len, dim=dim, depth=depth, heads=4,
                      timestep=timestep)
    model = Transformer(cfg).to(device).eval()
    for p in model.parameters():  # break the zero init so outputs are not uniform
        torch.nn.init.normal_(p, std=0.05)
    return ConditionedDenoiser(model)


def run(args) -> list[dict]:
    """Print the tables; return the rows (name, ours_s, peer_s, ratio, goal, ...)."""
    dev, B, L, V, N = args.device, args.batch, args.seq_len, args.vocab, args.steps
    rows: list[dict] = []

    def report(name, t, rows_ours=None, rows_peer=None, extra=""):
        ratio = t["peer"] / t["ours"]
        rows.append(dict(name=name, ours_s=t["ours"], peer_s=t["peer"], ratio=ratio, goal=GOAL,
                         rows_ours=rows_ours, rows_peer=rows_peer))
        ok = "ok" if ratio >= GOAL else "BELOW GOAL"
        work = (f"  [rows evaluated ours {rows_ours}, peer {rows_peer}]"
                if rows_ours is not None else "")
        print(f"  {name:52s} ours {t['ours']:7.3f}s  peer {t['peer']:7.3f}s  "
              f"ratio {ratio:5.2f}x  (goal >= {GOAL}x: {ok}){work}{extra}")

    def rows_of(a, method, cache=True):
        with torch.no_grad():
            return ours(*a, method, info=True, cache=cache).rows_evaluated

    print(f"peers: B={B} L={L} V={V} transformer dim={args.dim} depth={args.depth}, "
          f"{torch.get_num_threads()} thread(s) on {dev}, median of {args.repeats} interleaved "
          "(order alternating, both sides warmed up once)")
    etm = transformer(V, L, args.dim, args.depth, "explicit", dev)
    a = (etm, V, B, L, N, dev, 0)
    with torch.no_grad():
        t0 = time.perf_counter()
        etm(torch.full((B, L), V, device=dev), torch.zeros(B, device=dev))
        print(f"  one forward of the transformer: {1e3 * (time.perf_counter() - t0):.1f} ms")
    peer_rows = B * N  # both peers evaluate every row at every step
    for method, peer, label in (("euler", peer_euler, "flow_matching"),
                                ("maskgit", peer_maskgit, "diffusers aMUSEd")):
        report(f"ETM {method} vs {label} (steps={N}), end to end",
               interleaved({"ours": lambda m=method: ours(*a, m),
                            "peer": lambda p=peer: p(*a)}, args.repeats),
               rows_of(a, method), peer_rows)
        report(f"ETM {method} vs {label} (steps={N}), equal rows",
               interleaved({"ours": lambda m=method: ours(*a, m, cache=False),
                            "peer": lambda p=peer: p(*a)}, args.repeats),
               rows_of(a, method, cache=False), peer_rows)

    itm = transformer(V, L, args.dim, args.depth, "implicit", dev)
    S = args.cached_steps
    c = (itm, V, B, L, S, dev, 0)
    reps = 1 if args.quick else max(1, args.repeats // 2)
    with torch.no_grad():
        info, info0 = ours(*c, "euler", info=True), ours(*c, "euler", info=True, cache=False)
    report(f"ITM euler vs flow_matching (steps={S}), equal rows",
           interleaved({"ours": lambda: ours(*c, "euler", cache=False),
                        "peer": lambda: peer_euler(*c)}, reps),
           info0.rows_evaluated, B * S)
    t = interleaved({"cached": lambda: ours(*c, "euler"),
                     "uncached": lambda: ours(*c, "euler", cache=False)}, reps)
    speedup, ideal = t["uncached"] / t["cached"], info0.rows_evaluated / info.rows_evaluated
    rows.append(dict(name=f"ITM cache speed-up, euler (steps={S})", cached_s=t["cached"],
                     uncached_s=t["uncached"], speedup=speedup, ideal=ideal,
                     speedup_over_ideal=speedup / ideal, goal_over_ideal=CACHE_GOAL,
                     nfe=info.nfe, nfe_mean=info.nfe_mean))
    ok = "ok" if speedup / ideal >= CACHE_GOAL else "BELOW GOAL"
    print(f"  {'ITM cache speed-up, ours cached vs ours uncached (steps=' + str(S) + ')':52s} "
          f"cached {t['cached']:7.3f}s  uncached {t['uncached']:7.3f}s  speed-up {speedup:5.2f}x"
          f" / ideal {ideal:5.2f}x = {speedup / ideal:.2f} (goal >= {CACHE_GOAL}: {ok})  "
          f"[rows evaluated {info.rows_evaluated} vs {info0.rows_evaluated}; NFE/row max "
          f"{info.nfe}, mean {info.nfe_mean:.1f}]")

    free = FixedLogits(B, L, V, dev)
    f = (free, V, B, L, N, dev, 0)
    report(f"sampler only: euler vs flow_matching (steps={N})",
           interleaved({"ours": lambda: ours(*f, "euler"), "peer": lambda: peer_euler(*f)},
                       args.repeats))
    report(f"sampler only: maskgit vs aMUSEd (steps={N})",
           interleaved({"ours": lambda: ours(*f, "maskgit"),
                        "peer": lambda: peer_maskgit(*f)}, args.repeats))

    n = args.agree_samples
    g = torch.Generator().manual_seed(1)
    ex = ExactDenoiser(random_distribution(3, 4, generator=g), 3, 4)
    band = sorted(tv(ex, ex.sample(n, g)) for _ in range(100))[98]
    band2 = sorted(tv(ex, ex.sample(n, g), ex.sample(n, g)) for _ in range(100))[98]
    print(f"agreement on an exact V=3, L=4 problem, {n} samples (noise bands: 99th pct TV of "
          f"exact samples to the target {band:.4f}, between two exact sample sets {band2:.4f}):")
    e = (ex, 3, n, 4, 256, "cpu")
    tv_ours, tv_peer = tv(ex, ours(*e, 2, "euler")), tv(ex, peer_euler(*e, 3))
    print(f"  euler TV to target: ours {tv_ours:.4f}  flow_matching {tv_peer:.4f}  "
          f"(band {band:.4f})")
    m = (ex, 3, n, 4, 4, "cpu")
    ours_a, ours_b, peer = ours(*m, 4, "maskgit"), ours(*m, 5, "maskgit"), peer_maskgit(*m, 6)
    two, noise = tv(ex, ours_a, peer), tv(ex, ours_a, ours_b)
    print(f"  maskgit two-sample TV: ours vs aMUSEd {two:.4f}  ours vs ours {noise:.4f}  "
          f"(two-sample band {band2:.4f})")
    rows.append(dict(name="agreement", band=band, band_two_sample=band2,
                     euler_tv_ours=tv_ours, euler_tv_peer=tv_peer, maskgit_two_sample_tv=two,
                     maskgit_noise_tv=noise))
    return rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--cached-steps", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--agree-samples", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="3 repetitions (1 for the cached row), 256 cached steps")
    return ap


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    if args.quick:
        args.repeats, args.cached_steps = 3, min(args.cached_steps, 256)
    torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    main()
