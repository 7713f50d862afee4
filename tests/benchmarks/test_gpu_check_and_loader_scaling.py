"""Smoke checks (no timing asserted) of ``benchmarks/gpu_check.py --cpu`` — the script a lent
GPU runs, exercised on the CPU so it does not rot — and of ``benchmarks/loader_scaling.py``
on a small shard; plus the report's sampler-overhead table."""

import pytest
import torch

from unmask.models import ModelConfig
from unmask.reporting.benchmarks import log_benchmarks
from unmask.reporting.build import build_report
from unmask.training.flops import PEAK_FLOPS, training_flops_per_token


@pytest.mark.slow
def test_gpu_check_runs_on_cpu(bench_module, tmp_path, capsys):
    gc = bench_module("gpu_check")
    threads = torch.get_num_threads()
    try:
        out = gc.main(["--cpu", "--steps", "3", "--batch", "4", "--no-compile",
                       "--sample-batch", "4", "--sample-steps", "3", "--loader-rows", "1000",
                       "--out", str(tmp_path / "gpu.json")])
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert out["sdpa_kernels"], "the profiler found no scaled_dot_product_attention kernel"
    assert out["flash_sdpa"] == "n/a on the CPU"
    (eager,) = out["train"]
    assert eager["tokens_per_s"] > 0 and eager["mfu"] is None and not eager["compile"]
    s = out["sampling"]
    assert 0 < s["network_s"] <= s["total_s"] and s["images_per_s"] > 0
    assert out["loader"]["memmap_ratio"] > 0 and out["loader"]["in_memory_ratio"] > 0
    assert "MFU unavailable" in text and "flash SDPA in use" in text
    assert (tmp_path / "gpu.json").is_file()


def test_loader_scaling_small_shard(bench_module, tmp_path):
    ls = bench_module("loader_scaling")
    out = ls.main(["--rows", "3000", "--batches", "3", "--batch", "64", "--chunk", "1000",
                   "--dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []  # the shard is deleted
    assert out["bytes"] >= 3000 * 256 * 2 + 3000 * 8  # uint16 tokens + int64 labels
    assert out["write_rows_s"] > 0 and out["warm_rows_s"] > 0 and out["cold_rows_s"] > 0
    assert {(r["model_L"], r["mfu"]) for r in out["table"]} == {
        (256, 0.45), (256, 1.0), (1024, 0.45), (1024, 1.0)}
    for r in out["table"]:
        # consumption from the FLOP count, recomputed here: tokens/s = MFU·peak / FLOPs/token
        side = 16 if r["model_L"] == 256 else 32
        cfg = ModelConfig(preset="di-546m", grid=(side, side))
        tok_s = r["mfu"] * PEAK_FLOPS["H100"]["bf16"] / training_flops_per_token(cfg)
        assert r["consumed_tokens_s"] == pytest.approx(tok_s)
        assert r["consumed_rows_s"] == pytest.approx(tok_s / side**2)
        assert r["ratio"] == pytest.approx(r["rows_s"] * 256 / tok_s)


def test_report_shows_the_sampler_overhead_table(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    machine = {"cpu": "Test CPU", "cores": 2, "load_avg_1m": 1.0, "torch": "2.x",
               "python": "3.11", "gpu": None, "date_utc": "2026-12-03 12:00"}
    row = dict(table="sampler_overhead", model="default", mode="implicit", method="maskgit",
               cfg_scale=2.0, batch=64, L=49, V=256, steps=32, calls=32, rows_evaluated=4096,
               nfe=64, total_s=75.409, network_s=73.628, ratio=1.0242, goal=1.05)
    log_benchmarks(uri, [["sampler overhead", "1.024", "<= 1.05", "ok"]], [row], machine,
                   quick=False)
    html = build_report(uri, tmp_path / "out").read_text()
    sec = html[html.index("performance-sampler_overhead"):]
    sec = sec[:sec.find("<h3")] if "<h3" in sec else sec
    for value in ("maskgit", "4096", "75.41", "73.63", "1.024", "network calls"):
        assert value in sec, value
