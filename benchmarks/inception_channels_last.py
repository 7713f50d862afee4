"""Inception feature extraction on the CPU: contiguous vs channels-last weights.

Prints seconds per image of each and their ratio, and the largest feature difference (the two
must give the same features). ``python benchmarks/inception_channels_last.py [N]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch


def main(n: int = 64) -> None:
    from unmask.metrics.fidelity import FEATURE_LAYER, UInt8Images, _extract, _make_extractor
    from unmask.metrics.inception import cache_dir, resolve_inception_weights

    dev = torch.device("cpu")
    weights = resolve_inception_weights(None, cache_dir())
    images = UInt8Images(np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8))
    # nn.Module.to(memory_format=...) works in place: two separate extractors
    plain = _make_extractor(weights, [FEATURE_LAYER], dev).to(memory_format=torch.contiguous_format)
    cl = _make_extractor(weights, [FEATURE_LAYER], dev)  # channels-last on the CPU
    timings, feats = {}, {}
    for name, fe in (("contiguous", plain), ("channels_last", cl)):
        _extract(fe, UInt8Images(images.images[:8]), 8, dev, False, "warm-up")
        t = time.perf_counter()
        feats[name] = _extract(fe, images, 32, dev, False, name)[FEATURE_LAYER]
        timings[name] = (time.perf_counter() - t) / n
    diff = float((feats["contiguous"] - feats["channels_last"]).abs().max())
    print(f"threads {torch.get_num_threads()}, {n} images 28x28 -> 299x299")
    for k, v in timings.items():
        print(f"  {k:14s} {v:.3f} s/image")
    ratio = timings["contiguous"] / timings["channels_last"]
    print(f"  ratio contiguous/channels_last: {ratio:.2f}")
    print(f"  max |feature difference|: {diff:.2e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
