"""Params files for any schema: read the YAML, apply ``key=value`` overrides, validate with a
pydantic model and turn the first failure into one :class:`~unmask.errors.ConfigError` line that
names the file (or the override) and the dotted key::

    params.yaml: unknown key 'train.lr_rate' (did you mean 'train.lr'?)
    override: sample.temperature must be > 0 (got -1)

Schema-free on purpose: :func:`unmask.config.load_params` applies it to the default pipeline's
:class:`~unmask.config.Params` and to every pipeline's own params class.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from unmask.dicts import deep_merge
from unmask.errors import ConfigError

__all__ = ["parse_overrides", "load", "read_params_file", "validate", "validation_error",
           "describe_error"]


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["train.steps=10", "sample.method=euler"]`` or ``{"train.steps": 10}`` (dotted or nested
    keys) → a nested dict. String values are parsed as YAML (``10`` → int, ``[1, 2]`` → list)."""
    out: dict[str, Any] = {}
    if items is None:
        return out
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. train.steps=100)")
            try:
                pairs.append((key.strip(), yaml.safe_load(value)))
            except yaml.YAMLError:
                raise ConfigError(f"override {item!r}: value is not valid YAML") from None
    for key, value in pairs:
        if isinstance(value, Mapping):
            value = parse_overrides({f"{key}.{k}": v for k, v in value.items()})
            deep_merge(out, value)
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node[leaf] = value
    return out


def load(
    path: str | Path, overrides: Iterable[str] | Mapping[str, Any] | None,
    schema: type[BaseModel],
    *,
    what: str = "params file",
) -> Any:
    """Read ``path``, merge ``overrides`` (:func:`parse_overrides`) and validate the result with
    ``schema``. Raises :class:`ConfigError` (one line naming the file or override, and the
    key); ``what`` names the kind of file in the not-found message."""
    raw = read_params_file(path, what)
    extra = parse_overrides(overrides)
    return validate(deep_merge(raw, extra), source=str(path), overridden=_dotted(extra),
                    schema=schema)


def read_params_file(path: str | Path, what: str = "params file") -> dict[str, Any]:
    """The top-level mapping of a YAML params file; a missing file, invalid YAML (with its line)
    or a non-mapping is one :class:`ConfigError` line naming the file. Every pipeline's params
    loader reads its file through this."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def validation_error(path: str | Path, e: ValidationError) -> ConfigError:
    """The first pydantic error as one :class:`ConfigError` line ``<file>: <dotted.key>: msg``
    (for a model validated on its own; :func:`validate` adds suggestions)."""
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return ConfigError(f"{path}: {key}: {msg}" if key else f"{path}: {msg}")


def validate(
    data: Mapping[str, Any],
    source: str = "params",
    overridden: set[str] | None = None,
    *,
    schema: type[BaseModel],
) -> Any:
    """Validate an already-parsed params mapping with ``schema`` (see :func:`load`). An error on
    a key in ``overridden`` is attributed to the override rather than to ``source``."""
    try:
        return schema.model_validate(dict(data))
    except ValidationError as e:
        # The first error only: later ones are often consequences of it (a union's other
        # members, model fields that could not be derived from an invalid tokenizer section).
        key, msg = describe_error(e.errors()[0], schema)
        hit = any(key == o or key.startswith(f"{o}.") for o in overridden or ())
        where = "override" if hit else source
        raise ConfigError(f"{where}: {msg}") from None
    except ValueError as e:  # raised by a 'before' validator
        raise ConfigError(f"{source}: {e}") from None


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in tree.items():
        out |= _dotted(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}"}
    return out


# Union members and validator wrappers appear in pydantic's error locations: drop them.
_TYPE_TAG = re.compile(r"^(int|float|str|bool|none|(tuple|list|dict|function-\w+)\[.*\])$")
_OPS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def describe_error(e: Mapping[str, Any], schema: type[BaseModel]) -> tuple[str, str]:
    """(dotted key, one-line message) of a pydantic error of ``schema``; an unknown key
    suggests the closest valid one of its section."""
    loc = [str(p) for p in e["loc"] if not _TYPE_TAG.match(str(p))]
    key = ".".join(loc)
    return key, _message(e, loc, key, schema)


def _message(e: Mapping[str, Any], loc: list[str], key: str, schema: type[BaseModel]) -> str:
    kind, ctx, got = e["type"], e.get("ctx") or {}, e.get("input")
    if kind == "extra_forbidden":
        parent, leaf = loc[:-1], loc[-1]
        hint = ""
        fields = _fields_at(parent, schema)
        if fields:
            close = _closest(leaf, fields)
            if close:
                hint = f" (did you mean '{'.'.join([*parent, close])}'?)"
            else:
                hint = f" (valid keys: {', '.join(sorted(fields))})"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return f"{key} is required"
    if kind in _OPS:
        field, op = _OPS[kind]
        return f"{key} must be {op} {_num(ctx.get(field))} (got {_num(got)})"
    if kind == "literal_error":
        return f"{key} must be one of {ctx.get('expected')} (got {got!r})"
    msg = str(e["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if not key:
        return msg
    if kind in ("value_error", "assertion_error"):
        # A section validator naming its field ("'schedule': ...") → "train.schedule: ...".
        m = re.match(r"^'(\w+)': (.*)$", msg)
        if m:
            return f"{key}.{m.group(1)}: {m.group(2)}"
        return f"{key}: {msg}"
    return f"{key}: {msg[:1].lower() + msg[1:]} (got {got!r})"


def _num(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _closest(key: str, fields: list[str]) -> str | None:
    """The field a mistyped key most likely meant: a close spelling, else a shared prefix
    (``lr_rate`` → ``lr``)."""
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    if close:
        return close[0]
    head = key.split("_")[0]
    prefixed = [f for f in fields if key.startswith(f) or f.startswith(key) or f == head]
    return max(prefixed, key=len) if prefixed else None


def _fields_at(loc: list[str], schema: type[BaseModel]) -> list[str]:
    """Field names of the model at a dotted location inside ``schema``."""
    model: Any = schema
    for part in loc:
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    return list(model.model_fields) if _is_model(model) else []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_in(tp: Any) -> Any:
    if _is_model(tp):
        return tp
    for arg in typing.get_args(tp):
        if _is_model(arg):
            return arg
    return None
