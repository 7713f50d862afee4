"""Seed-repeat summary of the ℓ comparison: mean ± std over seeds and the paired t-statistic,
checked against scipy on synthetic per-sequence NELBOs."""

import json

import numpy as np
import pytest
from scipy import stats

from unmask.prime.seeds import _T975, summarise

L = 8


def _write(out, seed, ell, nelbo, isr):
    d = out / f"s{seed}" / "eval" / f"l{ell}"
    d.mkdir(parents=True)
    np.save(d / "nelbo.npy", nelbo)
    per_tok = float(nelbo.mean()) / L
    (d / "metrics.json").write_text(
        json.dumps(
            {
                "ell": ell,
                "base": 10 if ell == 1 else 4,
                "perplexity": float(np.exp(per_tok)),
                "isr": isr,
                "isr_expected": None,
                "tokens_per_sequence": L,
                "train_step": 5,
                "n_sequences": len(nelbo),
                "num_mc_samples": 2,
            }
        )
    )


def test_summary_matches_scipy(tmp_path):
    rng = np.random.default_rng(0)
    seeds, ells = [0, 1, 2], [1, 2]
    base = {s: rng.normal(40, 3, size=16) for s in seeds}
    shift = {0: -0.9, 1: -0.8, 2: -1.0}  # ℓ = 2 lowers the NELBO per sequence by these
    for s in seeds:
        _write(tmp_path, s, 1, base[s], 0.3 + 0.01 * s)
        _write(tmp_path, s, 2, base[s] + shift[s] + rng.normal(0, 0.1, 16), 0.1)
    out = summarise(tmp_path, seeds, ells)
    r1, r2 = out["per_ell"]["l1"], out["per_ell"]["l2"]
    ppl1 = [np.exp(base[s].mean() / L) for s in seeds]
    assert r1["ppl_mean"] == pytest.approx(np.mean(ppl1))
    assert r1["ppl_std"] == pytest.approx(np.std(ppl1, ddof=1))
    assert r1["isr_mean"] == pytest.approx(0.31)
    nel2 = {s: np.load(tmp_path / f"s{s}" / "eval" / "l2" / "nelbo.npy") for s in seeds}
    d = np.array([(nel2[s] - base[s]).mean() / L for s in seeds])
    ref = stats.ttest_1samp(d, 0.0)
    assert r2["delta_mean"] == pytest.approx(d.mean())
    assert r2["delta_std"] == pytest.approx(d.std(ddof=1))
    assert r2["t_stat"] == pytest.approx(ref.statistic)
    assert "delta_mean" not in r1
    assert "ℓ=2" in out["verdict"] and "better than" in out["verdict"]


def test_critical_values_are_students_t():
    for dof, crit in _T975.items():
        assert crit == pytest.approx(stats.t.ppf(0.975, dof), abs=1e-3)


def test_indistinguishable_when_the_sign_flips(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.normal(40, 3, size=16)
    for s, sh in zip([0, 1, 2], [-1.0, 1.0, 0.1], strict=True):
        _write(tmp_path, s, 1, base, 0.3)
        _write(tmp_path, s, 2, base + sh, 0.1)
    out = summarise(tmp_path, [0, 1, 2], [1, 2])
    assert "not distinguishable" in out["verdict"]
