"""Smoke check of ``benchmarks/train_throughput.py`` (no timing asserted): the step-vs-bare
comparison, the loader and the GPU measurement path (run on the CPU with ``--gpu-on-cpu``,
so the code a lent GPU would run is exercised here too)."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


def test_train_throughput_runs_every_part(capsys):
    spec = importlib.util.spec_from_file_location("train_throughput_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        out = mod.main(["--steps", "6", "--repeats", "1", "--loader-rows", "2000",
                        "--gpu-on-cpu", "--gpu-preset", "tiny", "--gpu-batch", "4",
                        "--gpu-steps", "3"])
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert out["ours_tok_s"] > 0 and out["bare_tok_s"] > 0 and out["ratio"] > 0
    assert out["loader"]["memmap_ratio"] > 0
    gpu = out["gpu"]
    assert gpu is not None and gpu["tokens_per_s"] > 0
    # --gpu-on-cpu runs on the CPU even on a CUDA machine, and a CPU has no peak FLOP/s in
    # PEAK_FLOPS: never a made-up MFU (holds on CPU-only and CUDA machines alike).
    assert gpu["device"] == "cpu (--gpu-on-cpu)"
    assert gpu["mfu"] is None
    assert "MFU unavailable" in text and "ratio ours/bare" in text
