"""Run-time determinism shared by every stage entry point: threads, seeds, code fingerprints,
run keys of resumable runs and wall-clock records kept out of DVC-hashed outputs.

Why one module: a stage is a pure function of (params, code, data) on a given machine only if
every entry point seeds the same way, uses the same thread count and never resumes a run of
other code. Bottom-level on purpose: it imports nothing from :mod:`unmask` at module load.

* Threads: ``$UNMASK_THREADS`` (a positive integer) sets torch's intra-op threads; unset means
  :data:`DEFAULT_THREADS` = 1 — never the machine's load or core count, so the same command gives
  the same floating-point reduction order (and bits) on any machine of the same type.
* Code fingerprint: sha256 over the files a stage can execute or read — the static import
  closure (:func:`module_closure`: module- and function-level imports, ``import_module``
  literals) of its entry modules plus package data beside them, the same walker ``unmask dvc
  deps`` declares DVC deps from — plus the torch version. It depends only on files, not on what
  the current process happened to import, so an in-process rerun and a CLI rerun agree.
* Environment: :func:`service_env` — this process's environment with every tool's telemetry
  off (:data:`TELEMETRY_OFF`), for the services, DVC and Ray processes anything starts.
* Run key: a resumable run directory holds ``run_key`` (JSON: one hash per part — params, data,
  code); a directory whose parts differ is wiped with a one-line message naming what changed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "THREADS_ENV",
    "DEFAULT_THREADS",
    "threads",
    "configure_threads",
    "seed_everything",
    "ImportRef",
    "module_file",
    "module_name",
    "import_refs",
    "loaded_modules",
    "lazy_exports",
    "lazy_table",
    "module_closure",
    "closure_files",
    "code_fingerprint",
    "run_key_parts",
    "prepare_run_dir",
    "write_timings",
    "read_timings",
    "git_commit",
    "TELEMETRY_OFF",
    "service_env",
]

THREADS_ENV = "UNMASK_THREADS"
DEFAULT_THREADS = 1
_PKG = "unmask"
_ROOT = Path(__file__).resolve().parent


#: Environment that turns telemetry off for every tool a stage, test or
#: the stack starts (offline, nothing may phone home).
TELEMETRY_OFF: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
}


def service_env(extra: Mapping[str, str] | None = None,
                base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) + telemetry off + ``extra``."""
    env = dict(os.environ if base is None else base)
    env.update(TELEMETRY_OFF)
    env.update(extra or {})
    return env


