"""The Prefect deployment ``ablations/t_min`` (flows/t_min.py) on a tiny eMIGM pipeline: two
grid points, each a trained MAE with FID (or FID flagged unavailable), logged to MLflow with the
report's tags (:mod:`unmask.tracking_tags`), under a local Prefect test server."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import pytest
import torch
import yaml

from unmask.tracking_tags import (
    ABLATION,
    ABLATION_T_MIN,
    FID_UNAVAILABLE,
    METRIC_FID,
    METRIC_TRAIN_SECONDS,
    PAPER,
    PAPER_EMIGM,
    PARAM_T_MIN,
    STAGE,
)

ROOT = Path(__file__).resolve().parents[2]

for _k, _v in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(_k, _v)
torch.set_num_threads(1)

TINY = {
    "data": {"kind": "fashion_mnist", "n_train": 96, "n_test": 23, "seed": 0},
    "vq": {"steps": 3, "batch_size": 16, "codebook_size": 16, "hidden": 8, "latent_dim": 4},
    "objective": {"schedule": "exp", "weighting": "constant", "t_min": 0.2},
    "discrete": {
        "model": {
            "preset": "emigm-tiny",
            "dim": 32,
            "heads": 4,
            "depth": 1,
            "buffer_size": 2,
            "conditioning": "buffer",
            "null_cond": "mask",
            "cond_dropout": 0.1,
        },
        "train": {
            "steps": 6,
            "batch_size": 16,
            "warmup_steps": 1,
            "log_every": 3,
            "ckpt_every": 6,
            "keep_last": 1,
        },
    },
    "continuous": {"enabled": False},
    "sample": {"steps": 4, "cfg": 2.0, "cfg_interval": [0.1, 0.6], "n_per_class": 1},
    "evaluate": {"n_fid": 20, "batch_size": 20},
    "tracking": {"enabled": True, "experiment": "emigm-tiny", "root": "mlruns"},
}


def _load_flow():
    spec = importlib.util.spec_from_file_location("t_min_flow", ROOT / "flows" / "t_min.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ablations


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    """A pipeline folder after its prepare and tokenize-discrete stages."""
    from unmask.emigm.params import load_emigm_params
    from unmask.emigm.pipeline import run_stage

    pipe = tmp_path / "project" / "pipelines" / "emigm-tiny"
    pipe.mkdir(parents=True)
    (pipe / "params.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.chdir(pipe)
    params = load_emigm_params("params.yaml")
    run_stage("prepare", params)
    run_stage("tokenize-discrete", params)
    monkeypatch.chdir(tmp_path)
    return pipe


@pytest.mark.slow
def test_t_min_deployment_trains_two_points_and_logs_them(pipeline, tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from unmask.orchestration.runs import client

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    project = tmp_path / "project"
    flow = _load_flow()
    with prefect_test_harness(server_startup_timeout=120):
        out = flow(
            values=[0.0, 0.2],
            pipeline="pipelines/emigm-tiny",
            workdir=str(project),
            settings=str(ROOT / "flows" / "ablations.yaml"),
        )
    # -- the table --------------------------------------------------------------------------
    with open(out["csv"]) as f:
        rows = {float(r["t_min"]): r for r in csv.DictReader(f)}
    assert set(rows) == {0.0, 0.2}
    # truncation masks ≥ γ(0.2) = 63 % of the tokens: the encoder sees fewer of them
    assert float(rows[0.2]["encoder_tokens_per_sample"]) < float(
        rows[0.0]["encoder_tokens_per_sample"]
    )
    # -- MLflow: two point runs with the report's names, nested under the sweep run ------------
    mc = client(f"sqlite:///{pipeline / 'mlruns' / 'mlflow.db'}")
    exp = mc.get_experiment_by_name("ablations/t_min")
    assert exp is not None
    runs = mc.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{ABLATION}` = '{ABLATION_T_MIN}' and tags.`{STAGE}` = 'evaluate'",
    )
    assert len(runs) == 2
    assert {float(r.data.params[PARAM_T_MIN]) for r in runs} == {0.0, 0.2}
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.tags[PAPER] == PAPER_EMIGM
        assert r.data.tags["mlflow.parentRunId"] == out["sweep_run_id"]
        assert r.data.metrics[METRIC_TRAIN_SECONDS] > 0
        has_fid = METRIC_FID in r.data.metrics
        assert has_fid != (FID_UNAVAILABLE in r.data.tags)  # exactly one of the two
        if has_fid:
            assert r.data.metrics[METRIC_FID] > 0
        else:
            assert r.data.tags[FID_UNAVAILABLE]
    assert {r["mlflow_run_id"] for r in out["rows"]} == {r.info.run_id for r in runs}


def test_t_min_flow_rejects_other_axes_and_bad_values(tmp_path):
    flow = _load_flow()
    with pytest.raises(ValueError, match="t_min axis only"):
        flow.fn(axis="nfe", workdir=str(tmp_path))
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        flow.fn(
            values=[0.2, 1.0],
            workdir=str(tmp_path),
            settings=str(ROOT / "flows" / "ablations.yaml"),
        )
    with pytest.raises(FileNotFoundError, match="tokenize-discrete"):
        (tmp_path / "pipelines" / "x").mkdir(parents=True)
        (tmp_path / "pipelines" / "x" / "params.yaml").write_text("{}\n")
        from unmask.emigm.t_min import load_inputs

        load_inputs(tmp_path / "pipelines" / "x", "discrete")
