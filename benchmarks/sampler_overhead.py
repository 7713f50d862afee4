"""Sampler overhead: total sampling time ÷ the network's own forward time, per method.

The limit of a sampler is the time the network needs for the rows it must evaluate. Each
configuration (method ∈ euler, mdm, maskgit, first_hitting; ETM and ITM; with and without
classifier-free guidance) runs :func:`unmask.sampling.sample_with_info` on a denoiser whose
network is wrapped by :class:`TimedNetwork`, which times every forward call (sub-batches,
padding and the doubled CFG batch included: exactly the rows the sampler sent through the
network). In the same call we time the whole ``sample_with_info``. So

    overhead ratio = wall time of the sample call / Σ forward time of its network calls

is measured side by side in one run, immune to the machine's load changing between two
separate measurements (goal ≤ 1.05: the sampler adds at most 5 % to the network's time).
The median over ``--repeats`` runs is reported per configuration.

Models: ``default`` is the default pipeline's denoiser (params.yaml ``model``: dim 96,
depth 4, 4 heads, 7×7 grid of V = 256 VQ codes, 10 classes) at the ``sample`` stage's steps
(32), batch 64 (the stage draws 1000 rows at once; a smaller batch is the harder case, the
sampler's per-step costs being shared by fewer rows); ``larger`` is a dim 128, depth 6
transformer on a 16×16 grid (L = 256), V = 1024, batch 8. Both randomly initialised (the time
of a forward does not depend on the weights' values). ``first_hitting`` makes one network call
per token (L calls), so it runs a quarter of the batch.

    .venv/bin/python benchmarks/sampler_overhead.py [--quick] [--models default larger]
        [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from unmask.models import ModelConfig, Transformer
from unmask.models.denoiser import ConditionedDenoiser
from unmask.sampling import METHODS, sample_with_info

GOAL = 1.05

#: name → (ModelConfig fields, batch, steps)
MODELS: dict[str, tuple[dict[str, Any], int, int]] = {
    "default": (dict(vocab_size=256, grid=(7, 7), num_classes=10, dim=96, depth=4, heads=4,
                     mlp_ratio=4.0, pos="learned2d", cond_dropout=0.1), 64, 32),
    "larger": (dict(vocab_size=1024, grid=(16, 16), num_classes=10, dim=128, depth=6,
                    heads=4, mlp_ratio=4.0, pos="learned2d", cond_dropout=0.1), 8, 32),
}


class TimedNetwork:
    """Calls ``model(x, t, y)`` and adds the call's wall time to ``seconds`` (synchronising
    CUDA before and after, so the kernels are charged to the call that launched them).

    Carries the attributes :class:`ConditionedDenoiser` reads from a network
    (``time_conditioned``, ``null_class``), so the sampler takes exactly the path it takes
    with the bare model.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.time_conditioned = getattr(model, "time_conditioned", True)
        self.null_class = getattr(model, "null_class", None)
        self.cuda = next(model.parameters()).is_cuda
        self.seconds = 0.0
        self.calls = 0
        self.rows = 0

    def reset(self) -> None:
        self.seconds, self.calls, self.rows = 0.0, 0, 0

    def __call__(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = self.model(x, t, y)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.rows += x.shape[0]
        return out


@dataclass
class Measurement:
    total_s: float
    network_s: float
    calls: int
    rows: int
    nfe: int

    @property
    def ratio(self) -> float:
        return self.total_s / self.network_s


def build(name: str, timestep: str, device: str) -> tuple[TimedNetwork, int, int, int, int]:
    """(timed network, batch, L, V, steps) of model ``name`` in timestep mode ``timestep``."""
    fields, batch, steps = MODELS[name]
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**fields, timestep=timestep)).to(device).eval()
    for p in model.parameters():  # break the zero init so the outputs are not uniform
        torch.nn.init.normal_(p, std=0.05)
    return TimedNetwork(model), batch, model.cfg.length, model.cfg.vocab_size, steps


def measure(net: TimedNetwork, *, batch: int, L: int, V: int, steps: int, method: str,
            cfg_scale: float, device: str, seed: int = 0) -> Measurement:
    """One sample call: its wall time beside the Σ of its network calls' wall times."""
    y = torch.arange(batch, device=device) % 10
    den = ConditionedDenoiser(net, y)
    g = torch.Generator(device).manual_seed(seed)
    net.reset()
    with torch.no_grad():
        if net.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = sample_with_info(den, batch_size=batch, seq_len=L, mask_id=V, method=method,
                               steps=steps, schedule="cosine" if method == "maskgit"
                               else "linear", generator=g, cfg_scale=cfg_scale, device=device)
        if net.cuda:
            torch.cuda.synchronize()
        total = time.perf_counter() - t0
    assert net.rows == res.rows_evaluated, (net.rows, res.rows_evaluated)
    return Measurement(total, net.seconds, net.calls, net.rows, res.nfe)


def run(args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    print(f"sampler overhead = sample() wall time / Σ network forward time of the rows it "
          f"evaluated (goal <= {GOAL}); {torch.get_num_threads()} thread(s) on {args.device}, "
          f"median of {args.repeats}")
    print(f"  {'model':8s} {'t':3s} {'method':13s} {'cfg':>3s} {'B':>5s} {'L':>4s} "
          f"{'steps':>5s} {'calls':>5s} {'rows':>7s} {'total s':>8s} {'net s':>8s} "
          f"{'ratio':>6s}")
    for name in args.models:
        for timestep in ("explicit", "implicit"):
            net, batch, L, V, steps = build(name, timestep, args.device)
            batch, steps = args.batch or batch, args.steps or steps
            for method in args.methods:
                for cfg in (0.0, 2.0):
                    kw = dict(batch=batch, L=L, V=V, steps=steps, method=method,
                              cfg_scale=cfg, device=args.device)
                    if method == "first_hitting":  # one token per call: L calls
                        kw["batch"] = max(4, batch // 4)
                    measure(net, **{**kw, "batch": min(kw["batch"], 8)})  # warm-up
                    ms = [measure(net, **kw, seed=r) for r in range(args.repeats)]
                    ratio = statistics.median(m.ratio for m in ms)
                    m = ms[0]
                    total = statistics.median(x.total_s for x in ms)
                    netsec = statistics.median(x.network_s for x in ms)
                    ok = "ok" if ratio <= GOAL else "ABOVE GOAL"
                    shown = steps if method != "first_hitting" else "-"
                    print(f"  {name:8s} {timestep[:3].upper():3s} {method:13s} {cfg:3.0f} "
                          f"{kw['batch']:5d} {L:4d} {shown:>5} "
                          f"{m.calls:5d} {m.rows:7d} {total:8.3f} {netsec:8.3f} {ratio:6.3f} "
                          f"{ok}", flush=True)
                    rows.append(dict(table="sampler_overhead", model=name, mode=timestep,
                                     method=method, cfg_scale=cfg, batch=kw["batch"], L=L,
                                     V=V, steps=steps if method != "first_hitting" else None,
                                     calls=m.calls, rows_evaluated=m.rows, nfe=m.nfe,
                                     total_s=total, network_s=netsec, ratio=ratio, goal=GOAL))
    worst = max(rows, key=lambda r: r["ratio"])
    print(f"  worst: {worst['model']} {worst['mode']} {worst['method']} cfg "
          f"{worst['cfg_scale']:g}: {worst['ratio']:.3f} (goal <= {GOAL})")
    return rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=0, help="override each model's batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="override each model's steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 repeat, the default model only")
    return ap


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    if args.quick:
        args.repeats, args.models = 1, ["default"]
    torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    main()
