"""The repository's DVC layout (issue 17 items 3-4, issue 16 item 6).

* No DVC output is tracked by git: a cached out of any ``dvc.yaml`` never; in ``pipelines/*``
  nothing a stage writes (their results are not committed: they need data this repo does not
  hold, so committed numbers could not come from the current code).
* Each ``pipelines/<exp>`` is its own DVC project, so the root project (``dvc status`` after
  ``make repro``) collects only the default pipeline's stages.
* ``.dvcignore`` hides ``__pycache__``: a folder dep on ``src/`` stays clean after an import.
* One default remote for every project, outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from unmask.scratch import dvc_bin, run_dvc

REPO = Path(__file__).resolve().parents[1]
PIPELINES = sorted(p.parent for p in (REPO / "pipelines").glob("*/dvc.yaml"))
pytestmark = pytest.mark.skipif(not dvc_bin().exists(), reason="dvc is not installed")


def _git_files(root: Path) -> set[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return {root / p for p in out.stdout.decode().split("\0") if p}


def _outs(project: Path) -> list[tuple[str, Path, bool]]:
    """(stage, absolute path, cached) of every out / metric / plot of ``project``'s stages,
    with DVC's own templating and ``foreach`` resolved."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return [(s.addressing, Path(o.fs_path), bool(o.use_cache))
                for s in repo.index.stages for o in s.outs]


def test_no_dvc_output_is_tracked_by_git():
    tracked = _git_files(REPO)
    bad = []
    for project in [REPO, *PIPELINES]:
        outs = _outs(project)
        assert outs, project  # the projects resolve (a broken dvc.yaml would hide outs)
        for stage, path, cached in outs:
            in_git = sorted(str(f.relative_to(REPO)) for f in tracked
                            if f == path or path in f.parents)
            if in_git and (cached or project != REPO):
                bad.append(f"{project.relative_to(REPO)}:{stage} out {path.name}: {in_git}")
    assert not bad, "DVC outputs tracked by git:\n" + "\n".join(bad)
    locks = sorted(str(p.relative_to(REPO)) for p in tracked if p.name == "dvc.lock")
    assert locks == ["dvc.lock"], locks  # pipelines' results are not committed


@pytest.mark.parametrize("project", PIPELINES, ids=lambda p: p.name)
def test_each_pipeline_is_its_own_dvc_project(project):
    assert (project / ".dvc" / "config").is_file() and (project / ".dvcignore").is_file()
    listed = run_dvc(["stage", "list", "--name-only"], project).stdout.split()
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert {n.split("@")[0] for n in listed} == set(stages)


def test_root_project_collects_only_the_default_pipeline():
    listed = run_dvc(["stage", "list", "--name-only"], REPO).stdout.split()
    assert listed == list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def test_every_project_shares_the_default_remote_outside_the_repo(tmp_path, monkeypatch):
    """``~`` in the committed url expands to the user's home: one remote per user and machine
    for the root project and every pipeline, whatever the clone's path."""
    from dvc.repo import Repo

    monkeypatch.setenv("HOME", str(tmp_path))
    for project in [REPO, *PIPELINES]:
        with Repo(str(project)) as repo:
            conf = repo.config.load_one("repo")
            assert conf["core"]["remote"] == "default", project
            url = repo.cloud.get_remote("default").path
        assert Path(url) == tmp_path / ".cache/unmask/dvc-remote", project


def test_dvcignore_hides_bytecode_from_folder_deps(tmp_path):
    """A stage depending on a source folder: importing it (bytecode written beside it) must
    not make the stage changed. Uses the repository's own .dvcignore."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run_dvc(["init", "-q"], tmp_path)
    shutil.copy(REPO / ".dvcignore", tmp_path / ".dvcignore")
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: python -c \"import sys; sys.path.insert(0, 'src'); "
        "import pkg; open('o.txt', 'w').write(str(pkg.X))\"\n"
        "    deps:\n      - src/pkg\n    outs:\n      - o.txt\n")
    run_dvc(["repro"], tmp_path)
    (pkg / "__pycache__").mkdir(exist_ok=True)  # what any later import of pkg leaves behind
    (pkg / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "stray.pyc").write_bytes(b"\0")
    assert "up to date" in run_dvc(["status"], tmp_path).stdout
    (pkg / "__init__.py").write_text("X = 2\n")  # a real edit is still seen
    assert "changed deps" in run_dvc(["status"], tmp_path).stdout
