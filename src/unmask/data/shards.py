"""Memory-mapped token shards with a hashed manifest.

A *shard* is a directory holding one split of a tokenized dataset::

    <shard>/tokens.npy      [N, *shape]  smallest unsigned dtype that holds 0..vocab_size-1
    <shard>/labels.npy      [N]          int64 class ids (optional)
    <shard>/latents.npy     [N, *lshape] float32 continuous latents (optional)
    <shard>/manifest.json   count, shape, dtype, vocab_size, tokenizer identity + hash,
                            source dataset hash, per-file sha256, free-form ``meta``

:class:`ShardWriter` streams rows into ``.npy`` memmaps inside a hidden partial directory
(``.<name>.partial``) so memory stays flat; :meth:`ShardWriter.finalize` hashes the files, writes
the manifest and moves the directory into place with ``os.replace``. An interrupted write therefore
never leaves a directory with a manifest at the final path, and a new writer with the same spec
resumes the partial one from its last recorded row (:attr:`ShardWriter.written`).

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


class ShardError(ValueError):
    """A missing, incomplete, corrupt or mismatched shard (the message names the shard)."""


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
        }
        self.written = 0
        self._finalized = False
        progress = self.partial / _PROGRESS
        if resume and progress.exists():
            state = json.loads(progress.read_text())
            if state.get("spec") == json.loads(json.dumps(self.spec)):
                self.written = int(state["written"])
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
        if not self.written:
            self._save_progress()

    def _open(self, name: str, mode: str, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
        if mode == "r+":
            return np.load(self.partial / name, mmap_mode="r+")
        return open_memmap(self.partial / name, mode="w+", dtype=dtype, shape=shape)

    def _save_progress(self) -> None:
        _write_json_atomic(self.partial / _PROGRESS, {"spec": self.spec, "written": self.written})

    @property
    def remaining(self) -> int:
        return self.spec["count"] - self.written

    def write(
        self,
        tokens: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | None = None,
        latents: np.ndarray | torch.Tensor | None = None,
    ) -> int:
        """Append a chunk of rows (tokens [n, *shape]); returns the rows written so far.

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
        if n and (tok.min() < 0 or tok.max() >= self.spec["vocab_size"]):
            raise ValueError(
                f"{self.path}: token ids must lie in 0..{self.spec['vocab_size'] - 1}, "
                f"got {int(tok.min())}..{int(tok.max())}"
            )
        sl = slice(self.written, self.written + n)
        self._tokens[sl] = tok
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

    def finalize(self) -> Path:
        """Hash the files, write the manifest and move the shard into place atomically."""
        if self._finalized:
            return self.path
        if self.remaining:
            raise ShardError(
                f"{self.path}: only {self.written} of {self.spec['count']} rows written"
            )
        for arr in (self._tokens, self._labels, self._latents):
            if arr is not None:
                arr.flush()
        self._tokens = self._labels = self._latents = None
        manifest = {k: v for k, v in self.spec.items()}
        manifest["files"] = {}
        for key in ("tokens", "labels", "latents"):
            if key == "tokens" or manifest[key]:
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
        if self.manifest.get("format") != FORMAT:
            raise ShardError(f"{mf}: unknown shard format {self.manifest.get('format')!r}")
        if tokenizer_hash is not None and self.tokenizer.get("hash") != tokenizer_hash:
            raise ShardError(
                f"{self.path}: written by tokenizer {self.tokenizer.get('identity')!r} "
                f"(hash {self.tokenizer.get('hash')}), expected hash {tokenizer_hash}; "
                "re-run the stage that writes it"
            )
        arrays: dict[str, np.ndarray | None] = {"tokens": None, "labels": None, "latents": None}
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
        n, shape = self.manifest["count"], tuple(self.manifest["shape"])
        if self.tokens.shape != (n, *shape) or self.tokens.dtype.name != self.manifest["dtype"]:
            raise ShardError(
                f"{self.path}: tokens.npy is {self.tokens.dtype}{list(self.tokens.shape)}, "
                f"the manifest says {self.manifest['dtype']}{[n, *shape]}"
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
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @property
    def hash(self) -> str:
        """A short hash identifying the shard content (over the per-file hashes)."""
        files = self.manifest["files"]
        return hashlib.sha256(
            "".join(files[k]["sha256"] for k in sorted(files)).encode()
        ).hexdigest()[:16]

    def tokens_tensor(self, index: Any = slice(None), *, flatten: bool = False) -> torch.Tensor:
        """Tokens of rows ``index`` as a LongTensor [n, *shape] (or [n, L] with ``flatten``)."""
        t = torch.from_numpy(np.array(self.tokens[index], dtype=np.int64))
        return t.reshape(t.shape[0], -1) if flatten and t.dim() > 1 else t

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
