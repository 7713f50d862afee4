"""Layers without cycles (issue 19 item 3), read from the sources with ``ast`` — nothing is
imported, so a cycle that Python happens to tolerate (or a lazy import that dodges one) is still
found.

* The graph: an edge ``a → b`` for each *module-level* import in ``a`` of the ``unmask`` module
  ``b`` (relative imports resolved; ``from pkg import name`` counts as ``pkg.name`` when that is
  a submodule, else as ``pkg``; ``if TYPE_CHECKING:`` blocks skipped). Importing ``a.b.c`` also
  runs ``a/__init__`` and ``a/b/__init__``, but that is not an edge: a package's ``__init__``
  importing its own submodules is normal, and a submodule depends on its package's ``__init__``
  only if it imports the package by name.
* Layers: the bottom modules import no ``unmask`` module at all; only orchestration, the CLI and
  stage modules import :mod:`unmask.orchestration` or :mod:`unmask.stages` (orchestration may
  use stages, never the reverse).
* Function-level imports of ``unmask`` modules exist only with a ``# why`` comment on the line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

from unmask.runtime import (
    ImportRef,
    import_refs,
    lazy_table,
    module_closure,
    module_file,
    module_name,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "unmask"

#: import nothing from unmask (any scope)
BOTTOM = ("unmask.errors", "unmask.runtime", "unmask.dicts", "unmask.paths", "unmask.schedules")
#: the command line: ``unmask`` (typer app), its sub-command modules (``*.cli``) and ``unmask dvc``,
#: which maps a stage name to the module that registers it
CLI = ("unmask.cli", "unmask.dvcdeps")


def _is_cli(name: str) -> bool:
    return name in CLI or name.endswith(".cli")


def _modules(src: Path) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted(src.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _targets(ref: ImportRef, src: Path) -> set[str]:
    """The ``unmask`` modules ``ref`` names (not the packages above them); a name a package
    exports lazily (``_LAZY``, :func:`unmask.runtime.lazy_exports`) counts as its submodule."""
    init = module_file(ref.module, src)
    if init is None:
        return set()
    if not ref.names:
        return {ref.module}
    lazy = lazy_table(init) if init.name == "__init__.py" else {}
    found = set()
    for n in ref.names:
        if module_file(f"{ref.module}.{n}", src) is not None:
            found.add(f"{ref.module}.{n}")
        else:  # an attribute of the package itself (and, if lazy, the submodule it loads)
            found |= {ref.module, *([lazy[n]] if n in lazy else [])}
    return found


def import_graph(src: Path, scopes: tuple[str, ...] = ("module",)) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the package under ``src``, for imports in
    ``scopes``."""
    graph: dict[str, set[str]] = {}
    for name, path in _modules(src).items():
        graph[name] = set()
        for ref in import_refs(path, src):
            if ref.scope in scopes:
                graph[name] |= _targets(ref, src) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def _cycle_path(graph: dict[str, set[str]], comp: list[str]) -> str:
    """One cycle through ``comp[0]`` inside the component, as ``a → b → a`` (breadth-first)."""
    start, members = comp[0], set(comp)
    prev: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return " → ".join([*reversed(path), start])
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return " ↔ ".join(comp)


def cycle_report(src: Path) -> list[str]:
    graph = import_graph(src)
    return [_cycle_path(graph, comp) for comp in cycles(graph)]


def _is_stage_module(name: str) -> bool:
    """``unmask.stages[.*]`` and a family's ``unmask.<family>.stages[.*]`` (module or package)."""
    return "stages" in name.split(".")[1:3]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_violations(src: Path) -> list[str]:
    """Imports (any scope) that break the layer order, one line each."""
    graph = import_graph(src, ("module", "function", "dynamic"))
    bad = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            if a in BOTTOM and not _within(b, a):
                bad.append(f"{a} is a bottom module but imports {b}")
            if _within(b, "unmask.orchestration") and not (
                    _within(a, "unmask.orchestration") or _is_cli(a) or _is_stage_module(a)):
                bad.append(f"{a} imports {b}: only orchestration, cli and stages may")
            if _within(b, "unmask.stages") and not (
                    _within(a, "unmask.orchestration") or _is_cli(a) or _is_stage_module(a)):
                bad.append(f"{a} imports {b}: only stage modules, orchestration and cli may")
    return bad


