"""Memory-mapped token shards with a hashed manifest.

A *shard* is a directory holding one split of a tokenized dataset::

    <shard>/tokens.npy      [N, *shape]  smallest unsigned dtype that holds 0..vocab_size-1
    <shard>/labels.npy      [N]          int64 class ids (optional)
    <shard>/latents.npy     [N, *lshape] float32 continuous latents (optional)
    <shard>/tokens_flip.npy [N, *shape]  tokens of the horizontally flipped images (optional:
                            DI / MAR pre-extract flipped copies; row i is the flip of row i)
    <shard>/manifest.json   count, shape, dtype, vocab_size, tokenizer identity + hash,
                            source dataset hash, per-file sha256, free-form ``meta``

:class:`ShardWriter` streams rows into ``.npy`` memmaps inside a hidden partial directory
(``.<name>.partial``) so memory stays flat; :meth:`ShardWriter.finalize` hashes the files, writes
the manifest and moves the directory into place with ``os.replace``. An interrupted write therefore
never leaves a directory with a manifest at the final path, and a new writer with the same spec
resumes the partial one from its last recorded row (:attr:`ShardWriter.written`).

Corrupt source files are skipped, not fatal: :meth:`ShardWriter.skip` records one (by name,
with the reason; kept across a resume) and ``finalize(allow_short=True)`` then accepts fewer
rows than ``count``: the files are truncated to the rows written and the manifest's ``count``
is that number, with ``requested_count`` and the ``skipped`` list beside it.

:class:`TokenShards` opens a finalized shard read-only (numpy memmaps; torch tensors on demand)
and checks it against its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.format import open_memmap

from unmask.errors import UserError

__all__ = [
    "atomic_dir",
    "replace_dir",
    "FORMAT",
    "MANIFEST",
    "ShardError",
    "ShardWriter",
    "TokenShards",
    "token_dtype",
    "file_sha256",
]

FORMAT = "unmask.shards/1"
MANIFEST = "manifest.json"
_PROGRESS = "progress.json"


def replace_dir(src: str | Path, dst: str | Path) -> Path:
    """Move the finished directory ``src`` to ``dst``, replacing any old ``dst``.

    ``os.replace`` cannot overwrite a non-empty directory, so an old ``dst`` is first renamed
    aside; a crash in between leaves no ``dst`` at all, never a half-written one.
    """
    src, dst = Path(src), Path(dst)
    old = dst.parent / f".{dst.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory atomically: yields a fresh hidden sibling ``.<name>.partial`` to fill;
    on a clean exit it replaces ``path`` (see :func:`replace_dir`), on an exception it is left
    behind (and wiped by the next attempt)."""
    path = Path(path)
    partial = path.parent / f".{path.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    yield partial
    replace_dir(partial, path)


class ShardError(UserError, ValueError):
    """A missing, incomplete, corrupt or mismatched shard (the message names the shard)."""


