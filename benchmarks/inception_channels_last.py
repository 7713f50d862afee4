"""Inception feature extraction on the CPU: memory format, batch size and threads.

The evaluate stage's FID spends most of its time in the standard Inception-v3 (every image is
resized to 299×299, ~5.7 GFLOP each). This times, in one process and interleaved, separate
extractors (``unmask.metrics.inception.build_extractor``: the cached ``extractor`` would
hand every variant the same module) in contiguous and channels-last layout, at batch sizes 50
and 200, each at 1 and 2 torch threads, and prints per image:

* CPU seconds (``time.process_time``: what the extraction costs whatever else runs on this
  shared machine; with 2 threads both threads' time) and wall seconds (wall ÷ CPU < 1 means
  the 2 threads ran in parallel);
* the largest feature difference to the contiguous, batch-50, 1-thread features (all variants
  must give the same features: FID compares them to the standard to 1e-4).

    .venv/bin/python benchmarks/inception_channels_last.py [N]   (default N = 100 images)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch


def main(n: int = 100) -> list[dict]:
    from unmask.metrics.images import UInt8Images
    from unmask.metrics.inception import (
        FEATURE_LAYER,
        build_extractor,
        cache_dir,
        extract,
        resolve_inception_weights,
    )

    dev = torch.device("cpu")
    weights = resolve_inception_weights(None, cache_dir())
    images = UInt8Images(np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8))
    plain = build_extractor(weights, [FEATURE_LAYER], dev).to(
        memory_format=torch.contiguous_format)
    cl = build_extractor(weights, [FEATURE_LAYER], dev)  # channels-last on the CPU
    variants = [(layout, fe, batch, threads) for threads in (1, 2) for batch in (50, 200)
                for layout, fe in (("contiguous", plain), ("channels_last", cl))]
    old = torch.get_num_threads()
    for _, fe, _, _ in variants[:2]:  # warm-up both layouts (oneDNN primitive caches)
        extract(fe, UInt8Images(images.images[:4]), 4, dev, False, "warm-up")
    rows, ref = [], None
    try:
        for layout, fe, batch, threads in variants:
            torch.set_num_threads(threads)
            c0, t0 = time.process_time(), time.perf_counter()
            feats = extract(fe, images, batch, dev, False, layout)[FEATURE_LAYER]
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            ref = feats if ref is None else ref
            rows.append(dict(layout=layout, batch=batch, threads=threads, cpu_s=cpu / n,
                             wall_s=wall / n, max_diff=float((feats - ref).abs().max())))
    finally:
        torch.set_num_threads(old)
    print(f"Inception-v3 on {n} images 28x28 -> 299x299, per image:")
    base = rows[0]["cpu_s"]
    for r in rows:
        print(f"  {r['layout']:14s} batch {r['batch']:3d} threads {r['threads']}: CPU "
              f"{r['cpu_s']:.3f} s ({base / r['cpu_s']:.2f}x less than contiguous/50/1), wall "
              f"{r['wall_s']:.3f} s (wall/CPU {r['wall_s'] / r['cpu_s']:.2f}); max |feature "
              f"diff| {r['max_diff']:.1e}")
    return rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
