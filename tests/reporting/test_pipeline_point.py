"""The report closes the loop: an axis' curve from the shared MLflow store, with each point's
FID uncertainty as error bars and the pipeline's own evaluate run on it — read from the figure
JSON that the page embeds (not from pixels). Also: MDM-Prime PPLs carry their estimator."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from unmask.tracking import Tracker

REF = "fashion_mnist-test-28x28-n1000-0123456789abcdef"
# (steps, nfe, fid, fid_std) of each trial
TRIALS = [(4, 8.0, 60.0, 3.0), (16, 32.0, 45.0, 2.0), (64, 128.0, 38.0, 1.5)]
PIPELINE = {"steps": 30, "nfe": 60.0, "fid": 41.0, "fid_std": 1.25}


def _store(root: Path, *, pipeline_samples: int = 1000) -> str:
    """A store as the writers fill it: the pipeline's evaluate run (experiment ``default``,
    tag ``stage=evaluate``, ``sample_nfe``, ``fid.*`` params) and an nfe sweep's trials."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tr = Tracker(uri)
    with tr.start_run("default", "evaluate",
                      params={"sample": {"method": "mdm", "steps": PIPELINE["steps"]}},
                      tags={"stage": "evaluate", "git_commit": "feedbeef"}):
        tr.log_params({"fid.reference": REF, "fid.num_samples": pipeline_samples})
        tr.log_metrics({"fid": PIPELINE["fid"], "fid_std": PIPELINE["fid_std"],
                        "sample_nfe": PIPELINE["nfe"], "nelbo_bpt": 4.2}, step=600)
    for steps, nfe, fid, std in TRIALS:
        with tr.start_run("ablations/nfe", f"nfe-{steps}",
                          params={"sample": {"method": "mdm", "steps": steps}},
                          tags={"unmask.ablation": "nfe", "unmask.kind": "trial",
                                "unmask.primary_metric": "fid"}):
            tr.log_params({"point.sample.steps": steps, "fid.reference": REF,
                           "fid.num_samples": 1000})
            tr.log_metrics({"fid": fid, "fid_std": std, "nfe": nfe}, step=0)
    return uri


def _figure(html: str, div_id: str) -> list[dict[str, Any]]:
    """The data array of ``Plotly.newPlot("<div_id>", [...], ...)`` in the page."""
    m = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*', html)
    assert m, f"no plot {div_id}"
    data, _ = json.JSONDecoder().raw_decode(html, m.end())
    return data