def _comment_lines(text: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.COMMENT}


def unexplained_lazy_imports(src: Path) -> list[str]:
    """Function-level imports of ``unmask`` modules without a comment on their lines."""
    out = []
    for path in _modules(src).values():
        comments = _comment_lines(path.read_text(encoding="utf-8"))
        for ref in import_refs(path, src):
            if ref.scope != "function" or not _targets(ref, src):
                continue
            if not comments & set(range(ref.line, ref.end_line + 1)):
                rel = path.relative_to(src.parent)
                out.append(f"{rel}:{ref.line}: from {ref.module} import "
                           f"{', '.join(ref.names) or '…'}")
    return out


# ---------------------------------------------------------------------------------------------
# the real package


def test_no_import_cycles_in_unmask():
    found = cycle_report(SRC)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_layer_order():
    bad = layer_violations(SRC)
    assert not bad, "\n".join(bad)


def test_function_level_unmask_imports_say_why():
    lazy = unexplained_lazy_imports(SRC)
    assert not lazy, (f"{len(lazy)} function-level imports of unmask modules without a "
                      "'# why' comment (move them to the top of the module):\n" + "\n".join(lazy))


# ---------------------------------------------------------------------------------------------
# the checks themselves, on small planted packages


def _package(root: Path, files: dict[str, str]) -> Path:
    src = root / "unmask"
    for rel, text in {"__init__.py": "", **files}.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return src


def test_a_planted_cycle_is_found_and_named(tmp_path):
    src = _package(tmp_path, {
        "orchestration/__init__.py": "from .ddp import run\n",  # a package importing its own
        "orchestration/ddp.py": "from unmask.orchestration.env import setup\n",
        "orchestration/env.py": "from . import trials\n",  # `from pkg import submodule`
        "orchestration/trials.py": "from .ddp import run\n",
        "leaf.py": "import unmask.orchestration.env\n",
    })
    assert cycles(import_graph(src)) == [[
        "unmask.orchestration.ddp", "unmask.orchestration.env", "unmask.orchestration.trials"]]
    assert cycle_report(src) == ["unmask.orchestration.ddp → unmask.orchestration.env → "
                                 "unmask.orchestration.trials → unmask.orchestration.ddp"]
    with pytest.raises(AssertionError, match="ddp → unmask.orchestration.env"):
        found = cycle_report(src)
        assert not found, "import cycles:\n" + "\n".join(found)


def test_what_is_not_a_cycle(tmp_path):
    src = _package(tmp_path, {
        # a package __init__ re-exporting its submodules, which import siblings
        "training/__init__.py": "from .loop import train\nfrom .config import TrainConfig\n",
        "training/loop.py": "from unmask.training.config import TrainConfig\n",
        "training/config.py": "from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from unmask.training.loop import train\n",
        # a cycle broken by a function-level import is not a module-level edge
        "a.py": "import unmask.b\n",
        "b.py": "def f():\n    import unmask.a  # why: planted\n",
    })
    assert cycles(import_graph(src)) == []
    # the same package where the submodule imports its package by name: a real cycle
    (src / "training" / "config.py").write_text("from unmask.training import helper\n")
    (src / "training" / "loop.py").write_text("from unmask.training import TrainConfig\n")
    (src / "training" / "helper.py").write_text("")
    assert cycles(import_graph(src)) == [["unmask.training", "unmask.training.loop"]]
    # function scope closes the a ↔ b cycle only when function imports count
    assert cycles(import_graph(src, ("module", "function"))) == [
        ["unmask.a", "unmask.b"], ["unmask.training", "unmask.training.loop"]]


