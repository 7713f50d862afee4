"""``benchmarks/peers.py``'s interleaving and ``benchmarks/run_all.py``'s summary: the order
alternates, both sides are warmed alike, and every verdict uses the threshold its row prints."""

import re


def test_interleaved_alternates_and_warms_both(bench_module):
    peers = bench_module("peers")
    calls: list[str] = []
    out = peers.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 4)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert set(out) == {"a", "b"} and all(v >= 0 for v in out.values())


def _agreement(two: float, band2: float) -> dict:
    return dict(name="agreement", band=0.03, band_two_sample=band2, euler_tv_ours=0.02,
                euler_tv_peer=0.025, maskgit_two_sample_tv=two, maskgit_noise_tv=0.03)


def _row(rows, start):
    (row,) = [r for r in rows if r[0].startswith(start)]
    return row


def test_maskgit_threshold_is_the_printed_band(bench_module):
    run_all = bench_module("run_all")
    for two, verdict in ((0.0399, "ok"), (0.0401, "MISSED")):
        rows = run_all.summarize({"peers": [_agreement(two, 0.0400)]})
        what, measured, goal, ok = _row(rows, "peers: maskgit two-sample TV")
        assert measured == f"{two:.4f}" and ok == verdict
        assert float(re.search(r"band (\d\.\d+)", goal).group(1)) == 0.04


def test_cache_row_and_sampler_overhead_rows(bench_module):
    run_all = bench_module("run_all")
    cache = dict(name="ITM cache speed-up, euler (steps=1024)", cached_s=1.0, uncached_s=2.0,
                 speedup=2.0, ideal=2.5, speedup_over_ideal=0.8, goal_over_ideal=0.9, nfe=120,
                 nfe_mean=110.0)
    peer = dict(name="ETM euler vs flow_matching (steps=64), equal rows", ours_s=1.0,
                peer_s=3.0, ratio=3.0, goal=1.5, rows_ours=1024, rows_peer=1024)
    so = [dict(model="default", mode=m, method="mdm", cfg_scale=c, L=49, ratio=r, goal=1.05)
          for m, c, r in (("explicit", 0.0, 1.02), ("implicit", 2.0, 1.07),
                          ("explicit", 2.0, 1.01))]
    rows = run_all.summarize({"peers": [peer, cache], "sampler_overhead": so})
    assert _row(rows, "peers: ITM cache")[1:] == ("0.80 (2.00x)", ">= 0.9", "MISSED")
    what, measured, goal, ok = _row(rows, "peers: ETM euler")
    assert "rows evaluated ours 1,024 / peer 1,024" in what and ok == "ok"
    what, measured, goal, ok = _row(rows, "sampler overhead")
    assert "IMP mdm cfg 2" in what and (measured, goal, ok) == ("1.070", "<= 1.05", "MISSED")
