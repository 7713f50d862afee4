"""Token loader and pre-extraction at ImageNet size, by simulation, vs what di-546m consumes.

Writes a synthetic ImageNet-size shard (``--rows`` 1,281,167 rows of ``--seq-len`` 256 tokens,
V = 16384 → uint16 on disk, int64 labels; ~0.67 GB) with :class:`unmask.data.shards.ShardWriter`
— exactly the pre-extraction stage's writer, the tokenizer replaced by random ids (on a GPU the
tokenizer is the pre-extraction's cost; this measures what the shard side adds) — then reads
random training batches back with :class:`unmask.data.shards.TokenShards`:

1. pre-extraction: rows/s of ``ShardWriter.write`` (chunks of ``--chunk`` rows, each flushed and
   recorded for resume) and of ``finalize`` (sha256 of every file + manifest);
2. opening the shard with and without ``verify`` (the full-read hash check);
3. random batches (``--batch`` rows drawn uniformly, sorted, read through the memmap as the
   loader does) with the file in the page cache ("warm") and evicted from it with
   ``posix_fadvise(DONTNEED)`` before every batch ("cold": every row a disk read);

against the rows/s that ``di-546m`` (dim 1024, depth 27, V = 16384, 1000 classes) consumes
on one H100 at 45 % and 100 % MFU, from its training FLOPs per token
(:func:`unmask.training.flops.training_flops_per_token`, H100 bf16 dense peak 989.4 TFLOP/s):
rows/s = MFU · peak ÷ (FLOPs/token · L), for the same L as the shard (256 = a 16×16 grid) and
for the preset's 32×32 grid (L = 1024, four times the bytes per row: the ratio is given in
tokens/s there). The shard is deleted at the end (disk use < 2 GB).

    .venv/bin/python benchmarks/loader_scaling.py [--quick] [--rows 1281167] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from unmask.data.shards import ShardWriter, TokenShards
from unmask.models import ModelConfig
from unmask.training.flops import PEAK_FLOPS, training_flops_per_token

IMAGENET_ROWS = 1_281_167
GOAL = 5.0  # loader rows/s ≥ 5 × the GPU's consumption (the training benchmark's goal)


def evict(path: Path) -> None:
    """Drop a file's pages from the page cache (clean pages only: the file was flushed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def consumption(seq_len: int, mfu: float) -> dict[str, float]:
    """Tokens/s and rows/s di-546m trains at on one H100 at model FLOPs utilisation ``mfu``."""
    h, w = (16, 16) if seq_len == 256 else (32, 32)
    cfg = ModelConfig(preset="di-546m", grid=(h, w))
    tok_s = mfu * PEAK_FLOPS["H100"]["bf16"] / training_flops_per_token(cfg)
    return {"tokens_s": tok_s, "rows_s": tok_s / (h * w), "L": h * w}


def random_batches(shards: TokenShards, batch: int, n: int, rng: np.random.Generator,
                   cold: bool) -> float:
    """Rows/s of ``n`` random batches read as the loader reads them (tokens + labels)."""
    files = [shards.path / "tokens.npy", shards.path / "labels.npy"]
    total = 0.0
    for _ in range(n):
        if cold:
            for f in files:
                evict(f)
        idx = np.sort(rng.choice(len(shards), batch, replace=False))
        t0 = time.perf_counter()
        shards.tokens_tensor(idx), shards.labels_tensor(idx)
        total += time.perf_counter() - t0
    return n * batch / total


def run(args: argparse.Namespace) -> dict:
    n, L, V = args.rows, args.seq_len, args.vocab
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="unmask-loader-scaling-", dir=args.dir))
    try:
        path = root / "train"
        write_s = 0.0
        with ShardWriter(path, count=n, shape=(L,), vocab_size=V, labels=True) as w:
            for s in range(0, n, args.chunk):
                m = min(args.chunk, n - s)
                tok = rng.integers(0, V, (m, L), dtype=np.uint16)  # not timed: the "tokenizer"
                lab = rng.integers(0, 1000, m)
                t0 = time.perf_counter()
                w.write(tok, lab)
                write_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            w.finalize()
            finalize_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.iterdir())
        t0 = time.perf_counter()
        TokenShards(path, verify=True)
        open_verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        shards = TokenShards(path, verify=False)
        open_s = time.perf_counter() - t0
        warm = random_batches(shards, args.batch, args.batches, rng, cold=False)
        cold = random_batches(shards, args.batch, args.batches, rng, cold=True)
        del shards
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"loader scaling: {n:,} rows x {L} tokens (V={V}, uint16) + int64 labels = "
          f"{size / 1e9:.2f} GB on disk ({args.dir or tempfile.gettempdir()}), batch "
          f"{args.batch}, {args.batches} random batches each")
    print(f"  pre-extraction: ShardWriter.write {n / write_s:,.0f} rows/s "
          f"({write_s:.1f} s for {n:,} rows, chunks of {args.chunk}); finalize (sha256 + "
          f"manifest) {finalize_s:.1f} s = {n / finalize_s:,.0f} rows/s")
    print(f"  open: verify=True (full-read hash) {open_verify_s:.1f} s, verify=False "
          f"{1e3 * open_s:.1f} ms")
    out = dict(rows=n, seq_len=L, vocab=V, bytes=size, batch=args.batch,
               write_rows_s=n / write_s, finalize_s=finalize_s, open_verify_s=open_verify_s,
               open_s=open_s, warm_rows_s=warm, cold_rows_s=cold, goal=GOAL, table=[])
    print(f"  {'reader':32s} {'rows/s':>10s} {'tokens/s':>12s} | di-546m on one H100 "
          f"(by FLOPs): {'need rows/s':>11s} {'ratio':>9s}")
    for L_model in (L, 1024) if L == 256 else (L,):
        for util in (0.45, 1.0):
            c = consumption(L_model, util)
            for name, rate in (("memmap, page cache warm", warm),
                               ("memmap, cold (fadvise DONTNEED)", cold)):
                tok_rate = rate * L
                ratio = tok_rate / c["tokens_s"]
                ok = "ok" if ratio >= GOAL else "BELOW GOAL"
                print(f"  {name:32s} {rate:10,.0f} {tok_rate:12,.0f} | L={c['L']:4d} MFU "
                      f"{100 * util:3.0f}%: {c['rows_s']:8,.0f} rows/s {ratio:8,.1f}x "
                      f"(goal >= {GOAL:g}x: {ok})")
                out["table"].append(dict(reader=name, rows_s=rate, tokens_s=tok_rate,
                                         model_L=c["L"], mfu=util,
                                         consumed_rows_s=c["rows_s"],
                                         consumed_tokens_s=c["tokens_s"], ratio=ratio))
    print("  (ratio = tokens/s read / tokens/s trained; the L=1024 rows compare at equal "
          "tokens: a 1024-token row is 4x the bytes of a 256-token row)")
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=IMAGENET_ROWS)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--dir", default=None, help="where the shard is written (then deleted)")
    ap.add_argument("--quick", action="store_true", help="128k rows, 30 batches")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.quick:
        args.rows, args.batches = min(args.rows, 128_000), 30
    return run(args)


if __name__ == "__main__":
    main()
