"""The scratch-repo harness of the pipeline tests (:mod:`unmask.data.fixtures`): the copied
pipeline carries exactly the overridden params, and a failing ``dvc`` command is an error that
names the command and carries its output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from unmask.scratch import dvc_bin, run_dvc, scratch_pipeline

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not dvc_bin().exists(), reason="dvc is not installed")


@pytest.mark.parametrize("exp", [None, "seg-default"])
def test_scratch_pipeline_copies_params_with_overrides(tmp_path, exp):
    root = scratch_pipeline(REPO, exp, tmp_path / "repo", ["train.steps=3", "model.dim=24"])
    rel = Path("pipelines", exp) if exp else Path(".")
    original = yaml.safe_load((REPO / rel / "params.yaml").read_text())
    copied = yaml.safe_load((root / rel / "params.yaml").read_text())
    assert copied["train"]["steps"] == 3 and copied["model"]["dim"] == 24
    original["train"]["steps"], original["model"]["dim"] = 3, 24  # nothing else changed
    assert copied == original
    assert (root / rel / "dvc.yaml").read_bytes() == (REPO / rel / "dvc.yaml").read_bytes()
    assert (root / "src" / "unmask" / "data" / "fixtures.py").is_file()
    assert (root / ".dvc").is_dir() and (root / ".git").is_dir()
    if exp:  # the pipeline is its own DVC project with the repo's config (remote, ignores)
        for name in (".dvc/config", ".dvcignore"):
            assert (root / rel / name).read_bytes() == (REPO / rel / name).read_bytes()
        assert run_dvc(["root"], root / rel).stdout.strip() == "."


def test_run_dvc_failure_names_the_command(tmp_path):
    with pytest.raises(RuntimeError, match=r"dvc repro no/such/dvc\.yaml .* exited [1-9]"):
        run_dvc(["repro", "no/such/dvc.yaml"], tmp_path)
    assert re.fullmatch(r"\d+\.\d+\.\d+\s*", run_dvc(["--version"], tmp_path).stdout)
