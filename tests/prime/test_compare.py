"""The ℓ comparison of ``prime.report`` (:mod:`unmask.prime.compare`) on synthetic per-sequence
NELBOs: the paired difference and its standard error against scipy, the verdict's thresholds,
and the estimator label in every table it writes."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from unmask.prime import compare
from unmask.prime.pipeline import ESTIMATOR

L = 16


def _cell(ell: int, nelbo: np.ndarray) -> None:
    d = Path("eval") / f"l{ell}"
    d.mkdir(parents=True)
    np.save(d / "nelbo.npy", nelbo)
    per_tok = float(nelbo.mean()) / L
    (d / "metrics.json").write_text(json.dumps({
        "ell": ell, "base": 7 if ell > 1 else 42, "tokens_per_sequence": L,
        "estimator": ESTIMATOR, "nelbo_nats_per_token": per_tok, "nelbo_stderr": 0.01,
        "perplexity": float(np.exp(per_tok)), "bits_per_token": per_tok / np.log(2),
        "isr": 0.1, "isr_expected": 0.12, "train_step": 5}))
    m = Path("models") / f"l{ell}"
    m.mkdir(parents=True)
    (m / "train.json").write_text(json.dumps({"num_params": 1000 + ell}))


@pytest.mark.parametrize(("shift", "word"), [(-1.0, "better than"), (1.0, "worse than"),
                                             (0.0, "not distinguishable from")])
def test_paired_difference_and_verdict(tmp_path, monkeypatch, shift, word):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    base = rng.normal(60, 5, size=40)
    other = base + shift + rng.normal(0, 0.5, size=40)  # paired: the sequence noise cancels
    _cell(1, base)
    _cell(2, other)
    summary = compare.compare([1, 2])
    d = (other - base) / L
    m2 = summary["per_ell"]["l2"]
    assert m2["delta_nelbo_vs_l1"] == pytest.approx(d.mean())
    assert m2["delta_nelbo_vs_l1_stderr"] == pytest.approx(stats.sem(d))
    assert "delta_nelbo_vs_l1" not in summary["per_ell"]["l1"]
    z = d.mean() / stats.sem(d)
    assert (abs(z) > 2) == (shift != 0.0)  # the data put each case where its word says
    assert f"ℓ=2 PPL {m2['perplexity']:.2f} is {word} ℓ=1" in summary["verdict"]
    assert m2["num_params"] == 1002 and summary["estimator"] == ESTIMATOR

    compare.write_tables(summary)
    assert json.loads(Path("metrics.json").read_text()) == json.loads(json.dumps(summary))
    rows = {r[0]: r[1:] for r in csv.reader(compare.TABLE.read_text().splitlines())}
    assert rows["metric"] == ["l1", "l2"] and rows["estimator"] == [ESTIMATOR, ESTIMATOR]
    assert float(rows["perplexity"][1]) == pytest.approx(m2["perplexity"])
    notes = compare.notes(summary)
    assert notes["NELBO / perplexity estimator"] == ESTIMATOR
    assert f"PPL {m2['perplexity']:.2f}" in notes["ℓ = 2 (b = 7)"]
    assert f"{d.mean():+.4f}" in notes["ℓ = 2 (b = 7)"]


def test_no_baseline_and_unpaired_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _cell(2, np.full(8, 50.0))
    _cell(4, np.full(8, 49.0))
    assert compare.compare([2, 4])["verdict"] == "no ℓ = 1 baseline to compare with"
    _cell(1, np.full(5, 50.0))  # scored on other sequences: no paired difference
    assert compare.paired_delta(2) is None
    assert "delta_nelbo_vs_l1" not in compare.compare([1, 2])["per_ell"]["l2"]
