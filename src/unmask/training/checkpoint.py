"""Checkpoints: atomic writes, sha256 verification, rotation, and model rebuilding.

Layout: ``<dir>/ckpt-<step:08d>.pt`` (a plain ``torch.save`` dict, loadable with
``torch.load(weights_only=True)``) and beside it ``ckpt-<step>.pt.sha256`` in ``sha256sum``
format. A write goes to a temporary file, is fsynced and hashed, then the checksum and the
payload are moved into place with ``os.replace`` (checksum first, so every ``.pt`` the loop
produced has one). A file whose hash does not match, or that does not unpickle, is corrupt:
resuming skips it with a warning naming it and takes the previous one.

The payload stores the model's :class:`~unmask.models.ModelConfig`, so
:func:`load_checkpoint` rebuilds the network from the file alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unmask.models import ModelConfig, Transformer

__all__ = [
    "CorruptCheckpointError",
    "LoadedCheckpoint",
    "checkpoint_path",
    "list_checkpoints",
    "save_checkpoint",
    "read_checkpoint",
    "latest_checkpoint",
    "prune_checkpoints",
    "load_checkpoint",
]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
FORMAT = "unmask-ckpt-v1"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint failed its checksum or could not be read."""


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.pt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically with its sha256 beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    _write_atomic(_sidecar(path), f"{_sha256(tmp)}  {path.name}\n".encode())
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Verify (when the ``.sha256`` is present) and load a checkpoint dict.

    Raises:
        CorruptCheckpointError: naming the file, on a checksum mismatch or unreadable payload.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    side = _sidecar(path)
    if side.is_file():
        expected = (side.read_text().split() or [""])[0]
        actual = _sha256(path)
        if actual != expected:
            raise CorruptCheckpointError(
                f"checkpoint {path} is corrupt: sha256 {actual[:12]}… does not match "
                f"{side.name} ({expected[:12]}…)"
            )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, ...
        raise CorruptCheckpointError(f"checkpoint {path} cannot be read: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not an unmask checkpoint ({FORMAT})")
    return state


def latest_checkpoint(
    directory: str | Path, map_location: Any = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies, with its contents; corrupt ones are skipped with
    a warning naming them. None when there is none."""
    candidates = list_checkpoints(directory)[::-1]
    for i, path in enumerate(candidates):
        try:
            return path, read_checkpoint(path, map_location)
        except CorruptCheckpointError as e:
            fallback = candidates[i + 1].name if i + 1 < len(candidates) else "none (start over)"
            warnings.warn(f"{e}; falling back to {fallback}", stacklevel=2)
    return None


def prune_checkpoints(directory: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints (and their checksums)."""
    removed = list_checkpoints(directory)[:-keep_last] if keep_last > 0 else []
    for p in removed:
        p.unlink(missing_ok=True)
        _sidecar(p).unlink(missing_ok=True)
    return removed


@dataclass
class LoadedCheckpoint:
    model: Transformer
    model_config: ModelConfig
    train_config: dict[str, Any]
    step: int
    path: Path
    state: dict[str, Any]


def config_diff(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (stored, given)} for every key whose values differ."""
    keys = sorted(set(stored) | set(given))
    return {k: (stored.get(k), given.get(k)) for k in keys if stored.get(k) != given.get(k)}


def check_model_config(stored: dict[str, Any], given: ModelConfig | dict, path: Path) -> None:
    """Raise a ValueError listing every field where a checkpoint's model config differs."""
    given_cfg = given if isinstance(given, ModelConfig) else ModelConfig(**given)
    stored_cfg = ModelConfig(**stored)
    diff = config_diff(stored_cfg.model_dump(mode="json"), given_cfg.model_dump(mode="json"))
    diff.pop("preset", None)  # a label, not architecture
    if diff:
        items = ", ".join(f"{k}: checkpoint {a!r} vs given {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"checkpoint {path} was trained with a different model config: {items}")


def load_checkpoint(
    path: str | Path,
    model_config: ModelConfig | dict | None = None,
    *,
    ema: bool = True,
    map_location: Any = "cpu",
) -> LoadedCheckpoint:
    """Rebuild the model stored in a checkpoint (a file, or a folder: its newest valid one).

    Args:
        path: checkpoint file or directory.
        model_config: if given, it must equal the stored config (else a ValueError naming the
            differing fields).
        ema: load the EMA weights (what sampling wants) instead of the raw ones.
        map_location: where tensors go.
    """
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path, map_location)
        if found is None:
            raise FileNotFoundError(f"no valid checkpoint in {path}")
        path, state = found
    else:
        state = read_checkpoint(path, map_location)
    if model_config is not None:
        check_model_config(state["model_config"], model_config, path)
    cfg = ModelConfig(**state["model_config"])
    model = Transformer(cfg)
    weights = state["ema"]["shadow"] if ema and state.get("ema") else state["model"]
    model.load_state_dict(weights)
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu").eval()
    return LoadedCheckpoint(model, cfg, state.get("train_config", {}), int(state["step"]), path,
                            state)
