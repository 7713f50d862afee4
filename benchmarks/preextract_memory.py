"""Pre-extraction throughput and peak memory at two dataset sizes (memory should stay flat).

Writes a synthetic dataset in the real ImageNet layout (``train/<wnid>/*.JPEG``, random 80×64
JPEGs), then, for each size, runs a fresh child process that streams it through the ImageNet
loader (ADM center crop), a tokenizer (a randomly initialised VQ-VAE: the compute of a real
one, no weights needed) and :func:`unmask.data.preextract.preextract` (what the pipelines'
tokenize stages run: :class:`~unmask.data.shards.ShardWriter`, batch by batch; ``--flip`` also
pre-extracts the flipped images). Each child
reports images/s and its peak resident memory (``ru_maxrss``); the ratio of the two peaks is
printed last (≈ 1 when memory does not grow with the dataset).

    .venv/bin/python benchmarks/preextract_memory.py [--sizes 1000 4000] [--image-size 32] [--flip]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_dataset(root: Path, n: int, classes: int = 10) -> None:
    """n random JPEGs in train/<wnid>/ (skips files that already exist)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        wnid = f"n{i % classes:08d}"
        path = root / "train" / wnid / f"{wnid}_{i}.JPEG"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(path, quality=90)


def child(
    data: Path, out: Path, n: int, image_size: int, batch: int, flip: bool
) -> dict[str, float]:
    """Pre-extract the first n images; returns throughput and peak RSS (MiB)."""
    import torch

    from unmask.data.imagenet import ImageNet
    from unmask.data.preextract import preextract
    from unmask.tokenizers.vq import VQVAE, VQConfig, VQTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = ImageNet(data, "train", image_size=image_size)
    ds.samples = ds.samples[:n]
    tok = VQTokenizer(VQVAE(VQConfig(in_channels=3, hidden=32, latent_dim=16, num_res=1)))
    t0 = time.perf_counter()
    res = preextract(
        ds,
        tok,
        out / f"shard_{n}",
        count=n,
        image_shape=(image_size, image_size, 3),
        label=lambda item, row: int(item["label"]),
        flip=flip,
        batch_size=batch,
        progress=False,
    )
    assert res["count"] == n - ds.num_skipped
    dt = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "seconds": dt,
        "images_per_s": n / dt,
        "peak_rss_mib": peak_mib,
        "skipped": ds.num_skipped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--data", type=Path, help="reuse/extend this dataset folder")
    ap.add_argument("--flip", action="store_true", help="also pre-extract flipped images")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        res = child(args.data, args.out, args.child, args.image_size, args.batch, args.flip)
        print(json.dumps(res))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "imagenet"
        t0 = time.perf_counter()
        make_dataset(data, max(args.sizes))
        print(f"dataset: {max(args.sizes)} JPEGs at {data} ({time.perf_counter() - t0:.1f}s)")
        rows = []
        for n in args.sizes:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--data",
                str(data),
                "--out",
                tmp,
                "--image-size",
                str(args.image_size),
                "--batch",
                str(args.batch),
                *(["--flip"] if args.flip else []),
            ]
            res = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(f"{'images':>8} {'seconds':>8} {'images/s':>9} {'peak RSS MiB':>13} {'skipped':>8}")
    for r in rows:
        print(
            f"{r['n']:>8} {r['seconds']:>8.1f} {r['images_per_s']:>9.1f} "
            f"{r['peak_rss_mib']:>13.1f} {r['skipped']:>8}"
        )
    ratio = rows[1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    size_ratio = rows[1]["n"] / rows[0]["n"]
    print(
        f"peak memory ratio {ratio:.3f} for a {size_ratio:.1f}x larger dataset "
        f"({'flat' if ratio < 1.1 else 'GROWS'})"
    )


if __name__ == "__main__":
    main()
