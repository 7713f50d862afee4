"""FID wall time with the offline standard Inception, and what the reference cache saves.

Scores N noisy Fashion-MNIST test images against N clean ones (28×28 grayscale → 299×299 inside
torch-fidelity's extractor) three ways, in one process, with a fresh cache directory:

1. cold: the reference goes through Inception and is cached (2N images extracted);
2. warm: the same call with the reference given by its cache key (N images extracted);
3. the Fréchet step alone on the resulting features — ours (exact nuclear-norm form when
   N < 2048) against torch-fidelity's ``fid_statistics_to_metric`` (non-symmetric 2048×2048
   ``eigvals``) — with the two FID values, which must agree.

Prints seconds and the ratios warm/cold and ours/torch-fidelity.

    .venv/bin/python benchmarks/fid_speed.py [--n 200] [--batch-size 50] [--device cpu]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST_T10K = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    from torch_fidelity.metric_fid import fid_statistics_to_metric

    from unmask.metrics.fidelity import cached_features, compute_fidelity
    from unmask.metrics.frechet import frechet_distance_from_features

    with gzip.open(FASHION_MNIST_T10K) as fh:
        images = np.frombuffer(fh.read()[16:], np.uint8).reshape(-1, 28, 28)
    n = args.n
    ref = images[:n]
    rng = np.random.default_rng(0)
    gen = np.clip(images[n : 2 * n] + rng.normal(0, 16, (n, 28, 28)), 0, 255).astype(np.uint8)
    print(f"torch threads: {torch.get_num_threads()}, N = {n} vs {n}, 28x28 grayscale")

    with tempfile.TemporaryDirectory() as cache:
        kw = dict(metrics=("fid",), cache_root=cache, batch_size=args.batch_size,
                  device=args.device, verbose=False)
        t = time.perf_counter()
        cold = compute_fidelity(gen, ref, reference_key="bench-ref", samples_key="bench-gen", **kw)
        t_cold = time.perf_counter() - t
        t = time.perf_counter()
        warm = compute_fidelity(gen, "bench-ref", **kw)
        t_warm = time.perf_counter() - t
        f_gen = cached_features("bench-gen", cache)["features"].double().numpy()
        f_ref = cached_features("bench-ref", cache)["features"].double().numpy()

    t = time.perf_counter()
    ours = frechet_distance_from_features(f_gen, f_ref)
    t_ours = time.perf_counter() - t
    stats = [
        {"mu": f.mean(0), "sigma": np.cov(f, rowvar=False)} for f in (f_gen, f_ref)
    ]
    t = time.perf_counter()
    theirs = fid_statistics_to_metric(stats[0], stats[1], False)["frechet_inception_distance"]
    t_theirs = time.perf_counter() - t

    rows = [
        (f"cold (extract {2 * n} images + FID)", f"{t_cold:9.1f} s",
         f"FID {cold['fid'].value:.4f}"),
        (f"warm (extract {n} images + FID)", f"{t_warm:9.1f} s", f"FID {warm['fid'].value:.4f}"),
        ("ratio warm / cold", f"{t_warm / t_cold:9.2f}", ""),
        ("Frechet step, ours", f"{t_ours:9.3f} s", f"FID {ours:.6f}"),
        ("Frechet step, torch-fidelity eigvals", f"{t_theirs:9.3f} s", f"FID {theirs:.6f}"),
        ("ratio ours / torch-fidelity", f"{t_ours / t_theirs:9.4f}", ""),
        ("relative FID difference", f"{abs(ours - theirs) / abs(theirs):9.2e}", ""),
    ]
    for label, value, extra in rows:
        print(f"{label:<40}{value:>12}   {extra}")

if __name__ == "__main__":
    main()
