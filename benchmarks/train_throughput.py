"""Training throughput: our training step vs a bare PyTorch loop, and the shard loader.

1. Tokens/s of :func:`unmask.training.train` (keyed noise, label dropout, masked CE, grad
   clipping, AdamW, lr schedule, EMA, loss checks) vs a bare loop with the same model, batch,
   optimizer (AdamW, same parameter groups, fused on CUDA), clipping and objective (t ~ U,
   mask w.p. 1 − t, masked CE). Runs interleaved (ours, bare, bare, ours, …), after one
   warm-up run; every step is timed (ours: the loop's own per-step ``tokens_per_s`` with
   ``log_every=1``) and the first third of each run's steps dropped; tokens/s = tokens per
   step / the median step time over all runs (a step slowed by another job on this shared
   machine moves a median, not a mean): ratio ours / bare (goal ≥ 0.95, i.e. the framework
   adds ≤ 5 %).
2. Loader: rows/s of random batches read from memory-mapped shards
   (:class:`unmask.data.shards.TokenShards`) and of the loop's in-memory batcher, vs the rows/s
   the training step consumes (goal ≥ 5×).
3. GPU (bf16 autocast, fused AdamW, SDPA, optional ``torch.compile``): tokens/s and MFU
   (:mod:`unmask.training.flops`) at ``--gpu-preset``, or "GPU: not available on this machine".

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--preset tiny] [--batch 32]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unmask.data.shards import ShardWriter, TokenShards
from unmask.models import ModelConfig, Transformer
from unmask.training import BatchOrder, TrainConfig, train
from unmask.training.flops import mfu, peak_flops, training_flops_per_token
from unmask.training.loop import _StepBatches

GOAL_STEP, GOAL_LOADER = 0.95, 5.0


class _Windows:
    """A tracker keeping the logged tokens/s windows."""

    def __init__(self) -> None:
        self.tok_s: list[float] = []

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.tok_s.append(metrics["tokens_per_s"])


def ours(model, tokens, labels, cfg: TrainConfig) -> list[float]:
    """Seconds of each of train()'s steps after the first third (``cfg.log_every`` = 1)."""
    win = _Windows()
    with tempfile.TemporaryDirectory() as tmp:
        train(model, tokens, labels, cfg, tmp, tracker=win, resume=False, progress=False)
    per_step = cfg.batch_size * model.cfg.length
    return [per_step / r for r in win.tok_s[cfg.steps // 3:]]


def bare(model, tokens, labels, cfg: TrainConfig, device) -> list[float]:
    """Seconds of each step of a plain loop doing the same work, after the first third."""
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda")
    order = BatchOrder(tokens.shape[0], cfg.batch_size, cfg.seed)
    V, n_classes = model.cfg.vocab_size, model.cfg.num_classes
    g = torch.Generator(device).manual_seed(cfg.seed)
    warm = cfg.steps // 3
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        idx = order(step)
        x0, y = tokens[idx].to(device).long(), labels[idx].to(device)
        t = torch.rand(x0.shape[0], device=device, generator=g)
        masked = torch.rand(x0.shape, device=device, generator=g) >= t[:, None]
        y = torch.where(torch.rand(y.shape, device=device, generator=g) < 0.1,
                        torch.full_like(y, n_classes), y)
        with autocast:
            logits = model(torch.where(masked, V, x0), t, y)
        loss = F.cross_entropy(logits[masked].float(), x0[masked], reduction="sum") / x0.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[warm:]


def make_model(preset: str, vocab: int, seq_len: int) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(preset=preset, vocab_size=vocab, seq_len=seq_len,
                                   num_classes=10, cond_dropout=0.1))


def step_vs_bare(args, device) -> dict:
    model0 = make_model(args.preset, args.vocab, args.seq_len)
    g = torch.Generator().manual_seed(0)
    n = max(args.batch * args.steps, 1024)
    tokens = torch.randint(0, args.vocab, (n, args.seq_len), generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, log_every=1,
                      ckpt_every=10 * args.steps, warmup_steps=5, device=device.type,
                      precision="auto")
    res: dict[str, list[float]] = {"ours": [], "bare": []}
    bare(copy.deepcopy(model0), tokens, labels, cfg, device)  # warm-up (lazy imports, allocator)
    for r in range(args.repeats):  # interleaved, the order alternating
        for who in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
            m = copy.deepcopy(model0)
            res[who] += (ours(m, tokens, labels, cfg) if who == "ours"
                         else bare(m, tokens, labels, cfg, device))
    per_step = args.batch * args.seq_len
    o, b = per_step / statistics.median(res["ours"]), per_step / statistics.median(res["bare"])
    return dict(model=model0, ours=o, bare=b, ratio=o / b, steps_timed=len(res["ours"]),
                params=sum(p.numel() for p in model0.parameters()))


def framework_extras_ms(model, cfg: TrainConfig, repeats: int = 20) -> dict[str, float]:
    """Per-step cost of what our step does beyond the bare loop, timed in isolation (a
    low-noise cross-check of the end-to-end ratio on a busy machine)."""
    from unmask import schedules
    from unmask.training import EMA
    from unmask.training.noise import objective_noise

    sch = schedules.get(cfg.schedule)
    index = torch.arange(cfg.batch_size)
    ema = EMA(model, cfg.ema_decay)
    parts = {
        "keyed noise": lambda: objective_noise(
            seed=0, step=3, index=index, global_batch=cfg.batch_size, length=model.cfg.length,
            schedule=sch, t_min=cfg.t_min, t_max=cfg.t_max, stratified=cfg.stratified,
            masking=cfg.masking, keep_ratio=cfg.keep_ratio, cond_dropout=0.1,
            device=torch.device("cpu")),
        "EMA update": lambda: ema.update(model),
    }
    out = {}
    for name, fn in parts.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        out[name] = 1e3 * (time.perf_counter() - t0) / repeats
    return out


def loader(args, consumed_rows_s: float) -> dict:
    """Rows/s of random batches from memmap shards and of the loop's in-memory batcher."""
    n = args.loader_rows
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard"
        g = np.random.default_rng(0)
        with ShardWriter(path, count=n, shape=(args.seq_len,), vocab_size=args.vocab,
                         labels=True) as w:
            for s in range(0, n, 4096):
                m = min(4096, n - s)
                w.write(g.integers(0, args.vocab, (m, args.seq_len)), g.integers(0, 10, m))
        shards = TokenShards(path)
        order = BatchOrder(n, args.batch, 0)
        batches = 200
        t0 = time.perf_counter()
        for step in range(batches):
            idx = order(step).sort().values.numpy()
            shards.tokens_tensor(idx), shards.labels_tensor(idx)
        memmap = batches * args.batch / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        tokens, labels = shards.training_set()
        load_s = time.perf_counter() - t0
        ds = _StepBatches(tokens, labels, order)
        t0 = time.perf_counter()
        for step in range(batches):
            ds[step]
        in_memory = batches * args.batch / (time.perf_counter() - t0)
        del shards
    return dict(memmap_rows_s=memmap, in_memory_rows_s=in_memory, load_s=load_s,
                consumed_rows_s=consumed_rows_s, memmap_ratio=memmap / consumed_rows_s,
                in_memory_ratio=in_memory / consumed_rows_s)


def gpu(args) -> dict | None:
    """bf16 tokens/s and MFU at ``--gpu-preset`` on the GPU; ``--gpu-on-cpu`` runs the same
    code on the CPU in fp32 (a smoke check of this path where no GPU is lent; no MFU)."""
    if not torch.cuda.is_available() and not args.gpu_on_cpu:
        print("GPU: not available on this machine (no bf16 / fused AdamW / flash SDPA / MFU "
              "numbers measured)")
        return None
    # --gpu-on-cpu means the CPU even where a GPU exists: the smoke check is then the same on
    # every machine (and never reports an MFU, the CPU having no peak in PEAK_FLOPS).
    dev = torch.device("cpu" if args.gpu_on_cpu else "cuda")
    model = make_model(args.gpu_preset, args.vocab, args.seq_len) if args.gpu_preset in (
        "tiny", "small") else Transformer(ModelConfig(preset=args.gpu_preset))
    cfg = TrainConfig(steps=args.gpu_steps, batch_size=args.gpu_batch,
                      log_every=1, ckpt_every=10 * args.gpu_steps,
                      device=dev.type, precision="bf16" if dev.type == "cuda" else "fp32",
                      compile=args.compile)
    g = torch.Generator().manual_seed(0)
    L, V = model.cfg.length, model.cfg.vocab_size
    n = args.gpu_batch * 4
    tokens = torch.randint(0, V, (n, *model.cfg.shape) if hasattr(model.cfg, "shape")
                           else (n, L), generator=g)
    labels = torch.randint(0, max(model.cfg.num_classes, 1), (n,), generator=g)
    step_s = ours(model, tokens, labels if model.cfg.num_classes else None, cfg)
    tok_s = args.gpu_batch * L / statistics.median(step_s)
    peak = peak_flops(dev, "bf16")
    util = mfu(tok_s, model.cfg, peak) if peak else None
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (--gpu-on-cpu)"
    print(f"GPU {name}: preset {args.gpu_preset}, batch {args.gpu_batch}, "
          f"{cfg.precision}, compile={args.compile}: {tok_s:,.0f} tokens/s, "
          f"{training_flops_per_token(model.cfg) * tok_s / 1e12:.1f} TFLOP/s, MFU "
          + (f"{100 * util:.1f}% (goal >= 45% on an H100 at di-546m)" if util is not None
             else "unavailable (unknown peak FLOP/s for this GPU)"))
    return dict(device=name, tokens_per_s=tok_s, mfu=util)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loader-rows", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gpu-preset", default="di-546m")
    ap.add_argument("--gpu-batch", type=int, default=32)
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--gpu-on-cpu", action="store_true",
                    help="run the GPU measurement on the CPU, even where a GPU exists (smoke "
                         "check)")
    ap.add_argument("--quick", action="store_true", help="fewer steps and repetitions")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.loader_rows = 15, 3, 20_000
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    r = step_vs_bare(args, device)
    L = args.seq_len
    print(f"training step: preset {args.preset} ({r['params'] / 1e6:.2f}M params), B={args.batch} "
          f"L={L} V={args.vocab}, {torch.get_num_threads()} thread(s) on cpu, median of "
          f"{args.repeats} interleaved runs of {args.steps} steps ({r['steps_timed']} timed "
          "steps each side, median step time)")
    ok = "ok" if r["ratio"] >= GOAL_STEP else "BELOW GOAL"
    print(f"  ours {r['ours']:,.0f} tok/s  bare {r['bare']:,.0f} tok/s  ratio ours/bare "
          f"{r['ratio']:.3f}  (goal >= {GOAL_STEP}: {ok})")
    extras = framework_extras_ms(r["model"], TrainConfig(batch_size=args.batch))
    step_ms = 1e3 * args.batch * L / r["bare"]
    print("  framework extras per step, timed alone: "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in extras.items())
          + f" = {100 * sum(extras.values()) / step_ms:.1f}% of the bare step ({step_ms:.0f} ms)")
    ld = loader(args, r["ours"] / L)
    for key, name in (("memmap", "memmap shard random batches"),
                      ("in_memory", "loop's in-memory batcher")):
        ratio = ld[f"{key}_ratio"]
        ok = "ok" if ratio >= GOAL_LOADER else "BELOW GOAL"
        print(f"  loader: {name:28s} {ld[f'{key}_rows_s']:,.0f} rows/s vs step "
              f"{ld['consumed_rows_s']:,.0f} rows/s: {ratio:,.1f}x  (goal >= {GOAL_LOADER}x: "
              f"{ok})")
    print(f"  loader: loading {args.loader_rows} rows from the shard into memory: "
          f"{ld['load_s'] * 1e3:.1f} ms")
    out = dict(ours_tok_s=r["ours"], bare_tok_s=r["bare"], ratio=r["ratio"], goal=GOAL_STEP,
               preset=args.preset, params=r["params"], batch=args.batch, seq_len=L,
               extras_ms=extras, bare_step_ms=step_ms,
               loader={k: v for k, v in ld.items()}, loader_goal=GOAL_LOADER)
    out["gpu"] = gpu(args)
    return out


if __name__ == "__main__":
    main()
