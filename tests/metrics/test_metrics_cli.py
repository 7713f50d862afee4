"""``unmask evaluate <metric>``: inputs, JSON output, and the MLflow run with its settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unmask.cli import app
from unmask.metrics.cli import load_array

runner = CliRunner()


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _run(store: str, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store).get_run(run_id)


def test_load_array_forms(tmp_path):
    from PIL import Image

    a = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", other=a + 1, images=a)
    (tmp_path / "png").mkdir()
    for i, img in enumerate(a):
        Image.fromarray(img).save(tmp_path / "png" / f"{i:03d}.png")
    for p in ("a.npy", "a.npz", "png"):
        assert np.array_equal(load_array(tmp_path / p), a), p
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_array(tmp_path / "nope.npy")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(ValueError, match="x.txt"):
        load_array(tmp_path / "x.txt")


def test_miou_matches_torchmetrics_and_is_logged(tmp_path, store):
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (6, 16, 16))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, target.shape))
    np.save(tmp_path / "pred.npy", pred)
    np.save(tmp_path / "target.npy", target)
    out = runner.invoke(
        app,
        [
            "evaluate",
            "miou",
            str(tmp_path / "pred.npy"),
            str(tmp_path / "target.npy"),
            "--num-classes",
            "4",
        ],
    )
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    ref = MulticlassJaccardIndex(num_classes=4, average="macro")(
        torch.from_numpy(pred), torch.from_numpy(target)
    )
    assert res["miou"]["value"] == pytest.approx(float(ref), abs=1e-6)
    run = _run(store, res["mlflow_run_id"])
    assert run.data.metrics["miou"] == pytest.approx(res["miou"]["value"])
    assert run.data.params["miou.num_classes"] == "4"
    assert run.data.params["miou.num_pixels"] == str(target.size)
    assert run.data.tags["stage"] == "evaluate-miou"


def test_miou_shape_mismatch_is_one_clear_error(tmp_path, store):
    np.save(tmp_path / "p.npy", np.zeros((2, 4, 4), np.int64))
    np.save(tmp_path / "t.npy", np.zeros((2, 4, 5), np.int64))
    out = runner.invoke(
        app,
        [
            "evaluate",
            "miou",
            str(tmp_path / "p.npy"),
            str(tmp_path / "t.npy"),
            "--num-classes",
            "2",
        ],
    )
    assert out.exit_code == 2
    assert "error:" in out.output and "(2, 4, 5)" in out.output


def test_inception_score_unavailable_is_logged_with_its_reason(
    tmp_path, store, metrics_cache, converted_weights
):
    np.save(tmp_path / "s.npy", np.zeros((12, 8, 8), np.uint8))
    out = runner.invoke(app, ["evaluate", "is", str(tmp_path / "s.npy")])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["inception_score"]["available"] is False
    run = _run(store, res["mlflow_run_id"])
    assert "inception_score" not in run.data.metrics
    assert run.data.params["inception_score.available"] == "False"
    assert run.data.params["inception_score.unavailable_reason"]


def test_fid_cli_logs_value_and_settings(tmp_path, store, metrics_cache, converted_weights, fmnist):
    """FID of a set against itself is ~0 and the settings land in MLflow; a shifted set is
    farther (the FID formula itself is checked against scipy in test_fidelity)."""
    a, b = fmnist[:12], fmnist[12:24]
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = runner.invoke(
        app,
        [
            "evaluate",
            "fid",
            str(tmp_path / "a.npy"),
            str(tmp_path / "a.npy"),
            "--reference-key",
            "cli-test-a",
            "--batch-size",
            "12",
        ],
    )
    assert out.exit_code == 0, out.output
    same = json.loads(out.stdout)
    assert abs(same["fid"]["value"]) < 1e-3
    run = _run(store, same["mlflow_run_id"])
    assert run.data.params["fid.num_samples"] == "12"
    assert run.data.params["fid.reference"] == "cli-test-a"
    assert run.data.params["fid.features"].startswith("inception-v3-2015-12-05")
    # the cached reference by key
    out = runner.invoke(
        app,
        [
            "evaluate",
            "fid",
            str(tmp_path / "b.npy"),
            "cli-test-a",
            "--batch-size",
            "12",
            "--no-track",
        ],
    )
    assert out.exit_code == 0, out.output
    other = json.loads(out.stdout)
    assert "mlflow_run_id" not in other
    assert other["fid"]["value"] > 1.0


def test_evaluate_without_subcommand_is_the_stage(tmp_path):
    out = runner.invoke(app, ["evaluate", "--params", str(tmp_path / "missing.yaml")])
    assert out.exit_code == 2
    assert "error:" in out.output and "missing.yaml" in out.output
