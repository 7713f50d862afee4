"""Errors shared by the dataset loaders, and the bookkeeping of skipped corrupt files.

Two failure kinds, handled differently:

* :class:`DatasetLayoutError`: the dataset as a whole is missing or is not laid out as the loader
  expects. Raised at construction, once, naming the path and showing the expected layout.
* :class:`CorruptFileError`: one file inside an otherwise valid dataset cannot be read. Loaders
  iterated with ``on_error="skip"`` (the default) log it, record it in ``loader.skipped`` and go
  on; ``on_error="raise"`` re-raises it. ``loader.num_skipped`` is what stages report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

__all__ = [
    "DatasetLayoutError",
    "CorruptFileError",
    "VideoTooShortError",
    "SkipRecord",
    "SkipsCorruptFiles",
    "OnError",
    "require_dir",
    "require_file",
]

log = logging.getLogger("unmask.data")

OnError = Literal["skip", "raise"]
T = TypeVar("T")
R = TypeVar("R")


class DatasetLayoutError(FileNotFoundError):
    """A dataset is missing or malformed as a whole.

    Attributes:
        path: the offending path.
        layout: a short drawing of the layout the loader expects.
    """

    def __init__(self, dataset: str, path: str | Path, problem: str, layout: str):
        self.dataset = dataset
        self.path = Path(path)
        self.problem = problem
        self.layout = layout.strip("\n")
        super().__init__(f"{dataset}: {problem} at {self.path}.\nExpected layout:\n{self.layout}")

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]

    def __reduce__(self):  # picklable across processes (Ray, Prefect workers)
        return type(self), (self.dataset, self.path, self.problem, self.layout)


class CorruptFileError(ValueError):
    """One unreadable file inside a dataset (the message names it)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes (Ray, Prefect workers)
        return type(self), (self.path, self.reason)


class VideoTooShortError(CorruptFileError):
    """A video with fewer frames than one clip needs."""


@dataclass(frozen=True)
class SkipRecord:
    """One skipped file: its path (or ``shard.tar:key``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class SkipsCorruptFiles:
    """Mixin: ``skipped`` records and the ``on_error`` policy for corrupt files."""

    on_error: OnError = "skip"

    def _init_skips(self, on_error: OnError) -> None:
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.on_error = on_error
        self.skipped: list[SkipRecord] = []

    @property
    def num_skipped(self) -> int:
        """How many corrupt files were skipped so far."""
        return len(self.skipped)

    def _skip(self, err: CorruptFileError) -> None:
        """Record ``err`` (or re-raise it under ``on_error="raise"``)."""
        if self.on_error == "raise":
            raise err
        log.warning("skipping corrupt file %s", err)
        self.skipped.append(SkipRecord(err.path, err.reason))

    def _iter_skipping(self, items: Iterable[T], load: Callable[[T], R]) -> Iterator[R]:
        """Yield ``load(item)`` for each item, skipping (and recording) corrupt ones."""
        for item in items:
            try:
                out = load(item)
            except CorruptFileError as err:
                self._skip(err)
                continue
            yield out


def require_dir(dataset: str, path: str | Path, layout: str, what: str = "directory") -> Path:
    """``path`` as a Path if it is a directory, else a :class:`DatasetLayoutError`."""
    p = Path(path)
    if not p.is_dir():
        problem = f"missing {what}" if not p.exists() else f"{what} is not a directory"
        raise DatasetLayoutError(dataset, p, problem, layout)
    return p


def require_file(dataset: str, path: str | Path, layout: str, what: str = "file") -> Path:
    """``path`` as a Path if it is a file, else a :class:`DatasetLayoutError`."""
    p = Path(path)
    if not p.is_file():
        raise DatasetLayoutError(dataset, p, f"missing {what}", layout)
    return p