def threads() -> int:
    """The intra-op thread count every stage uses: ``$UNMASK_THREADS`` or 1."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"${THREADS_ENV}={raw!r}: expected a positive integer thread count")
    return n


def configure_threads() -> int:
    """Set torch's intra-op threads to :func:`threads` (call once at a stage's entry)."""
    import torch  # why: torch is slow to import

    n = threads()
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> None:
    """Seed the global torch (CPU + CUDA), python and numpy RNGs — what ``nn.Module``
    initialisation and dropout draw from. Call right before building a model."""
    import torch  # why: torch is slow to import

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@dataclass(frozen=True)
class ImportRef:
    """One import in a module's source, found without importing it.

    ``module`` is absolute (``import a.b`` → ``a.b``; ``from a import b`` → ``a``, relative
    imports resolved); ``names`` are the names a ``from`` import takes (each may be a submodule);
    ``scope`` is ``"module"`` (runs on import, class bodies included), ``"function"`` (runs when
    the function is called) or ``"dynamic"`` (``importlib.import_module("literal")``).
    ``if TYPE_CHECKING:`` blocks are skipped: they never run."""

    module: str
    names: tuple[str, ...]
    scope: str
    line: int
    end_line: int


def module_file(name: str, src: Path | None = None) -> Path | None:
    """Source file of module ``name`` of the package under ``src`` (default: this one), or
    None. No import."""
    src = _ROOT if src is None else src
    parts = name.split(".")
    if parts[0] != _PKG:
        return None
    base = src.joinpath(*parts[1:])
    for cand in (base.with_suffix(".py") if len(parts) > 1 else None, base / "__init__.py"):
        if cand is not None and cand.is_file():
            return cand
    return None


def module_name(path: Path, src: Path | None = None) -> str:
    """``src/a/b.py`` → ``unmask.a.b``; ``src/a/__init__.py`` → ``unmask.a``."""
    rel = Path(path).relative_to(_ROOT if src is None else src).with_suffix("")
    parts = [_PKG, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_refs(path: Path, src: Path | None = None) -> list[ImportRef]:
    """Every import in the source file ``path`` of the package under ``src``, in file order."""
    path = Path(path)
    package = module_name(path, src)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    out: list[ImportRef] = []

    def visit(node: ast.AST, scope: str) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the if-body is for annotations only: never run
                visit(child, scope)
            return
        span = (getattr(node, "lineno", 0), getattr(node, "end_lineno", 0) or 0)
        if isinstance(node, ast.Import):
            out.extend(ImportRef(a.name, (), scope, *span) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                up = package.split(".")
                mod = ".".join(up[: len(up) - node.level + 1] + ([mod] if mod else []))
            names = tuple(a.name for a in node.names if a.name != "*")
            out.append(ImportRef(mod, names, scope, *span))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"):
            out.append(ImportRef(node.args[0].value, (), "dynamic", *span))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            scope = "function"
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), "module")
    return sorted(out, key=lambda r: (r.line, r.module))


def lazy_exports(package: str, table: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for a package whose heavy parts load on first
    use: ``table`` maps a submodule to the names the package re-exports from it. Written in the
    package ``__init__`` as ``_LAZY = {...}`` (a literal, which :func:`loaded_modules` reads, so
    ``from pkg import name`` still counts the submodule in import closures and DVC deps)."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__


def lazy_table(init: Path) -> dict[str, str]:
    """``{name: submodule}`` from a package ``__init__``'s literal ``_LAZY = {module: names}``
    ({} without one)."""
    return _lazy_table(init, init.stat().st_mtime_ns)


@lru_cache(maxsize=256)
def _lazy_table(path: Path, mtime_ns: int) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_LAZY"):
            try:
                table = ast.literal_eval(node.value)
                ok = isinstance(table, dict) and all(
                    isinstance(m, str) and isinstance(ns, tuple | list)
                    and all(isinstance(n, str) for n in ns) for m, ns in table.items())
            except ValueError:
                ok = False
            if not ok:  # a table the walker cannot read would drop deps silently
                raise ValueError(f"{path}: _LAZY must be a literal {{'module': ('name', ...)}} "
                                 "(see unmask.runtime.lazy_exports)")
            return {name: module for module, names in table.items() for name in names}
    return {}


def loaded_modules(ref: ImportRef, src: Path | None = None) -> set[str]:
    """The ``unmask`` modules that executing ``ref`` may run: the named module, each package
    above it (importing ``a.b.c`` runs ``a`` and ``a.b`` first), each ``from`` name that is a
    submodule, and the submodule a lazily exported name (:func:`lazy_exports`) loads."""
    named = [ref.module, *(f"{ref.module}.{n}" for n in ref.names)]
    init = module_file(ref.module, src) if ref.names else None
    if init is not None and init.name == "__init__.py":
        lazy = lazy_table(init)
        named += [lazy[n] for n in ref.names if n in lazy]
    out: set[str] = set()
    for mod in named:
        bits = mod.split(".")
        out.update(".".join(bits[: i + 1]) for i in range(len(bits)))
    return {m for m in out if module_file(m, src) is not None}


def module_closure(entries: Iterable[str], src: Path | None = None) -> list[str]:
    """Sorted names of the ``unmask`` modules reachable from ``entries`` by imports of any scope
    (module, function, ``importlib.import_module`` literals; not ``TYPE_CHECKING`` blocks)."""
    seen: set[str] = set()
    todo = list(entries)
    for e in todo:
        if module_file(e, src) is None:
            raise ValueError(f"code fingerprint: {e!r} is not a module of the {_PKG} package")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, src)
        assert path is not None
        for ref in import_refs(path, src):
            todo.extend(loaded_modules(ref, src) - seen)
    return sorted(seen)


def closure_files(entries: Iterable[str], src: Path | None = None) -> list[Path]:
    """The files of :func:`module_closure` plus the package data they read — a non-Python file
    beside a module of the closure whose name a string in that module's code contains (e.g.
    ``reporting/references.yaml``, read by ``claims.py``; not by ``images.py`` beside it): what
    a stage runs or reads, and what ``unmask dvc deps`` declares."""
    modules = [module_file(m, src) for m in module_closure(entries, src)]
    files = {m for m in modules if m is not None}
    for mod in list(files):
        literals = _string_literals(mod)
        files |= {p for p in mod.parent.iterdir()
                  if p.is_file() and p.suffix not in (".py", ".pyc", ".pyo")
                  and any(p.name in lit for lit in literals)}
    return sorted(files)


def _string_literals(path: Path) -> list[str]:
    """The string constants of a module's code (docstrings left out: naming a file in prose
    does not read it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