def _arr(v: Any) -> list[Any]:
    """A figure array as a list (plotly 6 writes numeric arrays as base64 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _build(uri: str, out: Path) -> str:
    from unmask.reporting.build import build_report

    return build_report(uri, out).read_text()


def test_curve_has_error_bars_and_the_pipeline_point(tmp_path: Path) -> None:
    html = _build(_store(tmp_path), tmp_path / "out")
    data = _figure(html, "ablation-nfe")
    curve = next(t for t in data if t.get("mode") == "lines+markers")
    assert _arr(curve["x"]) == [nfe for _, nfe, _, _ in TRIALS]
    assert _arr(curve["y"]) == [fid for *_, fid, _ in TRIALS]
    assert _arr(curve["error_y"]["array"]) == [std for *_, std in TRIALS]
    assert curve["error_y"]["visible"] is True

    star = [t for t in data if t.get("meta", {}).get("pipeline_run")]
    assert len(star) == 1
    p = star[0]
    assert _arr(p["x"]) == [PIPELINE["nfe"]] and _arr(p["y"]) == [PIPELINE["fid"]]
    assert _arr(p["error_y"]["array"]) == [PIPELINE["fid_std"]]
    assert p["marker"]["symbol"] == "star"  # same reference, same sample count: comparable
    assert "not comparable" not in p["name"]
    assert "default" in p["name"] and "1000 samples" in p["name"]
    section = html.split("<h2 id='section-nfe'>")[1].split("<h2")[0]
    assert "the pipeline's own evaluate run" in section and "Not comparable" not in section
    assert "Error bars" in section
    # the table behind the plot carries the uncertainty too
    t = pd.read_csv(tmp_path / "out" / "tables" / "nfe.csv")
    assert t["stderr"].tolist() == [std for *_, std in TRIALS]


def test_a_pipeline_run_on_other_counts_is_marked_not_comparable(tmp_path: Path) -> None:
    html = _build(_store(tmp_path, pipeline_samples=500), tmp_path / "out")
    p = next(t for t in _figure(html, "ablation-nfe") if t.get("meta", {}).get("pipeline_run"))
    assert p["marker"]["symbol"] == "star-open"
    assert "500 samples vs the trials' 1000" in p["name"]
    section = html.split("<h2 id='section-nfe'>")[1].split("<h2")[0]
    assert "Not comparable" in section


def test_pipeline_point_prefers_the_run_on_the_trials_reference(tmp_path: Path) -> None:
    from unmask.reporting.ablations import ABLATIONS, ablation_table, pipeline_point
    from unmask.reporting.runs import load_runs

    uri = _store(tmp_path)
    tr = Tracker(uri)  # a newer evaluate run of another pipeline, on another reference
    with tr.start_run("cifar10", "evaluate", tags={"stage": "evaluate"}):
        tr.log_params({"fid.reference": "cifar10-test-32x32-n1000-ffff"})
        tr.log_metrics({"fid": 99.0}, step=1)
    runs = load_runs(uri)
    spec = next(s for s in ABLATIONS if s.id == "nfe")
    point = pipeline_point(runs, spec, ablation_table(runs, spec))
    assert point is not None and point.comparable
    assert point.experiment == "default" and point.value == PIPELINE["fid"]
    assert point.x == PIPELINE["nfe"] and point.group == "mdm"


@pytest.mark.parametrize("axis", ["prime_l"])
def test_prime_ppl_is_labelled_with_its_estimator(report: Path, axis: str) -> None:
    html = report.read_text()
    section = html.split(f"<h2 id='section-{axis}'>")[1].split("<h2")[0]
    assert "not MDM-Prime eq. 5" in section or "NOT the estimator of MDM-Prime eq. (5)" in section
    assert "continuous-time ELBO over sub-tokens" in section
    layout_titles = re.findall(r'"title":\{"text":"([^"]*ELBO-PPL[^"]*)"', html)
    assert layout_titles, "the PPL axis names its estimator"
    fid = pd.read_csv(report.parent / "fidelity.csv").set_index("id")
    assert "eq. (5)" in fid.loc["prime_l_improves_ppl", "note"]
    assert fid.drop(index="prime_l_improves_ppl")["note"].isna().all()  # FID claims: no note


def test_demo_report_marks_the_pipeline_on_the_nfe_plot(report: Path) -> None:
    from unmask.reporting.demo import NFE, NFE_FID_STD, PIPELINE_FID, PIPELINE_STEPS

    data = _figure(report.read_text(), "ablation-nfe")
    curves = [t for t in data if t.get("mode") == "lines+markers"]
    assert sum(len(_arr(c["error_y"]["array"])) for c in curves) == len(NFE)
    assert all(v == NFE_FID_STD for c in curves for v in _arr(c["error_y"]["array"]))
    star = next(t for t in data if t.get("meta", {}).get("pipeline_run"))
    assert _arr(star["x"]) == [2.0 * PIPELINE_STEPS] and _arr(star["y"]) == [PIPELINE_FID]


def test_training_axis_point_trained_for_other_steps_is_not_comparable(tmp_path: Path) -> None:
    from unmask.reporting.ablations import ABLATIONS, ablation_table, pipeline_point
    from unmask.reporting.runs import load_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker(uri)
    with tr.start_run("default", "evaluate", params={"train": {"schedule": "linear", "steps": 600}},
                      tags={"stage": "evaluate"}):
        tr.log_params({"fid.reference": REF, "fid.num_samples": 1000})
        tr.log_metrics({"fid": 50.0, "fid_std": 2.0}, step=600)
    for sched, fid in (("linear", 70.0), ("cosine", 75.0)):
        with tr.start_run("ablations/schedule", sched,
                          params={"train": {"schedule": sched, "steps": 100}},
                          tags={"unmask.ablation": "schedule", "unmask.kind": "trial"}):
            tr.log_params({"point.train.schedule": sched, "fid.reference": REF,
                           "fid.num_samples": 1000})
            tr.log_metrics({"fid": fid}, step=0)
    runs = load_runs(uri)
    spec = next(s for s in ABLATIONS if s.id == "schedule")
    p = pipeline_point(runs, spec, ablation_table(runs, spec))
    assert p is not None and p.x == "linear" and p.value == 50.0
    assert not p.comparable and "trained 600 steps vs the trials' 100" in p.note
