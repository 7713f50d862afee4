"""unmask.runtime: the thread rule, the code fingerprint (which files it covers, that an edit
changes it) and run keys (a run of other params / data / code is wiped with a message naming
what changed; the same run is kept), and canonical checkpoint bytes."""

from __future__ import annotations

import io
import json
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from unmask import runtime

SRC = Path(runtime.__file__).resolve().parent


def test_threads_rule(monkeypatch):
    monkeypatch.delenv("UNMASK_THREADS", raising=False)
    assert runtime.threads() == runtime.DEFAULT_THREADS == 1
    monkeypatch.setenv("UNMASK_THREADS", "3")
    assert runtime.threads() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("UNMASK_THREADS", bad)
        with pytest.raises(ValueError, match=r"\$UNMASK_THREADS="):
            runtime.threads()


def test_configure_threads_sets_torch(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("UNMASK_THREADS", "2")
        assert runtime.configure_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_no_stage_reads_the_old_variable_or_the_load():
    hits = [p for p in SRC.rglob("*.py")
            if "UNMASK_TORCH_THREADS" in p.read_text() or "getloadavg" in p.read_text()]
    assert not hits, hits


def test_closure_follows_function_level_and_relative_imports():
    closure = runtime.module_closure(["unmask.stages.train"])
    # stages/__init__ imports unmask.tracking inside make_tracker, training the loop at the top
    assert {"unmask.stages", "unmask.tracking", "unmask.training.loop",
            "unmask.models.transformer", "unmask.runtime"} <= set(closure)
    assert "unmask.reporting" not in closure and "unmask.prime.stages" not in closure
    with pytest.raises(ValueError, match="not a module of the unmask package"):
        runtime.module_closure(["unmask.no_such_module"])


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the package that the fingerprint reads instead of the real one."""
    root = tmp_path / "unmask"
    shutil.copytree(SRC, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runtime, "_ROOT", root)
    return root


def test_fingerprint_sees_edits_to_the_code_a_stage_runs(package_copy):
    entry = "unmask.stages.train"
    base = runtime.code_fingerprint(entry)
    assert base == runtime.code_fingerprint(entry)  # stable
    report = package_copy / "reporting" / "__init__.py"
    report.write_text(report.read_text() + "\n# a comment in code the stage never runs\n")
    assert runtime.code_fingerprint(entry) == base
    model = package_copy / "models" / "transformer.py"
    model.write_text(model.read_text() + "\nSCALE = 2.0\n")
    changed = runtime.code_fingerprint(entry)
    assert changed != base
    # package data a module of the closure names is part of it (claims.py reads
    # reporting/references.yaml); other files beside it, or beside modules the stage never
    # runs, are not
    (package_copy / "models" / "table.yaml").write_text("a: 1\n")
    assert runtime.code_fingerprint(entry) == changed
    model.write_text(model.read_text() + "\nTABLE = 'table.yaml'\n")
    with_data = runtime.code_fingerprint(entry)
    assert with_data != changed
    (package_copy / "models" / "table.yaml").write_text("a: 2\n")
    named = runtime.code_fingerprint(entry)
    assert named != with_data
    (package_copy / "reporting" / "table.yaml").write_text("a: 1\n")
    assert runtime.code_fingerprint(entry) == named
    # an independent computation: sha256 over the torch version and the closure's files
    # (module sources by name, plus the non-Python files in their folders they name)
    import hashlib

    paths = set()
    for name in runtime.module_closure([entry]):
        parts = name.split(".")[1:]
        path = package_copy.joinpath(*parts).with_suffix(".py") if parts else None
        if path is None or not path.is_file():
            path = package_copy.joinpath(*parts) / "__init__.py"
        paths.add(path)
        paths |= {q for q in path.parent.iterdir() if q.is_file() and q.suffix != ".py"
                  and q.suffix != ".pyc" and q.name in path.read_text()}
    h = hashlib.sha256(f"torch {torch.__version__}\n".encode())
    for path in sorted(paths):
        h.update(f"{path.relative_to(package_copy).as_posix()}\n".encode() + path.read_bytes()
                 + b"\0")
    assert named == h.hexdigest()


def test_run_dir_is_kept_for_the_same_run_and_wiped_for_another(tmp_path, capsys):
    run = tmp_path / "runs" / "train"
    parts = runtime.run_key_parts(params={"lr": 1e-3}, data="abc", code="c1")
    key = runtime.prepare_run_dir(run, parts, label="train")
    ckpt = run / "checkpoints" / "ckpt-00000010.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    assert json.loads((run / "run_key").read_text())["key"] == key

    assert runtime.prepare_run_dir(run, parts, label="train") == key
    assert ckpt.is_file() and capsys.readouterr().err == ""

    for what, other in (("code", {**parts, "code": "c2"}),
                        ("params", runtime.run_key_parts(params={"lr": 2e-3}, data="abc",
                                                         code="c1")),
                        ("data", runtime.run_key_parts(params={"lr": 1e-3}, data="abd",
                                                       code="c1"))):
        runtime.prepare_run_dir(run, parts, label="train")
        ckpt.parent.mkdir(exist_ok=True)
        ckpt.write_bytes(b"weights")
        runtime.prepare_run_dir(run, other, label="train")
        err = capsys.readouterr().err
        assert not ckpt.exists(), what
        assert err.count("\n") == 1 and "starting fresh" in err and f"its {what} differ" in err

    (run / "run_key").write_text("0123abcd")  # the old format: a bare hash
    ckpt.parent.mkdir(exist_ok=True)
    ckpt.write_bytes(b"weights")
    runtime.prepare_run_dir(run, parts, label="train")
    assert not ckpt.exists() and "no readable run key" in capsys.readouterr().err


def test_checkpoint_bytes_depend_on_values_not_object_sharing(tmp_path):
    """A resumed run rebuilds its state with torch.load, which shares objects differently; the
    saved file must still be the same bytes."""
    from unmask.training.checkpoint import save_checkpoint

    w = torch.arange(6.0).reshape(2, 3)
    betas = (0.9, 0.95)
    shared = {"model": OrderedDict(w=w, v=w[0]),
              "groups": [{"betas": betas, "name": "decay"}, {"betas": betas, "name": "decay"}]}
    buf = io.BytesIO()
    torch.save(shared, buf)
    buf.seek(0)
    rebuilt = torch.load(buf, weights_only=True)
    rebuilt["groups"][1]["betas"] = (0.9, 0.95)  # equal value, another object
    rebuilt["groups"][1]["name"] = "".join(["de", "cay"])
    a = save_checkpoint(shared, tmp_path / "a.pt").read_bytes()
    b = save_checkpoint(rebuilt, tmp_path / "b.pt").read_bytes()
    assert a == b
    c = save_checkpoint({**shared, "model": OrderedDict(w=w + 1, v=w[0])}, tmp_path / "c.pt")
    assert c.read_bytes() != a  # the bytes still follow the values
