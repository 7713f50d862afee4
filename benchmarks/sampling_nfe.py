"""NFE and wall time of every sampler at a few step counts, side by side in one run.

Runs on a small randomly initialised transformer (CPU by default) in both timestep modes:
an implicit-timestep (ITM) model is re-evaluated only when the state changed, an explicit-
timestep (ETM) model whenever a token may change (its output depends on t), so ITM NFE
saturates at ≤ L distinct states while ETM NFE tracks the step count. Ratios are printed
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=16)
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128, 512])
    args = ap.parse_args()
    torch.manual_seed(0)
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


if __name__ == "__main__":
    main()
