"""NFE and wall time of every sampler at a few step counts, side by side in one run.

Runs on a small randomly initialised transformer (CPU by default) in both timestep modes:
an implicit-timestep (ITM) model re-evaluates a row only when its state changed (per-row
idle-step cache, changed rows gathered into a sub-batch), an explicit-timestep (ETM) model at
every step on the rows in which a token changes (its output depends on t, nothing can be
cached), so NFE (max over rows) saturates at ≤ L for both at large step counts but ITM
evaluates each distinct state once while ETM re-evaluates every step. Ratios are printed
against the uncached run of the same sampler (``cache=False``), measured in the same process.

    .venv/bin/python benchmarks/sampling_nfe.py [--device cuda] [--batch 16] [--seq-len 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from unmask.models import ModelConfig, Transformer
from unmask.models.denoiser import ConditionedDenoiser
from unmask.sampling import METHODS, sample_with_info


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=16)
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128, 512])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="steps 8 and 256 only")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps = [8, 256]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = []
    print(f"{'mode':4} {'method':14} {'steps':>5} {'NFE':>5} {'sec':>7} {'s/sample':>9} "
          f"{'ISR':>5} {'uncached sec':>12} {'speed-up':>8}")
    for mode in ("implicit", "explicit"):
        cfg = ModelConfig(vocab_size=args.vocab, seq_len=args.seq_len, num_classes=0,
                          dim=128, depth=4, heads=4, timestep=mode)
        model = Transformer(cfg).to(args.device).eval()
        for p in model.parameters():  # break the zero init so outputs are not uniform
            torch.nn.init.normal_(p, std=0.05)
        den = ConditionedDenoiser(model)
        for method in METHODS:
            for steps in args.steps if method != "first_hitting" else [args.seq_len]:
                runs = {}
                for cache in (True, False):
                    g = torch.Generator(args.device).manual_seed(1)
                    with torch.no_grad():
                        t0 = time.perf_counter()
                        r = sample_with_info(den, batch_size=args.batch, seq_len=args.seq_len,
                                             mask_id=args.vocab, method=method, steps=steps,
                                             schedule="cosine", generator=g, cache=cache,
                                             device=args.device)
                        if args.device.startswith("cuda"):
                            torch.cuda.synchronize()
                        runs[cache] = (r, time.perf_counter() - t0)
                (r, sec), (r0, sec0) = runs[True], runs[False]
                assert torch.equal(r.tokens, r0.tokens), "cached samples must be bit-identical"
                print(f"{mode[:3].upper():4} {method:14} {steps:5d} {r.nfe:5d} {sec:7.3f} "
                      f"{sec / args.batch:9.5f} {r.idle_step_ratio:5.2f} {sec0:12.3f} "
                      f"{sec0 / sec:7.2f}x")
                out.append(dict(mode=mode, method=method, steps=steps, nfe=r.nfe,
                                nfe_mean=r.nfe_mean, seconds=sec, uncached_seconds=sec0,
                                speedup=sec0 / sec, isr=r.idle_step_ratio))
    return out


if __name__ == "__main__":
    main()