@lru_cache(maxsize=64)
def _fingerprint(entries: tuple[str, ...], stamp: tuple[tuple[str, float, int], ...]) -> str:
    import torch  # why: torch is slow to import

    h = hashlib.sha256(f"torch {torch.__version__}\n".encode())
    for path in closure_files(entries, _ROOT):
        h.update(f"{path.relative_to(_ROOT).as_posix()}\n".encode())
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def code_fingerprint(*entries: str) -> str:
    """sha256 of the torch version and the source of every ``unmask`` module the entry modules
    (e.g. ``"unmask.stages.train"``) can import — the code a stage runs. Cached per set of
    file modification times, so an edit between two calls is seen."""
    if not entries:
        raise ValueError("code_fingerprint needs at least one entry module")
    files = sorted(f for f in _ROOT.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    stamp = tuple((str(f), f.stat().st_mtime, f.stat().st_size) for f in files)
    return _fingerprint(tuple(sorted(entries)), stamp)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_key_parts(*, params: Any, data: Any, code: str) -> dict[str, str]:
    """The parts of a run key: a hash of ``params`` (JSON-able), of ``data`` (e.g. the token
    shards' hash) and the code fingerprint."""
    return {"params": _digest(params), "data": _digest(data), "code": code}


def prepare_run_dir(run_dir: str | Path, parts: Mapping[str, str], *, label: str) -> str:
    """Make ``run_dir`` resumable only by the run ``parts`` describe: if it holds a run of
    other params, data or code (or no readable ``run_key``), wipe it, printing one line that
    names what changed. Writes the ``run_key`` file and returns the combined key."""
    run_dir = Path(run_dir)
    key_file = run_dir / "run_key"
    parts = dict(parts)
    key = _digest(parts)
    if run_dir.exists():
        try:
            old = json.loads(key_file.read_text())
            old_parts = old["parts"] if isinstance(old, dict) else None
        except (OSError, ValueError, KeyError, TypeError):
            old_parts = None
        if old_parts is None:
            why = "it has no readable run key"
        else:
            changed = sorted(k for k in set(parts) | set(old_parts)
                             if parts.get(k) != old_parts.get(k))
            why = f"its {', '.join(changed)} differ" if changed else ""
        if why:
            has_ckpts = any((run_dir / "checkpoints").glob("*.pt"))
            if has_ckpts:
                print(f"{label}: starting fresh in {run_dir}: {why} from this run's "
                      "(its checkpoints are not resumed)", file=sys.stderr)
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps({"key": key, "parts": parts}, sort_keys=True) + "\n")
    return key


def write_timings(path: str | Path, values: Mapping[str, Any]) -> Path:
    """Write wall-clock values (seconds, throughput) to ``path``, a file that no ``dvc.yaml``
    declares (by convention ``runs/timings/<stage>.json``, git-ignored): DVC-hashed outputs
    must stay a pure function of params, code and data, so repeated runs leave ``dvc.lock``
    unchanged. Timings also go to MLflow with the stage's run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n")
    return path


def read_timings(path: str | Path) -> dict[str, Any]:
    """What :func:`write_timings` wrote at ``path``, or {} when absent (e.g. a fresh clone)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def git_commit(cwd: str | Path | None = None) -> str:
    """The working tree's commit (``+dirty`` when tracked files have uncommitted changes), or
    ``'unknown'`` outside a git checkout. Recorded with every run; never part of a DVC output."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10, cwd=cwd).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, cwd=cwd).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
