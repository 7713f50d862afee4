"""Every DVC stage lists the ``unmask`` sources it runs (issue 17 item 2).

The slow test imports each stage's entry module in a fresh interpreter (plus the modules its
functions import lazily) and fails if a loaded ``src/unmask`` file is covered by none of the
stage's ``deps``; on the tree before this test every one of the 65 stages missed files. The fast
tests check :mod:`unmask.dvcdeps` itself on a small synthetic package whose closure is written
out by hand."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from unmask import dvcdeps

REPO = Path(__file__).resolve().parents[1]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


#: A package ``unmask`` (shadowing the real one on PYTHONPATH) with: a top-level import, a lazy
#: import inside a function, a relative import, a TYPE_CHECKING-only import, an
#: ``importlib.import_module`` literal, package data (read, and not), modules nothing imports.
_PKG = {
    "src/unmask/__init__.py": "",
    "src/unmask/entry.py": """
        from typing import TYPE_CHECKING
        from unmask import top
        from .rel import thing
        if TYPE_CHECKING:
            from unmask import typing_only
        def main():
            from unmask.sub.lazy import f
            import importlib
            importlib.import_module("unmask.plugin")
        """,
    "src/unmask/top.py": "import unmask.chain\n",
    "src/unmask/chain.py": "",
    "src/unmask/rel.py": "thing = 1\n",
    "src/unmask/typing_only.py": "",
    "src/unmask/plugin.py": "",
    "src/unmask/unused.py": "",
    "src/unmask/sub/__init__.py": "",
    "src/unmask/sub/lazy.py": "def f():\n    return open(__file__[:-7] + 'table.yaml')\n",
    "src/unmask/sub/table.yaml": "a: 1\n",  # read by lazy.py: a dep
    "src/unmask/unread.json": "{}\n",  # beside entry.py but named by no module: not a dep
    "src/unmask/other/__init__.py": "",
    "src/unmask/other/x.py": "",
}
_CLOSURE = {
    "__init__.py", "entry.py", "top.py", "chain.py", "rel.py", "plugin.py",
    "sub/__init__.py", "sub/lazy.py", "sub/table.yaml",
}
_DVC_YAML = """\
# a comment that must survive
stages:
  one:
    cmd: python -m unmask.entry --flag
    deps:
      - src/unmask/entry.py     # kept? no: a src entry, rewritten
      - data/raw                # a data dep
    outs:
      - out
  many:
    foreach: [a, b]
    do:
      cmd: python -m unmask.entry ${item}
      deps:
        - src/unmask
        - data/${item}
      outs:
        - out-${item}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    _write(tmp_path, _PKG)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text(_DVC_YAML)
    return tmp_path


def _rel(files, root: Path) -> set[str]:
    return {str(f.relative_to(root / "src" / "unmask")) for f in files}


def test_closure_follows_lazy_relative_and_literal_imports(project):
    assert dvcdeps.imported_files("unmask.entry", project) == {
        (project / "src/unmask" / f).resolve()
        for f in ("__init__.py", "entry.py", "top.py", "chain.py", "rel.py")}
    assert _rel(dvcdeps.closure("unmask.entry", project), project) == _CLOSURE


def test_missing_deps_file_and_folder_coverage(project):
    one, many = dvcdeps.load_stages(project / "dvc.yaml")
    assert (one.name, many.name) == ("one", "many@*")
    assert dvcdeps.entry_modules(one) == ["unmask.entry"]
    files = dvcdeps.closure("unmask.entry", project)
    assert _rel(dvcdeps.missing_deps(one, files), project) == _CLOSURE - {"entry.py"}
    assert dvcdeps.missing_deps(many, files) == []  # the folder covers everything


def test_write_rewrites_only_src_entries(project):
    dvcfile = project / "dvc.yaml"
    before = dvcfile.read_text()
    assert dvcdeps.write_deps(dvcfile, project) == [f"{dvcfile}:one", f"{dvcfile}:many@*"]
    text = dvcfile.read_text()
    one, many = dvcdeps.load_stages(dvcfile)
    files = dvcdeps.closure("unmask.entry", project)
    assert dvcdeps.missing_deps(one, files) == [] == dvcdeps.missing_deps(many, files)
    # inside the project: whole folders compress (sub/ is entirely used; other/ and the
    # package root are not), sorted, then the non-source deps in their old order
    expected_src = ["src/unmask/__init__.py", "src/unmask/chain.py", "src/unmask/entry.py",
                    "src/unmask/plugin.py", "src/unmask/rel.py", "src/unmask/sub",
                    "src/unmask/top.py"]
    assert one.deps == [*expected_src, "data/raw"]
    assert many.deps == [*expected_src, "data/${item}"]
    assert "data/raw                # a data dep\n" in text
    # every line outside the two deps lists is unchanged
    strip = [ln for ln in before.splitlines() if "src/unmask" not in ln]
    assert [ln for ln in text.splitlines() if "src/unmask" not in ln] == strip
    assert dvcdeps.write_deps(dvcfile, project) == [] and dvcfile.read_text() == text


def test_write_lists_files_in_a_subproject(project):
    """A pipeline project below the source tree: no folder deps (``.dvcignore`` would not
    hide ``__pycache__`` outside the project), paths relative to the stage."""
    sub = project / "pipelines" / "exp"
    (sub / ".dvc").mkdir(parents=True)
    (sub / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: python -m unmask.entry\n    deps:\n      - ../../src/unmask\n")
    dvcdeps.write_deps(sub / "dvc.yaml", project)
    (stage,) = dvcdeps.load_stages(sub / "dvc.yaml")
    assert stage.deps == sorted(f"../../src/unmask/{f}" for f in _CLOSURE)


def test_absent_source_dep_is_reported(project):
    (one, _) = dvcdeps.load_stages(project / "dvc.yaml")
    assert dvcdeps.absent_src_deps(one, project) == []
    (project / "src/unmask/entry.py").unlink()
    assert dvcdeps.absent_src_deps(one, project) == ["src/unmask/entry.py"]


def test_bad_cmd_names_the_stage(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: ./run.sh\n    deps: [a]\n")
    (stage,) = dvcdeps.load_stages(tmp_path / "dvc.yaml")
    with pytest.raises(ValueError, match=r"dvc\.yaml:s: cannot find the entry module"):
        dvcdeps.entry_modules(stage)


@pytest.mark.slow
@pytest.mark.parametrize("dvcfile", [str(p.relative_to(REPO)) for p in dvcdeps.dvc_files(REPO)])
def test_every_stage_depends_on_the_sources_it_runs(dvcfile):
    problems = []
    for stage in dvcdeps.load_stages(REPO / dvcfile):
        files = dvcdeps.stage_closure(stage, REPO)
        assert any(f.name == "__init__.py" for f in files), stage.label  # the closure is real
        problems += [f"{stage.name}: {f.relative_to(REPO)}"
                     for f in dvcdeps.missing_deps(stage, files)]
        problems += [f"{stage.name}: {d} does not exist" for d in dvcdeps.absent_src_deps(stage)]
    assert not problems, (f"{dvcfile}: deps miss sources the stage runs (fix: "
                          f"`unmask dvc deps --write {dvcfile}`):\n" + "\n".join(problems))
