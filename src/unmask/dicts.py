"""Small dictionary helpers shared by the params loaders and the config dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["deep_merge", "dataclass_from_dict"]

T = TypeVar("T")


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into ``base`` in place (nested mappings merged key by key, anything
    else replaced) and return ``base``."""
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any], what: str) -> T:
    """``cls(**d)`` for a dataclass, with unknown keys an error naming them and ``what``."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; valid: {sorted(known)}")
    return cls(**d)
