"""The pipeline's report stage: the MLflow report in reports/, with or without the pipeline's
own outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unmask.config import load_params
from unmask.reporting.ablations import ABLATION_IDS

REPO = Path(__file__).resolve().parents[2]


def test_report_stage_reads_the_store(store, tmp_path, monkeypatch):
    from unmask.stages import report

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    path = report.run(load_params(REPO / "params.yaml"))
    html = path.read_text()
    assert path == Path("reports/index.html")
    for aid in ABLATION_IDS:
        assert f'id="ablation-{aid}"' in html
    assert (tmp_path / "reports" / "metrics.csv").is_file()
    assert len(pd.read_csv(tmp_path / "reports" / "fidelity.csv")) > 0


def test_report_stage_without_tracking(tmp_path, monkeypatch):
    from unmask.stages import report

    monkeypatch.chdir(tmp_path)
    params = load_params(REPO / "params.yaml", ["tracking.enabled=false"])
    html = report.run(params).read_text()
    assert html.count("class='no-runs'") >= len(ABLATION_IDS)
    assert not (tmp_path / "mlruns").exists()
