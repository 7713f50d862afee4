"""Pipeline stages: one way to define, register and run a stage, for every pipeline.

A stage is a function over one typed params object, registered once with :func:`stage`::

    @stage("prime.train", params=PrimeParams)
    def train(p: PrimeParams, ell: int) -> dict: ...

and every ``dvc.yaml`` — the root one and each ``pipelines/<exp>/dvc.yaml`` — runs stages the
same way::

    python -m unmask.stages prime.train --ell 2 [--params params.yaml] [--set key=value ...]

Names: the default pipeline's stages are bare (``prepare``, ``train``, …); each paper family's
carry its prefix (``experiment.``, ``prime.``, ``emigm.``, ``joint.``, ``video.``).
:data:`FAMILIES` routes a name to the one module that registers it, so running a stage imports
only that module's closure — which is also what ``unmask dvc deps`` declares as its code deps.
Keyword parameters of the function after the params object become options (``ell: int`` →
``--ell 2``); one without a default is required.

The runner (:func:`run`) is the same for all: ``$UNMASK_THREADS`` torch threads (default 1,
:mod:`unmask.runtime`); params read, overridden and validated by
:func:`unmask.paramsfile.load` with the stage's schema; a configured MLflow server must
answer before any work; the stage runs under :func:`unmask.stages.guard.stage_guard`
(interrupted upstream stages are errors, an interrupted run never passes for complete); a user
error (:mod:`unmask.errors`) is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import BaseModel

from unmask import paramsfile
from unmask.errors import ConfigError, user_errors
from unmask.runtime import configure_threads
from unmask.stages.guard import stage_guard
from unmask.tracking import make_tracker

__all__ = ["Stage", "stage", "REGISTRY", "FAMILIES", "DEFAULT", "module_of", "resolve", "run",
           "main"]

# the default pipeline (root dvc.yaml), in DAG order
DEFAULT = ("prepare", "train-tokenizer", "tokenize", "train", "sample", "evaluate", "report")

# prefix → module that registers the family's stages; a bare name lives in unmask.stages.<name>
FAMILIES: dict[str, str] = {
    "experiment": "unmask.stages.experiment",
    "prime": "unmask.prime.stages",
    "emigm": "unmask.emigm.stages",
    "joint": "unmask.joint.stages",
    "video": "unmask.video.stages",
}


@dataclass(frozen=True)
class Stage:
    """A registered stage: ``fn(params, **options)`` over one ``schema`` params object."""

    name: str
    fn: Callable[..., Any]
    schema: type[BaseModel]
    options: dict[str, tuple[type, Any]] = field(default_factory=dict)  # name → (type, default)
    doc: str = ""


REGISTRY: dict[str, Stage] = {}
_REQUIRED = inspect.Parameter.empty


def stage(
    name: str, *, params: type[BaseModel]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as stage ``name`` reading ``params``; its keyword parameters after the
    first become command-line options (their annotation is the type, their default the
    default). Registering a name twice is an error: one stage, one definition."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise RuntimeError(f"stage {name!r} registered twice ({REGISTRY[name].fn} and {fn})")
        hints = get_type_hints(fn)
        opts = {
            p.name: (hints.get(p.name, str), p.default)
            for p in list(inspect.signature(fn).parameters.values())[1:]
        }
        module_doc = inspect.getdoc(sys.modules.get(fn.__module__)) or ""
        doc = " ".join((inspect.getdoc(fn) or module_doc).split("\n\n")[0].split())
        REGISTRY[name] = Stage(name, fn, params, opts, doc)
        return fn

    return deco


_SRC = Path(__file__).resolve().parents[2]  # the folder holding the unmask package


def _exists(module: str) -> bool:
    """Whether ``module`` has a source file (no import: a package's ``__init__`` may be heavy)."""
    base = _SRC.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def module_of(name: str) -> str:
    """The module that registers stage ``name`` — found without importing anything, so that
    ``unmask dvc deps`` gives each stage the code of its own module only. A family is a module
    or a package (:data:`FAMILIES`); in a package, stage ``fam.tokenize-discrete`` lives in
    ``<package>.tokenize_discrete``, else ``<package>.tokenize``, else the package itself.
    A bare name is a default-pipeline stage: ``unmask.stages.<name>``."""
    prefix, dot, rest = name.partition(".")
    if not dot:
        return f"unmask.stages.{name.replace('-', '_')}"
    if prefix not in FAMILIES:
        raise ConfigError(f"stage {name!r}: unknown family {prefix!r}; "
                          f"valid: {', '.join(FAMILIES)}")
    base = FAMILIES[prefix]
    for stem in (rest.replace("-", "_"), rest.split("-")[0].replace("-", "_")):
        if stem.isidentifier() and _exists(f"{base}.{stem}"):
            return f"{base}.{stem}"
    return base


def _family_modules(family: str | None = "*") -> list[str]:
    """The modules that may register stages of ``family`` (None: the default pipeline's;
    ``"*"``: all), for ``--list`` and error messages."""
    mods = [module_of(n) for n in DEFAULT] if family in (None, "*") else []
    for fam, base in FAMILIES.items():
        if family not in ("*", fam):
            continue
        mods.append(base)
        pkg = _SRC.joinpath(*base.split("."))
        if (pkg / "__init__.py").is_file():
            mods += [f"{base}.{f.stem}" for f in sorted(pkg.glob("*.py")) if f.stem != "__init__"]
    return mods


def resolve(name: str) -> Stage:
    """The registered :class:`Stage` ``name``, importing its module first if needed."""
    if name in REGISTRY:
        return REGISTRY[name]
    module = module_of(name)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
    if name not in REGISTRY:
        prefix = name.partition(".")[0] + "." if "." in name else ""
        for mod in _family_modules(prefix[:-1] or None):
            importlib.import_module(mod)
        here = sorted(s for s in REGISTRY if s.startswith(prefix) and ("." in s) == bool(prefix))
        raise ConfigError(f"unknown stage {name!r}; valid: {', '.join(here) or 'none'}")
    return REGISTRY[name]


def run(name: str, params: BaseModel, **options: Any) -> Any:
    """Run stage ``name`` as its command line does, with already-loaded ``params``: a configured
    MLflow server must answer first, then the stage runs under its guard."""
    st = resolve(name)
    tracking = getattr(params, "tracking", None)
    if tracking is not None and getattr(tracking, "enabled", False):
        make_tracker(tracking).check()
    with stage_guard(name, options=options):
        return st.fn(params, **options)


def _parser(st: Stage) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m unmask.stages {st.name}", description=st.doc)
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a param, e.g. --set train.steps=100 (repeatable)")
    for opt, (tp, default) in st.options.items():
        kind = tp if tp in (int, float, str) else str
        if default is _REQUIRED:
            ap.add_argument(f"--{opt.replace('_', '-')}", dest=opt, type=kind, required=True)
        else:
            ap.add_argument(f"--{opt.replace('_', '-')}", dest=opt, type=kind, default=default)
    return ap


def main(argv: Sequence[str] | None = None) -> Any:
    """``python -m unmask.stages NAME [--params FILE] [--set KEY=VALUE ...] [--OPTION V ...]``;
    ``--list`` prints every registered stage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--list"):
        for module in _family_modules():
            importlib.import_module(module)
        width = max(len(n) for n in REGISTRY)
        print("usage: python -m unmask.stages NAME [--params FILE] [--set KEY=VALUE ...]\n")
        for n, st in sorted(REGISTRY.items()):
            opts = " ".join(f"--{o.replace('_', '-')}" for o in st.options)
            line = f"{opts + ' ' if opts else ''}{st.doc}"
            print(f"  {n:<{width}}  {line[:100] + '…' if len(line) > 100 else line}")
        return None
    with user_errors():
        st = resolve(argv[0])
        args = _parser(st).parse_args(argv[1:])
        configure_threads()  # $UNMASK_THREADS or 1: never the machine's load
        params = paramsfile.load(Path(args.params), args.overrides, st.schema)
        return run(st.name, params, **{o: getattr(args, o) for o in st.options})
