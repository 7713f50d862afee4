"""GPU readiness check: one script, < 5 min on an H100/H200, for the day a GPU is lent.

Prints, at the ``di-546m`` preset (DI's ImageNet-256 model: dim 1024, depth 27, 16 heads,
32×32 SD-VQ-F8 tokens, V = 16384, 1000 classes; 548 M parameters):

1. the device, torch / CUDA versions and the bf16 peak used for MFU
   (:data:`unmask.training.flops.PEAK_FLOPS`);
2. which scaled-dot-product-attention kernel the model's forward + backward runs under bf16
   autocast (the ``aten::_scaled_dot_product_*`` ops recorded by the profiler: ``flash``,
   ``efficient`` (memory-efficient), ``cudnn`` or ``math``) — "flash SDPA in use: yes/no";
3. training tokens/s and MFU of :func:`unmask.training.train` in bf16 (fused AdamW, SDPA),
   eager and with ``torch.compile`` (``train.compile``), and compiled / eager;
4. sampler throughput on the device: ``mdm`` with CFG (ETM model, bf16 autocast forward),
   images/s and tokens/s, and the sampler overhead ratio (sample time ÷ Σ network forward
   time, :mod:`sampler_overhead`; goal ≤ 1.05);
5. the token loader (memory-mapped shard, random batches at this L and V) in rows/s against
   the rows/s the training step consumes (goal ≥ 5×).

``--cpu`` runs the same code on the CPU with the ``tiny`` preset on a 7×7 grid (fp32, no MFU:
a CPU has no entry in ``PEAK_FLOPS``); the test suite runs it that way so the script does not
rot before a GPU is lent. Results also go to ``--out`` (JSON) when given.

    .venv/bin/python benchmarks/gpu_check.py [--batch 32] [--steps 20] [--no-compile]
    .venv/bin/python benchmarks/gpu_check.py --cpu --steps 4 --batch 4    # smoke check
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sampler_overhead import TimedNetwork, measure  # noqa: E402
from train_throughput import loader, ours  # noqa: E402

from unmask.models import ModelConfig, Transformer  # noqa: E402
from unmask.training import TrainConfig  # noqa: E402
from unmask.training.flops import mfu, peak_flops, training_flops_per_token  # noqa: E402

GOAL_MFU, GOAL_LOADER, GOAL_SAMPLER = 0.45, 5.0, 1.05
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_backward": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU kernel)",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": "flash (CPU kernel)",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_efficient_attention_backward": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_cudnn_attention_backward": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
}


def model_config(args: argparse.Namespace) -> ModelConfig:
    if args.cpu:
        return ModelConfig(preset="tiny", vocab_size=512, grid=(7, 7), num_classes=10,
                           pos="learned2d", cond_dropout=0.1)
    return ModelConfig(preset=args.preset, cond_dropout=0.1)


def new_model(cfg: ModelConfig, device: torch.device) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(cfg)
    for p in model.parameters():  # break the adaLN-Zero init: realistic activations
        torch.nn.init.normal_(p, std=0.02)
    return model.to(device)


def sdpa_kernels(model: Transformer, device: torch.device, batch: int) -> list[str]:
    """The SDPA kernels one bf16 forward + backward of ``model`` runs (profiler op names)."""
    L, V = model.cfg.length, model.cfg.vocab_size
    x = torch.randint(0, V, (batch, L), device=device)
    t = torch.rand(batch, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    model.train()
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with amp:
            out = model(x, t, y)
        out.float().mean().backward()
    model.zero_grad(set_to_none=True)
    names = {e.name for e in prof.events()}
    return sorted({SDPA_OPS[n] for n in names if n in SDPA_OPS})


def training(model: Transformer, args: argparse.Namespace, device: torch.device,
             compile: bool) -> dict:
    """Tokens/s (median step) and MFU of train() for ``args.steps`` steps."""
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, log_every=1,
                      ckpt_every=10 * args.steps, warmup_steps=2, device=device.type,
                      precision="bf16" if device.type == "cuda" else "fp32", compile=compile)
    g = torch.Generator().manual_seed(0)
    n = args.batch * 4
    tokens = torch.randint(0, model.cfg.vocab_size, (n, model.cfg.length), generator=g)
    labels = torch.randint(0, model.cfg.num_classes, (n,), generator=g)
    t0 = time.perf_counter()
    step_s = ours(model, tokens, labels, cfg)
    wall = time.perf_counter() - t0
    tok_s = args.batch * model.cfg.length / statistics.median(step_s)
    peak = peak_flops(device, "bf16")
    util = mfu(tok_s, model.cfg, peak) if peak else None
    return dict(compile=compile, tokens_per_s=tok_s, rows_per_s=tok_s / model.cfg.length,
                tflops=training_flops_per_token(model.cfg) * tok_s / 1e12, mfu=util,
                wall_s=wall, precision=cfg.precision)


class _Bf16Network(torch.nn.Module):
    """The model's forward under bf16 autocast on CUDA, logits returned in float32."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model
        self.time_conditioned, self.null_class = model.time_conditioned, model.null_class

    def forward(self, x, t, y):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.is_cuda):
            return self.model(x, t, y).float()


