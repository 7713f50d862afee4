"""The eMIGM t_min ablation functions (unmask.emigm.t_min) on a real tiny pipeline folder made by
the emigm.prepare / emigm.tokenize-discrete stages.

Independent check: with eMIGM's exp mask ratio γ(s) = 1 − e^{−5s} (eMIGM code,
models/emigm.py ``random_masking``) and mask times s ~ U[max(t_min, 10⁻³), 1], the mean mask
ratio of the training rows is (1/(1 − s₀))·[s + e^{−5s}/5]_{s₀}^{1} — computed here in closed
form, in eMIGM's own terms, not through the package's schedules."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from unmask.emigm.t_min import COLUMNS, load_inputs, log_point, run_point, write_table

FMNIST = Path("/usr/share/datasets/fashion-mnist")
TINY = {
    "data": {"kind": "fashion_mnist", "root": str(FMNIST), "n_train": 96, "n_test": 24,
             "seed": 0},
    "vq": {"steps": 3, "batch_size": 16, "codebook_size": 16, "hidden": 8, "latent_dim": 4},
    "objective": {"schedule": "exp", "weighting": "constant", "t_min": 0.2},
    "discrete": {
        "model": {"preset": "emigm-tiny", "dim": 32, "heads": 4, "depth": 1, "buffer_size": 2,
                  "conditioning": "buffer", "null_cond": "mask", "cond_dropout": 0.1},
        "train": {"steps": 40, "batch_size": 32, "warmup_steps": 2, "log_every": 20,
                  "ckpt_every": 40, "keep_last": 1, "masking": "independent"},
    },
    "continuous": {"enabled": False},
    "sample": {"steps": 4, "cfg_scale": 1.0, "cfg_interval": [0.1, 0.6], "n_per_class": 1},
    "evaluate": {"n_fid": 20, "batch_size": 20},
    "tracking": {"enabled": False},
}
needs_fmnist = pytest.mark.skipif(not FMNIST.is_dir(), reason=f"no Fashion-MNIST at {FMNIST}")


def emigm_mean_mask_ratio(t_min: float, eps: float = 1e-3) -> float:
    """E[γ(s)] for s ~ U[max(t_min, ε), 1], γ(s) = 1 − e^{−5s}: closed form."""
    s0 = max(t_min, eps)
    prim = lambda s: s + math.exp(-5 * s) / 5  # noqa: E731  ∫(1 − e^{−5s}) ds
    return (prim(1.0) - prim(s0)) / (1.0 - s0)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline folder after its emigm.prepare and emigm.tokenize-discrete stages."""
    from unmask.config import load_params
    from unmask.emigm.params import EMIGMParams
    from unmask.stages import run

    root = tmp_path_factory.mktemp("emigm-tiny")
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    here = Path.cwd()
    os.chdir(root)
    try:
        p = load_params("params.yaml", schema=EMIGMParams)
        run("emigm.prepare", p)
        run("emigm.tokenize-discrete", p)
    finally:
        os.chdir(here)
    return root


def test_closed_form_matches_numeric_integration():
    """The oracle itself, against a midpoint rule (guards the closed form above)."""
    for t_min in (0.0, 0.2, 0.4):
        s0 = max(t_min, 1e-3)
        s = s0 + (np.arange(200_000) + 0.5) * (1 - s0) / 200_000
        assert emigm_mean_mask_ratio(t_min) == pytest.approx(float((1 - np.exp(-5 * s)).mean()),
                                                             abs=1e-9)


@needs_fmnist
def test_load_inputs_reads_the_pipeline_outputs(pipeline: Path):
    inputs = load_inputs(pipeline, "discrete")
    assert inputs.data.grid == (7, 7) and inputs.data.vocab_size == 16
    assert len(inputs.reference) == 20 and inputs.reference_note == "20 held-out test images"
    images = inputs.decode(inputs.data.tokens[:3])
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    with pytest.raises(FileNotFoundError, match="dvc repro tokenize-continuous"):
        load_inputs(pipeline, "continuous")
    with pytest.raises(ValueError, match="kind must be"):
        load_inputs(pipeline, "both")


@needs_fmnist
def test_run_point_mask_ratio_and_encoder_load_match_emigm(pipeline: Path, tmp_path: Path):
    """Each point's mean mask ratio is eMIGM's E[γ(s)] over its truncated mask times (within
    5 standard errors of 40 × 32 rows of 49 tokens); the encoder sees the complement."""
    inputs = load_inputs(pipeline, "discrete")
    rows = [run_point(inputs, t, tmp_path / f"t{t}", fid=False) for t in (0.0, 0.2, 0.4)]
    seq = 49
    for row in rows:
        want = emigm_mean_mask_ratio(row["t_min"])
        # per-row ratio: Var_s[γ(s)] + binomial noise over 49 tokens, bounded by 0.25/49
        s0 = max(row["t_min"], 1e-3)
        s = np.linspace(s0, 1, 10_001)
        var = float((1 - np.exp(-5 * s)).var()) + 0.25 / seq
        se = math.sqrt(var / (40 * 32))
        assert abs(row["mask_ratio"] - want) < 5 * se, (row["t_min"], row["mask_ratio"], want)
        assert row["encoder_tokens_per_sample"] == pytest.approx(seq * (1 - row["mask_ratio"]),
                                                                 rel=1e-6)
        assert row["fid"] is None and row["fid_unavailable"] == "disabled (fid=False)"
        assert row["steps"] == 40 and row["num_fid_samples"] == 20 and row["train_seconds"] > 0
        assert row["nfe_label"] == "4×1.5"  # eMIGM guides 2 of 4 steps on (0.1, 0.6]
        assert (tmp_path / f"t{row['t_min']}" / "samples.npz").is_file()
    # the three points are separated by much more than their noise
    assert rows[0]["mask_ratio"] < rows[1]["mask_ratio"] < rows[2]["mask_ratio"]
    # the table: sorted by t_min, the declared columns
    path = write_table(rows[::-1], tmp_path / "t_min.csv")
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert [float(r["t_min"]) for r in table] == [0.0, 0.2, 0.4]
    assert list(table[0]) == list(COLUMNS)


@needs_fmnist
def test_log_point_writes_the_reports_names(pipeline: Path, tmp_path: Path, monkeypatch):
    from unmask.tracking import Tracker
    from unmask.tracking_tags import (
        ABLATION,
        ABLATION_T_MIN,
        FID_UNAVAILABLE,
        METRIC_TRAIN_SECONDS,
        PAPER,
        PAPER_EMIGM,
        PARAM_T_MIN,
        STAGE,
    )

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    inputs = load_inputs(pipeline, "discrete")
    row = run_point(inputs, 0.2, tmp_path / "pt", fid=False)
    tracker = Tracker(root=tmp_path / "mlruns")
    run_id = log_point(tracker, "ablations/t_min", row, inputs)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert (tags[PAPER], tags[ABLATION], tags[STAGE]) == (PAPER_EMIGM, ABLATION_T_MIN,
                                                          "evaluate")
    assert tags[FID_UNAVAILABLE] == "disabled (fid=False)"
    assert float(params[PARAM_T_MIN]) == 0.2 and params["kind"] == "discrete"
    assert metrics[METRIC_TRAIN_SECONDS] == pytest.approx(row["train_seconds"])
    assert metrics["mask_ratio"] == pytest.approx(row["mask_ratio"])
