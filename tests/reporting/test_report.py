"""build_report from a test MLflow store: tables, claims, CSVs, page structure."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from unmask.reporting.ablations import ABLATION_IDS, ABLATIONS, ablation_table
from unmask.reporting.build import build_report
from unmask.reporting.demo import (
    CFG,
    EXPECTED_VERDICTS,
    NFE,
    PIPELINE_FID,
    PRIME,
    PRIME_PIXELS,
    SCHEDULE,
    T_MIN,
    TEMPERATURE,
)
from unmask.reporting.demo import populate as _populate
from unmask.reporting.runs import infer_ablation, load_runs


@pytest.fixture(scope="module")
def runs(store):
    return load_runs(store)


def _table(runs, ablation):
    spec = next(s for s in ABLATIONS if s.id == ablation)
    return ablation_table(runs, spec)


def test_load_runs_tags_ablations_and_drops_unfinished(runs):
    counts = runs["ablation"].value_counts().to_dict()
    assert counts == {
        "nfe": len(NFE),
        "temperature": len(TEMPERATURE),
        "cfg": len(CFG),
        "schedule": len(SCHEDULE),
        "t_min": len(T_MIN) + 1,  # + the run whose FID was unavailable
        "prime_l": len(PRIME) + 1 + len(PRIME_PIXELS),  # + the second seed at ℓ = 1
        "": 2,  # the pipeline run and the nfe sweep parent
    }
    assert (runs["status"] == "FINISHED").all()


def test_older_prime_runs_are_inferred():
    df = pd.DataFrame(
        {
            "tags.ell": ["2", None, None],
            "params.ell": [None, "4", "4"],
            "metrics.perplexity": [10.0, None, 5.0],
            "metrics.ppl": [None, 7.0, None],
            "tags.unmask.ablation": [None, None, "nfe"],
        }
    )
    assert infer_ablation(df).tolist() == ["prime_l", "prime_l", "nfe"]


def test_unknown_experiment_is_a_clear_error(store):
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        load_runs(store, ["nope"])


@pytest.mark.parametrize(
    ("ablation", "expected"),
    [
        ("nfe", {(m, float(s)): f for m, s, f in NFE}),
        ("temperature", {("mdm", t): f for t, f in TEMPERATURE}),
        ("cfg", {(s, w): f for s, w, f in CFG}),
        ("schedule", {("", s): f for s, f in SCHEDULE}),
        ("t_min", {("discrete", t): f for t, f, _ in T_MIN}),
        (
            "prime_l",
            {
                **{("prime-text", float(e)): p for e, p in PRIME},
                **{("prime-pixels", float(e)): b for e, b in PRIME_PIXELS},
            },
        ),
    ],
)
def test_tables_hold_the_logged_points(runs, ablation, expected):
    t = _table(runs, ablation)
    got = {
        (g, x if isinstance(x, str) else float(x)): v
        for g, x, v in zip(t["group"], t["x"], t["value"], strict=True)
    }
    assert got == expected
    if ablation == "prime_l":  # each experiment its own metric
        assert dict(zip(t["group"], t["metric"], strict=True)) == {
            "prime-text": "ppl",
            "prime-pixels": "bits_per_dim",
        }
    else:
        assert set(t["metric"]) == {"fid"}


def test_seed_repeats_are_averaged(runs):
    t = _table(runs, "prime_l")
    t = t[t["group"] == "prime-text"].set_index("x")
    assert t.loc[1, "n_seeds"] == 2 and t.loc[2, "n_seeds"] == 1
    assert t.loc[1, "value"] == pytest.approx(30.0)
    assert t.loc[1, "stderr"] == pytest.approx(np.std([29.0, 31.0], ddof=1) / np.sqrt(2))


def test_t_min_carries_training_cost(runs):
    t = _table(runs, "t_min")
    assert dict(zip(t["x"], t["y2"], strict=True)) == {t_: s for t_, _, s in T_MIN}


def test_failed_trial_is_not_plotted(runs):
    assert 8 not in set(_table(runs, "nfe")["x"])  # the FAILED run logged steps=8


def test_proxy_metric_is_named_not_called_fid(tmp_path):
    from unmask.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker(uri)
    for t, tv in [(0.5, 0.3), (1.0, 0.2)]:
        with tr.start_run(
            "ablations/temperature",
            tags={
                "unmask.ablation": "temperature",
                "unmask.kind": "trial",
                "unmask.primary_metric": "hist_tv",
            },
        ):
            tr.log_params({"point.sample.temperature": t})
            tr.log_metrics({"hist_tv": tv}, step=0)
    t = _table(load_runs(uri), "temperature")
    assert set(t["metric"]) == {"hist_tv"}
    html = build_report(uri, tmp_path / "out").read_text()
    assert "the plot shows <b>hist_tv</b>" in html
    fid = pd.read_csv(tmp_path / "out" / "fidelity.csv").set_index("id")
    assert fid.loc["temperature_sweet_spot", "verdict"] == "not covered"


def test_fidelity_verdicts(report):
    fid = pd.read_csv(report.parent / "fidelity.csv").set_index("id")
    assert fid["verdict"].to_dict() == EXPECTED_VERDICTS
    # the paper's transcribed numbers are shown, the others are marked as such
    assert "15.36" in fid.loc["prime_l_improves_ppl", "paper"]
    assert (fid["paper"] != "not transcribed").all()  # every claim has transcribed numbers


def test_csv_tables_and_summary(report):
    out = report.parent
    tidy = pd.read_csv(out / "ablations.csv")
    assert set(tidy["ablation"]) == set(ABLATION_IDS)
    assert len(tidy) == len(NFE) + len(TEMPERATURE) + len(CFG) + len(SCHEDULE) + len(T_MIN) + len(
        PRIME
    ) + len(PRIME_PIXELS)
    for a in ABLATION_IDS:
        assert (out / "tables" / f"{a}.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nfe/best_fid"] == min(f for *_, f in NFE)
    assert summary["prime_l/best_ppl"] == min(p for _, p in PRIME)
    assert summary["prime_l/best_bits_per_dim"] == min(b for _, b in PRIME_PIXELS)
    assert summary["default/fid"] == PIPELINE_FID
    meta = pd.read_csv(out / "runs.csv")
    assert {"git_commit", "device", "dataset", "dataset_manifest"} <= set(meta.columns)
    assert "abc123def456" in set(meta["git_commit"])


def test_page_is_self_contained(report):
    html = report.read_text()
    for aid in ABLATION_IDS:
        assert f'id="ablation-{aid}"' in html
    # no external resource: every src/href is a data URI or an in-page anchor
    refs = re.findall(r'<(?:img|script|link|iframe)[^>]*\s(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith("data:") for r in refs), refs[:5]
    assert "<link" not in html
    # sample grids and chain strips of the nfe/temperature points are embedded PNGs
    assert html.count('alt="samples"') >= len(NFE)
    assert html.count('alt="unmasking chain"') >= len(NFE)
    assert "no runs" not in html.split("<h2 id='metadata'>")[0]
    assert "FID unavailable in 1 run(s): no weights" in html


def test_fidelity_table_links_the_source(report):
    html = report.read_text()
    fidelity = html.split("<h2 id='fidelity'>")[1].split("<h2")[0]
    fid = pd.read_csv(report.parent / "fidelity.csv").set_index("id")
    url = fid.loc["prime_l_improves_ppl", "source_url"]
    assert url.startswith("https://")
    assert f'<a href="{url}" rel="noopener">' in fidelity
    assert fidelity.count("<a href=") == fid["source_url"].notna().sum()


def test_sections_without_runs_say_so(tmp_path):
    uri = _populate(tmp_path / "store", {"nfe"})
    html = build_report(uri, tmp_path / "out").read_text()
    assert 'id="ablation-nfe"' in html
    for aid in set(ABLATION_IDS) - {"nfe"}:
        assert f'id="ablation-{aid}"' not in html
        assert f"<code>unmask.ablation={aid}</code>" in html
    fid = pd.read_csv(tmp_path / "out" / "fidelity.csv").set_index("id")
    assert fid.loc["nfe_lowers_fid", "verdict"] == "not reproduced"
    assert (fid.drop(index="nfe_lowers_fid")["verdict"] == "not covered").all()


def test_empty_store(tmp_path):
    html = build_report(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "out").read_text()
    assert html.count("class='no-runs'") >= len(ABLATION_IDS)
    assert np.isin(pd.read_csv(tmp_path / "out" / "fidelity.csv")["verdict"], ["not covered"]).all()


def test_reading_a_store_leaves_the_process_tracking_uri_alone(store, monkeypatch):
    """mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI; the report must not leave it set,
    or the next sweep in the same process would plan against the report's store."""
    from unmask.tracking import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = tracking_uri(root="somewhere")
    assert len(load_runs(store)) > 0
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking_uri(root="somewhere") == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    load_runs(store)
    assert tracking_uri() == "sqlite:///elsewhere.db"