def _check_manifest(mf: Path, m: Any) -> None:
    """Types of the manifest fields the reader uses (a hand-edited or damaged manifest is one
    :class:`ShardError`, never a KeyError / TypeError); file names must be plain names in the
    shard folder (no path that reaches outside it)."""

    def bad(what: str) -> ShardError:
        return ShardError(f"{mf}: malformed manifest: {what}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(m, dict):
        raise bad(f"expected a JSON object, got {type(m).__name__}")
    if m.get("format") != FORMAT:
        return  # reported by the caller, naming the format
    if not is_int(m.get("count")) or not is_int(m.get("vocab_size")):
        raise bad("'count' and 'vocab_size' must be non-negative integers")
    shape = m.get("shape")
    if not isinstance(shape, list) or not all(is_int(d) for d in shape):
        raise bad(f"'shape' must be a list of non-negative integers, got {shape!r}")
    if not isinstance(m.get("dtype"), str):
        raise bad("'dtype' must be a string")
    for key in ("tokenizer", "meta"):
        if not isinstance(m.get(key, {}), dict):
            raise bad(f"{key!r} must be an object")
    if not isinstance(m.get("skipped", []), list):
        raise bad("'skipped' must be a list")
    files = m.get("files")
    if not isinstance(files, dict) or "tokens" not in files:
        raise bad("'files' must be an object listing at least 'tokens'")
    for key, info in files.items():
        if key not in ("tokens", "labels", "latents", "tokens_flip") or not isinstance(info, dict):
            raise bad(f"unknown or malformed file entry {key!r}")
        name = info.get("name")
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name \
                or "\\" in name:
            raise bad(f"file name {name!r} of {key!r} is not a plain name in the shard folder")
        if not is_int(info.get("bytes")) or not isinstance(info.get("sha256"), str):
            raise bad(f"{key!r} needs integer 'bytes' and string 'sha256'")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype holding ids 0..vocab_size-1 (the mask id is never stored)."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class ShardWriter:
    """Stream ``count`` rows into a new shard at ``path``.

    Args:
        path: the final shard directory (replaced on :meth:`finalize` if it exists).
        count: number of rows N (known up front: the memmaps are preallocated).
        shape: per-row token shape, e.g. ``(14, 14)`` or ``(256,)``.
        vocab_size: V; tokens must lie in 0..V-1.
        tokenizer: ``{"identity": str, "hash": str}`` of the tokenizer that made the tokens.
        source: the source data, e.g. ``{"dataset": ..., "split": ..., "hash": ...}``.
        labels: whether rows carry an integer label.
        latent_shape: per-row shape of optional float32 latents.
        meta: free-form JSON-able metadata stored in the manifest (e.g. ``num_classes``).
        flip: also store the tokens of the horizontally flipped images (``tokens_flip.npy``,
            passed to :meth:`write` as ``flipped``).
        resume: continue a partial write with an identical spec instead of restarting it.

    Use as a context manager (finalizes on a clean exit) or call :meth:`finalize` yourself.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        count: int,
        shape: Sequence[int],
        vocab_size: int,
        tokenizer: Mapping[str, str] | None = None,
        source: Mapping[str, Any] | None = None,
        labels: bool = False,
        latent_shape: Sequence[int] | None = None,
        meta: Mapping[str, Any] | None = None,
        flip: bool = False,
        resume: bool = True,
    ) -> None:
        if count < 1 or vocab_size < 1:
            raise ValueError(f"{path}: need count >= 1 and vocab_size >= 1")
        self.path = Path(path)
        self.partial = self.path.parent / f".{self.path.name}.partial"
        self.dtype = token_dtype(vocab_size)
        self.spec = {
            "format": FORMAT,
            "count": int(count),
            "shape": [int(s) for s in shape],
            "dtype": self.dtype.name,
            "vocab_size": int(vocab_size),
            "tokenizer": dict(tokenizer or {}),
            "source": dict(source or {}),
            "labels": "labels.npy" if labels else None,
            "latents": "latents.npy" if latent_shape is not None else None,
            "latent_shape": [int(s) for s in latent_shape] if latent_shape is not None else None,
            "meta": dict(meta or {}),
            "flip": "tokens_flip.npy" if flip else None,
        }
        self.written = 0
        self.skipped: list[dict[str, str]] = []
        self._finalized = False
        progress = self.partial / _PROGRESS
        if resume and progress.exists():
            state = json.loads(progress.read_text())
            if state.get("spec") == json.loads(json.dumps(self.spec)):
                self.written = int(state["written"])
                self.skipped = list(state.get("skipped", []))
        if self.written == 0 and self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True, exist_ok=True)
        mode = "r+" if self.written else "w+"
        n = self.spec["count"]
        self._tokens = self._open("tokens.npy", mode, self.dtype, (n, *self.spec["shape"]))
        self._labels = self._open("labels.npy", mode, np.int64, (n,)) if labels else None
        self._latents = (
            self._open("latents.npy", mode, np.float32, (n, *self.spec["latent_shape"]))
            if latent_shape is not None
            else None
        )
        self._flip = (
            self._open("tokens_flip.npy", mode, self.dtype, (n, *self.spec["shape"]))
            if flip
            else None
        )
        if not self.written:
            self._save_progress()

    def _open(self, name: str, mode: str, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
        if mode == "r+":
            return np.load(self.partial / name, mmap_mode="r+")
        return open_memmap(self.partial / name, mode="w+", dtype=dtype, shape=shape)

    def _save_progress(self) -> None:
        _write_json_atomic(
            self.partial / _PROGRESS,
            {"spec": self.spec, "written": self.written, "skipped": self.skipped},
        )

    @property
    def remaining(self) -> int:
        return self.spec["count"] - self.written

    @property
    def consumed(self) -> int:
        """Source items handled so far: rows written + files skipped (where a resumed
        sequential reader continues)."""
        return self.written + len(self.skipped)

    def skip(self, name: str, reason: str = "") -> None:
        """Record a corrupt source file that produced no row (kept across a resume)."""
        if self._finalized:
            raise ShardError(f"{self.path}: already finalized")
        self.skipped.append({"path": str(name), "reason": str(reason)})
        self._save_progress()

    def write(
        self,
        tokens: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | None = None,
        latents: np.ndarray | torch.Tensor | None = None,
        flipped: np.ndarray | torch.Tensor | None = None,
    ) -> int:
        """Append a chunk of rows (tokens [n, *shape]; ``flipped``: the tokens of the flipped
        images, for a shard opened with ``flip``); returns the rows written so far.

        The chunk is flushed to disk and recorded before returning, so a later writer with the
        same spec resumes after it.
        """
        if self._finalized:
            raise ShardError(f"{self.path}: already finalized")
        tok = _to_numpy(tokens)
        n = tok.shape[0]
        if tuple(tok.shape[1:]) != tuple(self.spec["shape"]):
            raise ValueError(
                f"{self.path}: rows of shape {tok.shape[1:]}, expected {self.spec['shape']}"
            )
        if n > self.remaining:
            raise ValueError(f"{self.path}: {n} rows exceed the remaining {self.remaining}")
        self._check_ids(tok)
        if (flipped is None) != (self._flip is None):
            raise ValueError(
                f"{self.path}: this shard was opened with flip={self._flip is not None}"
            )
        sl = slice(self.written, self.written + n)
        self._tokens[sl] = tok
        if self._flip is not None:
            flip = _to_numpy(flipped)
            if flip.shape != tok.shape:
                raise ValueError(f"{self.path}: flipped rows {flip.shape} != tokens {tok.shape}")
            self._check_ids(flip)
            self._flip[sl] = flip
            self._flip.flush()
        for name, arr, store in (
            ("labels", labels, self._labels),
            ("latents", latents, self._latents),
        ):
            if (arr is None) != (store is None):
                raise ValueError(
                    f"{self.path}: this shard was opened with {name}={store is not None}"
                )
            if store is not None:
                a = _to_numpy(arr)
                if a.shape[0] != n:
                    raise ValueError(f"{self.path}: {a.shape[0]} {name} for {n} token rows")
                store[sl] = a
                store.flush()
        self._tokens.flush()
        self.written += n
        self._save_progress()
        return self.written

    def _check_ids(self, tok: np.ndarray) -> None:
        if tok.size and (tok.min() < 0 or tok.max() >= self.spec["vocab_size"]):
            raise ValueError(
                f"{self.path}: token ids must lie in 0..{self.spec['vocab_size'] - 1}, "
                f"got {int(tok.min())}..{int(tok.max())}"
            )

    def finalize(self, allow_short: bool = False) -> Path:
        """Hash the files, write the manifest and move the shard into place atomically.

        With ``allow_short`` a shard with fewer rows than ``count`` (corrupt source files
        skipped) is accepted: its files are cut to the rows written (streamed, memory-flat) and
        the manifest records ``count`` = rows written, ``requested_count`` and ``skipped``.
        Without it, a short shard is an error (an incomplete write). An empty shard is an
        error either way.
        """
        if self._finalized:
            return self.path
        if self.remaining and not allow_short:
            skipped = f" ({len(self.skipped)} skipped)" if self.skipped else ""
            raise ShardError(
                f"{self.path}: only {self.written} of {self.spec['count']} rows written{skipped}"
            )
        if self.written == 0:
            raise ShardError(f"{self.path}: no rows written ({len(self.skipped)} skipped)")
        arrays = {
            "tokens": self._tokens,
            "labels": self._labels,
            "latents": self._latents,
            "tokens_flip": self._flip,
        }
        for arr in arrays.values():
            if arr is not None:
                arr.flush()
        self._tokens = self._labels = self._latents = self._flip = None
        if self.remaining:
            for key, arr in arrays.items():
                if arr is not None:
                    _truncate_npy(self.partial / f"{key}.npy", self.written)
        arrays.clear()
        manifest = {k: v for k, v in self.spec.items()}
        manifest["count"] = self.written
        manifest["requested_count"] = self.spec["count"]
        manifest["skipped"] = list(self.skipped)
        manifest["files"] = {}
        present = {"tokens": True, "tokens_flip": bool(manifest["flip"])}
        for key in ("tokens", "labels", "latents", "tokens_flip"):
            if present.get(key, manifest.get(key)):
                f = self.partial / f"{key}.npy"
                manifest["files"][key] = {
                    "name": f.name,
                    "sha256": file_sha256(f),
                    "bytes": f.stat().st_size,
                }
        (self.partial / _PROGRESS).unlink()
        _write_json_atomic(self.partial / MANIFEST, manifest)
        replace_dir(self.partial, self.path)
        self._finalized = True
        return self.path

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.finalize()


def _truncate_npy(path: Path, rows: int, chunk_bytes: int = 1 << 24) -> None:
    """Keep the first ``rows`` rows of the ``.npy`` file at ``path``, streaming them into a new
    file in chunks (memory stays flat), then replacing it."""
    src = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.name + ".short")
    dst = open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(rows, *src.shape[1:]))
    step = max(1, chunk_bytes // max(1, src[0].nbytes))
    for i in range(0, rows, step):
        dst[i : i + step] = src[i : min(i + step, rows)]
    dst.flush()
    del src, dst
    os.replace(tmp, path)


def _to_numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


class TokenShards:
    """A finalized shard, opened read-only as numpy memmaps.

    Args:
        path: the shard directory.
        verify: recompute each file's sha256 and compare with the manifest (a full read; pass
            False for very large shards; sizes and shapes are always checked).
        tokenizer_hash: if given, the tokenizer hash the caller expects (guards against shards
            written by a different tokenizer configuration).

    Attributes:
        manifest: the parsed manifest.
        tokens: memmap [N, *shape] (compact dtype); :meth:`tokens_tensor` gives a LongTensor.
        labels: memmap [N] int64 or None.  latents: memmap [N, *lshape] float32 or None.
        flipped: memmap [N, *shape] of the flipped images' tokens, or None.
        skipped: the corrupt source files skipped while writing (``{"path", "reason"}``).
    """

    def __init__(self, path: str | Path, *, verify: bool = True, tokenizer_hash: str | None = None):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.exists():
            hint = (
                " (an interrupted write is still partial)"
                if (self.path.parent / f".{self.path.name}.partial").exists()
                else ""
            )
            raise ShardError(f"{self.path}: not a finalized token shard, no {MANIFEST}{hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise ShardError(f"{mf}: unreadable manifest ({e})") from None
        _check_manifest(mf, self.manifest)
        if self.manifest.get("format") != FORMAT:
            raise ShardError(f"{mf}: unknown shard format {self.manifest.get('format')!r}")
        if tokenizer_hash is not None and self.tokenizer.get("hash") != tokenizer_hash:
            raise ShardError(
                f"{self.path}: written by tokenizer {self.tokenizer.get('identity')!r} "
                f"(hash {self.tokenizer.get('hash')}), expected hash {tokenizer_hash}; "
                "re-run the stage that writes it"
            )
        arrays: dict[str, np.ndarray | None] = dict.fromkeys(
            ("tokens", "labels", "latents", "tokens_flip")
        )
        for key, info in self.manifest["files"].items():
            f = self.path / info["name"]
            if not f.exists():
                raise ShardError(f"{self.path}: {info['name']} listed in the manifest is missing")
            if f.stat().st_size != info["bytes"] or (verify and file_sha256(f) != info["sha256"]):
                raise ShardError(
                    f"{self.path}: {info['name']} does not match its manifest hash "
                    "(changed or corrupt); re-run the stage that writes it"
                )
            arrays[key] = np.load(f, mmap_mode="r")
        self.tokens: np.ndarray = arrays["tokens"]  # type: ignore[assignment]
        self.labels = arrays["labels"]
        self.latents = arrays["latents"]
        self.flipped = arrays["tokens_flip"]
        n, shape = self.manifest["count"], tuple(self.manifest["shape"])
        if self.tokens.shape != (n, *shape) or self.tokens.dtype.name != self.manifest["dtype"]:
            raise ShardError(
                f"{self.path}: tokens.npy is {self.tokens.dtype}{list(self.tokens.shape)}, "
                f"the manifest says {self.manifest['dtype']}{[n, *shape]}"
            )
        if self.flipped is not None and self.flipped.shape != self.tokens.shape:
            raise ShardError(
                f"{self.path}: tokens_flip.npy has shape {list(self.flipped.shape)}, expected "
                f"{[n, *shape]}"
            )
        if self.labels is not None and self.labels.shape != (n,):
            raise ShardError(
                f"{self.path}: labels.npy has shape {self.labels.shape}, expected ({n},)"
            )

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-row token shape."""
        return tuple(self.manifest["shape"])

    @property
    def seq_len(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def tokenizer(self) -> dict[str, str]:
        return self.manifest.get("tokenizer", {})

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.manifest.get("skipped", []))

    @property
    def has_flip(self) -> bool:
        return self.flipped is not None

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @property
    def hash(self) -> str:
        """A short hash identifying the shard content (over the per-file hashes)."""
        files = self.manifest["files"]
        return hashlib.sha256(
            "".join(files[k]["sha256"] for k in sorted(files)).encode()
        ).hexdigest()[:16]

    def tokens_tensor(
        self, index: Any = slice(None), *, flatten: bool = False, flipped: bool = False
    ) -> torch.Tensor:
        """Tokens of rows ``index`` as a LongTensor [n, *shape] (or [n, L] with ``flatten``);
        ``flipped``: those of the flipped images instead."""
        if flipped and self.flipped is None:
            raise ShardError(f"{self.path}: no flipped tokens (written without flip)")
        src = self.flipped if flipped else self.tokens
        t = torch.from_numpy(np.array(src[index], dtype=np.int64))
        return t.reshape(t.shape[0], -1) if flatten and t.dim() > 1 else t

    def training_set(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(tokens, labels) to train on: the rows, followed by their flipped copies when the
        shard has them (so each epoch's random order draws originals and flips alike; labels
        repeated), as LongTensors."""
        tokens, labels = self.tokens_tensor(), self.labels_tensor()
        if self.flipped is None:
            return tokens, labels
        tokens = torch.cat([tokens, self.tokens_tensor(flipped=True)])
        return tokens, (torch.cat([labels, labels]) if labels is not None else None)

    def labels_tensor(self, index: Any = slice(None)) -> torch.Tensor | None:
        """Labels of rows ``index`` as a LongTensor, or None for an unlabelled shard."""
        if self.labels is None:
            return None
        return torch.from_numpy(np.array(self.labels[index], dtype=np.int64))

    def __repr__(self) -> str:
        return (
            f"TokenShards({str(self.path)!r}, count={len(self)}, shape={self.shape}, "
            f"vocab_size={self.vocab_size}, labels={self.labels is not None})"
        )
