"""Scaling tables: sampling time vs sequence length and vs steps, training step vs model size.

1. Sampling vs L (256 → 4096 tokens): a small transformer (dim 64, depth 2, 4 heads, V 256,
   ETM), ``mdm`` with a few steps, batch 1, 1 thread: seconds per sample and per step.
2. Sampling vs steps at L = 256, batch 2: ITM (per-row idle-step cache: NFE ≤ L) and ETM
   (evaluated at every step, on the rows that change): NFE, seconds per sample, the speed-up
   against ``cache=False`` (which evaluates every row at every step) and its ideal value, the
   ratio of network rows evaluated (goal: speed-up ≥ 0.9 × ideal at large step counts).
3. Training step time vs model size: presets ``tiny`` and ``small`` and a ``mid`` size
   (dim 256, depth 6) at batch 4 × L 128: parameters, seconds per step, tokens/s, and the
   achieved model FLOP/s (:mod:`unmask.training.flops`).

Tables are printed and written to ``benchmarks/results/scaling.{json,csv}``.

    .venv/bin/python benchmarks/scaling.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from unmask.models import ModelConfig, Transformer
from unmask.models.denoiser import ConditionedDenoiser
from unmask.sampling import sample_with_info
from unmask.training.flops import training_flops_per_token

RESULTS = Path(__file__).resolve().parent / "results"


def _model(L: int, V: int, timestep: str, dim: int = 64, depth: int = 2) -> ConditionedDenoiser:
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=V, seq_len=L, dim=dim, depth=depth, heads=4,
                                timestep=timestep)).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return ConditionedDenoiser(m)


def _sample(den, L, V, steps, batch, cache=True):
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        r = sample_with_info(den, batch_size=batch, seq_len=L, mask_id=V, method="mdm",
                             steps=steps, schedule="cosine", generator=g, cache=cache)
    return time.perf_counter() - t0, r


def vs_length(lengths, steps, V, batch) -> list[dict]:
    rows = []
    print(f"\nsampling vs sequence length (mdm, {steps} steps, batch {batch}, ETM dim 64 "
          f"depth 2)")
    print(f"  {'L':>5} {'s/sample':>9} {'ms/step':>8} {'NFE':>4}")
    for L in lengths:
        den = _model(L, V, "explicit")
        _sample(den, L, V, 1, batch)  # warm-up
        sec, r = _sample(den, L, V, steps, batch)
        rows.append(dict(table="sampling_vs_length", L=L, steps=steps, batch=batch,
                         s_per_sample=sec / batch, ms_per_step=1e3 * sec / steps, nfe=r.nfe))
        print(f"  {L:5d} {sec / batch:9.3f} {1e3 * sec / steps:8.1f} {r.nfe:4d}")
    return rows


def vs_steps(L, steps_list, V, batch, repeats) -> list[dict]:
    rows = []
    print(f"\nsampling vs steps (mdm, L={L}, batch {batch}, {repeats} back-to-back pairs, order "
          "alternating; speed-up = median of the pairs' ratios): "
          "cached (ITM: per-row idle-step cache; ETM: only rows that change) vs cache=False")
    print(f"  {'mode':4} {'steps':>5} {'NFE':>4} {'NFE mean':>8} {'s/sample':>9} "
          f"{'uncached':>9} {'speed-up':>8} {'ideal':>6} {'ratio':>6}")
    for mode in ("implicit", "explicit"):
        den = _model(L, V, mode)
        _sample(den, L, V, 2, batch)
        for steps in steps_list:
            secs, secs0, pairs = [], [], []
            for i in range(repeats):  # the order alternates: a load change hits both sides
                if i % 2:
                    sec0, r0 = _sample(den, L, V, steps, batch, cache=False)
                    sec, r = _sample(den, L, V, steps, batch)
                else:
                    sec, r = _sample(den, L, V, steps, batch)
                    sec0, r0 = _sample(den, L, V, steps, batch, cache=False)
                assert torch.equal(r.tokens, r0.tokens), "cached samples must be bit-identical"
                secs.append(sec)
                secs0.append(sec0)
                pairs.append(sec0 / sec)
            sec, sec0 = statistics.median(secs), statistics.median(secs0)
            # speed-up: median over back-to-back pairs (each pair ran under the same load)
            speedup = statistics.median(pairs)
            # ideal speed-up: the ratio of network rows evaluated (uncached / cached)
            ideal = r0.rows_evaluated / max(r.rows_evaluated, 1)
            rows.append(dict(table="sampling_vs_steps", mode=mode, L=L, steps=steps,
                             batch=batch, nfe=r.nfe, nfe_mean=r.nfe_mean,
                             rows_evaluated=r.rows_evaluated,
                             uncached_rows_evaluated=r0.rows_evaluated,
                             s_per_sample=sec / batch, uncached_s_per_sample=sec0 / batch,
                             speedup=speedup, ideal_speedup=ideal,
                             speedup_over_ideal=speedup / ideal))
            print(f"  {mode[:3].upper():4} {steps:5d} {r.nfe:4d} {r.nfe_mean:8.1f} "
                  f"{sec / batch:9.3f} {sec0 / batch:9.3f} {speedup:7.2f}x {ideal:5.2f}x "
                  f"{speedup / ideal:6.2f}")
    print("  ideal = network rows evaluated uncached / cached; ratio = speed-up / ideal "
          "(goal >= 0.9 at large step counts)")
    return rows


def vs_model_size(presets, batch, L, V, steps) -> list[dict]:
    rows = []
    print(f"\ntraining step vs model size (batch {batch} x L {L}, V {V}, AdamW, fp32)")
    print(f"  {'model':6} {'params':>8} {'s/step':>7} {'tok/s':>8} {'GFLOP/s':>8}")
    for name, kw in presets.items():
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=V, seq_len=L, **kw)
        model = Transformer(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x0 = torch.randint(0, V, (batch, L))
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            t = torch.rand(batch)
            masked = torch.rand(batch, L) >= t[:, None]
            logits = model(torch.where(masked, V, x0), t, None)
            loss = F.cross_entropy(logits[masked], x0[masked])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        sec = statistics.median(times)
        params = sum(p.numel() for p in model.parameters())
        tok_s = batch * L / sec
        gflops = training_flops_per_token(cfg) * tok_s / 1e9
        rows.append(dict(table="train_vs_size", model=name, params=params, batch=batch, L=L,
                         s_per_step=sec, tokens_per_s=tok_s, model_gflops=gflops))
        print(f"  {name:6} {params / 1e6:7.2f}M {sec:7.3f} {tok_s:8.0f} {gflops:8.2f}")
    return rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128, 512, 1024])
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--quick", action="store_true", help="fewer step counts, smaller models")
    return ap


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    presets = {"tiny": {"preset": "tiny"}, "mid": {"dim": 256, "depth": 6, "heads": 4},
               "small": {"preset": "small"}}
    steps = args.steps
    if args.quick:
        steps, args.train_steps, args.repeats = [8, 256, 1024], 2, 1
    print(f"scaling: {torch.get_num_threads()} thread(s) on cpu")
    rows = vs_length(args.lengths, 8, args.vocab, 1)
    rows += vs_steps(256, steps, args.vocab, args.batch, args.repeats)
    rows += vs_model_size(presets, 4, 128, args.vocab, args.train_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(rows, indent=1))
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "table", k))
    with open(args.out / "scaling.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"\nwrote {args.out / 'scaling.json'} and {args.out / 'scaling.csv'}")
    return rows


if __name__ == "__main__":
    main()