def sampling(model: Transformer, args: argparse.Namespace, device: torch.device) -> dict:
    """Images/s of mdm + CFG, and the sampler overhead ratio, on the device."""
    model.eval()
    net = TimedNetwork(_Bf16Network(model))
    kw = dict(batch=args.sample_batch, L=model.cfg.length, V=model.cfg.vocab_size,
              steps=args.sample_steps, method="mdm", cfg_scale=2.0, device=device.type)
    measure(net, **{**kw, "steps": 2})  # warm-up (kernels, allocator)
    m = measure(net, **kw)
    return dict(method="mdm", cfg_scale=2.0, steps=args.sample_steps, batch=args.sample_batch,
                images_per_s=args.sample_batch / m.total_s,
                tokens_per_s=args.sample_batch * model.cfg.length / m.total_s,
                total_s=m.total_s, network_s=m.network_s, overhead=m.ratio)


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cpu" if args.cpu else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (run with --cpu for the CPU smoke check)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (--cpu)"
    peak = peak_flops(device, "bf16")
    cfg = model_config(args)
    print(f"gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 peak "
          + (f"{peak / 1e12:.1f} TFLOP/s" if peak else "unknown (no MFU)"))
    model = new_model(cfg, device)
    params = sum(p.numel() for p in model.parameters())
    print(f"  model: {'tiny (7x7, V=512)' if args.cpu else args.preset}, {params / 1e6:.1f}M "
          f"parameters, L={cfg.length}, V={cfg.vocab_size}; training FLOPs/token "
          f"{training_flops_per_token(cfg) / 1e9:.2f} G")
    out: dict = dict(device=name, torch=torch.__version__, cuda=torch.version.cuda,
                     peak_bf16=peak, preset="tiny" if args.cpu else args.preset, params=params)

    t0 = time.perf_counter()
    kernels = sdpa_kernels(model, device, min(args.batch, 4))
    out["sdpa_kernels"] = kernels
    flash = ("n/a on the CPU" if device.type == "cpu"
             else "yes" if "flash" in kernels else "NO")
    out["flash_sdpa"] = flash
    print(f"  SDPA kernels in forward + backward: {', '.join(kernels) or 'none found'}; flash "
          f"SDPA in use: {flash} ({time.perf_counter() - t0:.1f} s)")

    runs = [training(model, args, device, compile=False)]
    if not args.no_compile:
        runs.append(training(model, args, device, compile=True))
    for r in runs:
        util = (f"MFU {100 * r['mfu']:.1f}% (goal >= {100 * GOAL_MFU:.0f}%)"
                if r["mfu"] is not None else "MFU unavailable (no peak FLOP/s for this device)")
        print(f"  train {'compiled' if r['compile'] else 'eager   '} {r['precision']}, batch "
              f"{args.batch}: {r['tokens_per_s']:,.0f} tokens/s, {r['tflops']:.1f} TFLOP/s, "
              f"{util}  ({r['wall_s']:.0f} s incl. setup"
              f"{' + compilation' if r['compile'] else ''})")
    if len(runs) == 2:
        speedup = runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"]
        out["compiled_over_eager"] = speedup
        print(f"  compiled / eager tokens/s: {speedup:.2f}")
    out["train"] = runs

    s = sampling(model, args, device)
    out["sampling"] = s
    print(f"  sampling mdm, CFG 2, {s['steps']} steps, batch {s['batch']}: "
          f"{s['images_per_s']:.2f} images/s, {s['tokens_per_s']:,.0f} tokens/s; overhead "
          f"(total / network) {s['overhead']:.3f} (goal <= {GOAL_SAMPLER})")

    best = max(r["rows_per_s"] for r in runs)
    ld = loader(SimpleNamespace(loader_rows=args.loader_rows, seq_len=cfg.length,
                                vocab=cfg.vocab_size, batch=args.batch), best)
    out["loader"] = ld
    for key, label in (("memmap", "memmap shard, random batches"),
                       ("in_memory", "in-memory batcher")):
        ok = "ok" if ld[f"{key}_ratio"] >= GOAL_LOADER else "BELOW GOAL"
        print(f"  loader {label:30s} {ld[f'{key}_rows_s']:,.0f} rows/s vs training "
              f"{best:,.1f} rows/s: {ld[f'{key}_ratio']:,.1f}x (goal >= {GOAL_LOADER:g}x: {ok})")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="CPU smoke check (tiny preset, fp32)")
    ap.add_argument("--preset", default="di-546m")
    ap.add_argument("--batch", type=int, default=32, help="training batch (rows)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per run")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    ap.add_argument("--sample-batch", type=int, default=16)
    ap.add_argument("--sample-steps", type=int, default=32)
    ap.add_argument("--loader-rows", type=int, default=20_000)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    return ap


def main(argv: list[str] | None = None) -> dict:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()
