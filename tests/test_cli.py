"""The `unmask` CLI: help lists the commands; user errors are one line, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unmask.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
    env.pop("UNMASK_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "unmask.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def _invoke(*args: str, cwd: Path = REPO):
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(old)


def _one_line_error(result) -> str:
    err = result.stderr.strip()
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("train", "sample", "evaluate", "report", "stage", "params"):
        assert cmd in result.output
    assert "--cfg-scale" in runner.invoke(app, ["sample", "--help"]).output


def test_mistyped_params_key_subprocess(tmp_path):
    (tmp_path / "params.yaml").write_text("train: {lr_rate: 0.1}\n")
    err = _one_line_error(_cli("train", "--params", str(tmp_path / "params.yaml")))
    assert "unknown key 'train.lr_rate' (did you mean 'train.lr'?)" in err


def test_unknown_method_and_bad_value():
    err = _one_line_error(_invoke("sample", "--method", "eulr"))
    assert "unknown sampling method 'eulr'; valid: euler, mdm, maskgit, first_hitting" in err
    err = _one_line_error(_invoke("sample", "--temperature", "-1"))
    assert "sample.temperature must be > 0 (got -1)" in err


def test_missing_checkpoint(tmp_path):
    err = _one_line_error(_invoke("sample", "--ckpt", str(tmp_path / "nope.pt")))
    assert "nope.pt" in err and "not found" in err


def test_unknown_stage_and_missing_inputs(tmp_path):
    assert "unknown stage 'trian'" in _one_line_error(_invoke("stage", "trian"))
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    err = _one_line_error(_invoke("evaluate", cwd=tmp_path))  # nothing built in tmp_path
    assert "data/tokens" in err or "models/tokenizer.pt" in err  # the first missing input


@pytest.mark.parametrize("args", [["params"], ["params", "--set", "sample.steps=3"]])
def test_params_command(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"vocab_size"' in result.output
