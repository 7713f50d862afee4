"""``benchmarks/sampler_overhead.py``: the timed network must not change what the sampler does
(same samples, same rows), and it must count exactly the rows the sampler reports."""

import pytest
import torch

from unmask.models.denoiser import ConditionedDenoiser
from unmask.sampling import sample_with_info


@pytest.mark.parametrize("timestep", ["explicit", "implicit"])
@pytest.mark.parametrize("method", ["euler", "maskgit", "first_hitting"])
@pytest.mark.parametrize("cfg", [0.0, 2.0])
def test_timed_network_is_transparent(bench_module, timestep, method, cfg):
    so = bench_module("sampler_overhead")
    net, _, L, V, _ = so.build("default", timestep, "cpu")
    y = torch.arange(6) % 10
    runs = []
    for model in (net.model, net):  # bare network, then the timed wrapper
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            runs.append(sample_with_info(ConditionedDenoiser(model, y), batch_size=6,
                                         seq_len=L, mask_id=V, method=method, steps=8,
                                         generator=g, cfg_scale=cfg))
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert net.rows == runs[1].rows_evaluated == runs[0].rows_evaluated
    assert net.calls == runs[1].forward_calls


@pytest.mark.slow
def test_measure_and_table(bench_module, capsys):
    so = bench_module("sampler_overhead")
    threads = torch.get_num_threads()
    try:
        rows = so.main(["--quick", "--batch", "4", "--steps", "4"])
    finally:
        torch.set_num_threads(threads)
    # every method x ETM/ITM x with/without CFG, on the default model
    assert {(r["mode"], r["method"], r["cfg_scale"]) for r in rows} == {
        (m, k, c) for m in ("explicit", "implicit") for k in so.METHODS for c in (0.0, 2.0)}
    for r in rows:
        # the network runs inside the sample call: its time is a part of the total
        assert 0 < r["network_s"] <= r["total_s"] and r["ratio"] >= 1.0
        assert r["rows_evaluated"] >= r["calls"] > 0
    cfg_rows = {(r["mode"], r["method"]): r["rows_evaluated"] for r in rows if r["cfg_scale"]}
    for r in rows:  # CFG doubles the rows of every call (cond + uncond in one forward)
        if not r["cfg_scale"] and r["mode"] == "explicit":
            assert cfg_rows[(r["mode"], r["method"])] == 2 * r["rows_evaluated"]
    assert "worst:" in capsys.readouterr().out