def test_planted_layer_violations_are_named(tmp_path):
    src = _package(tmp_path, {
        "errors.py": "def f():\n    from unmask.paths import ROOT  # why: planted\n",
        "paths.py": "",
        "metrics/__init__.py": "from unmask.orchestration import sweep\n",
        "orchestration/__init__.py": "",
        "orchestration/sweep.py": "from unmask.stages import run\n",
        "stages/__init__.py": "",
        "prime/stages.py": "import unmask.stages\n",
        "emigm/stages/train.py": "from unmask.stages import stage\n",
        "emigm/stage_helpers.py": "from unmask.stages import stage\n",
        "tracking.py": "import importlib\nimportlib.import_module('unmask.stages')\n",
        "cli.py": "from unmask.orchestration import sweep\n",
    })
    assert layer_violations(src) == [
        "unmask.emigm.stage_helpers imports unmask.stages: only stage modules, orchestration "
        "and cli may",
        "unmask.errors is a bottom module but imports unmask.paths",
        "unmask.metrics imports unmask.orchestration.sweep: only orchestration, cli and "
        "stages may",
        "unmask.tracking imports unmask.stages: only stage modules, orchestration and cli may",
    ]


def test_planted_lazy_imports_need_a_comment(tmp_path):
    src = _package(tmp_path, {
        "models.py": "",
        "a.py": """
            import unmask.models
            def f():
                import json
                from unmask import models
                from unmask.models import (  # only when called: heavy
                    x,
                )
                from unmask.models import (
                    y,
                )
            """,
    })
    assert unexplained_lazy_imports(src) == [
        "unmask/a.py:5: from unmask import models",
        "unmask/a.py:9: from unmask.models import y",
    ]


def test_lazy_package_exports_count_as_their_submodules(tmp_path):
    src = _package(tmp_path, {
        "training/__init__.py": """
            from unmask.runtime import lazy_exports
            from unmask.training.config import TrainConfig
            _LAZY = {"unmask.training.loop": ("train",)}
            __getattr__, __dir__ = lazy_exports(__name__, _LAZY)
            """,
        "training/config.py": "TrainConfig = dict\n",
        "training/loop.py": "from unmask.training import TrainConfig\ntrain = print\n",
        "runtime.py": "",
        "schema.py": "from unmask.training import TrainConfig\n",
        "stage.py": "from unmask.training import train\n",
    })
    assert "unmask.training.loop" not in module_closure(["unmask.schema"], src)
    assert "unmask.training.loop" in module_closure(["unmask.stage"], src)
    graph = import_graph(src)
    assert graph["unmask.stage"] == {"unmask.training", "unmask.training.loop"}
    assert graph["unmask.training"] == {"unmask.runtime", "unmask.training.config"}
    assert cycles(graph) == []
    # a table the walker cannot read (the name → module direction) is an error, not silently
    # fewer deps
    (src / "training" / "__init__.py").write_text('_LAZY = {"train": "unmask.training.loop"}\n')
    with pytest.raises(ValueError, match=r"training/__init__.py: _LAZY must be a literal"):
        module_closure(["unmask.stage"], src)


def test_reading_params_runs_no_model_training_or_sampler_code():
    """The real packages: ``unmask.config`` (every stage's schema) loads only schema modules,
    in a fresh interpreter and in the static closure, and the lazy names still resolve."""
    heavy = ["unmask.training.loop", "unmask.training.checkpoint", "unmask.models.transformer",
             "unmask.sampling.sampler", "unmask.corruption", "unmask.losses"]
    code = ("import json, sys, unmask.config\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('unmask'))\n"
            "from unmask.training import train, EMA\n"
            "from unmask.models import Transformer\n"
            "from unmask.sampling import sample, Guidance\n"
            "import unmask.training.loop, unmask.models.transformer, unmask.sampling.sampler\n"
            "assert train is unmask.training.loop.train\n"
            "assert Transformer is unmask.models.transformer.Transformer\n"
            "assert sample is unmask.sampling.sampler.sample\n"
            "assert 'train' in dir(unmask.training)\n"
            "print(json.dumps(loaded))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=SRC.parents[1], env={**os.environ, "PYTHONPATH": str(SRC.parent)})
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert "unmask.config" in loaded and not set(heavy) & set(loaded)
    assert not set(heavy) & set(module_closure(["unmask.config"]))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        import unmask.training

        unmask.training.nope  # noqa: B018
