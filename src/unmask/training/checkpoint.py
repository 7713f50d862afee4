"""Checkpoints: atomic writes, sha256 verification, rotation, and model rebuilding.

Layout: ``<dir>/ckpt-<step:08d>.pt`` (a plain ``torch.save`` dict, loadable with
``torch.load(weights_only=True)``) and beside it ``ckpt-<step>.pt.sha256`` in ``sha256sum``
format. A write goes to a temporary file, is fsynced and hashed, then the checksum and the
payload are moved into place with ``os.replace`` (checksum first, so every ``.pt`` the loop
produced has one). A file whose hash does not match, or that does not unpickle, is corrupt:
resuming skips it with a warning naming it and takes the previous one.

The payload stores the model's config (``model_config``, a JSON-able dict) and class
(``model_class``, e.g. ``unmask.emigm.mae.MAE``; absent = :class:`~unmask.models.Transformer`),
so :func:`load_checkpoint` rebuilds the network from the file alone; only classes of this
package are imported, and every load is ``torch.load(weights_only=True)`` (a pickle carrying
code is refused as unreadable).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
import sys
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from unmask.errors import UserError
from unmask.models import ModelConfig, Transformer

__all__ = [
    "CorruptCheckpointError",
    "ModelConfigMismatchError",
    "LoadedCheckpoint",
    "config_dict",
    "check_model_config",
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


class CorruptCheckpointError(UserError, RuntimeError):
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


def _canonical(obj: Any) -> Any:
    """A copy of ``obj`` whose pickle depends on its values only: pickle memoises shared
    objects and torch.save shared storages, so a resumed run's state (rebuilt by torch.load,
    with other sharing) would otherwise serialise to other bytes than the uninterrupted run's.
    Fresh containers, interned strings and tensors with their own storage make the file a
    function of the values, so DVC sees the same hash either way."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, OrderedDict):
        out = OrderedDict((_canonical(k), _canonical(v)) for k, v in obj.items())
        meta = getattr(obj, "_metadata", None)  # state_dict version info
        if meta is not None:
            out._metadata = _canonical(meta)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    return obj


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically with its sha256 beside it. The bytes are a
    function of the state's values (:func:`_canonical`): equal states give equal files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(_canonical({"format": FORMAT, **state}), f)
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
    model: torch.nn.Module
    model_config: Any
    train_config: dict[str, Any]
    step: int
    path: Path
    state: dict[str, Any]


def config_diff(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (stored, given)} for every key whose values differ."""
    keys = sorted(set(stored) | set(given))
    return {k: (stored.get(k), given.get(k)) for k in keys if stored.get(k) != given.get(k)}


class ModelConfigMismatchError(ValueError):
    """A checkpoint was written by a model of another class or architecture."""


def config_dict(cfg: Any) -> dict[str, Any]:
    """A model config as a JSON-able dict: pydantic models are dumped, dataclasses converted,
    mappings copied."""
    if isinstance(cfg, BaseModel):
        return cfg.model_dump(mode="json")
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"cannot compare a model config of type {type(cfg).__name__}")


def model_class_name(model: Any) -> str:
    """``module.QualName`` of a model's class as checkpoints record it: the first class of
    this package in its MRO (a user's subclass of :class:`~unmask.models.Transformer` is
    rebuilt as a Transformer)."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("unmask."):
            return model_class_name_of(cls)
    return model_class_name_of(type(model))


def check_model_config(stored: dict[str, Any], given: Any, path: Path,
                       stored_class: str | None = None, given_class: str | None = None) -> None:
    """Raise :class:`ModelConfigMismatchError` listing every field where a checkpoint's model
    config differs from ``given`` (any config: pydantic model, dataclass or dict).

    A pydantic ``given`` first re-reads the stored dict with its own class, so fields added
    with defaults since the checkpoint was written compare equal; a stored config the class
    cannot read (another model family) is a mismatch too. ``preset`` is a label and ignored.
    """
    if stored_class and given_class and stored_class != given_class:
        raise ModelConfigMismatchError(
            f"checkpoint {path} holds a {stored_class.rsplit('.', 1)[-1]} model, "
            f"not a {given_class.rsplit('.', 1)[-1]}")
    if isinstance(given, dict) and stored_class in (None, model_class_name_of(Transformer)):
        given = ModelConfig(**given)
    given_d = config_dict(given)
    stored_d = dict(stored)
    if isinstance(given, BaseModel):
        try:
            stored_d = type(given)(**stored).model_dump(mode="json")
        except (ValidationError, TypeError) as e:
            first = str(e).splitlines()[:3]
            raise ModelConfigMismatchError(
                f"checkpoint {path} was trained with a different model config "
                f"({type(given).__name__} cannot read it: {' '.join(first)})") from None
    diff = config_diff(stored_d, given_d)
    diff.pop("preset", None)  # a label, not architecture
    if diff:
        items = ", ".join(f"{k}: checkpoint {a!r} vs given {b!r}" for k, (a, b) in diff.items())
        raise ModelConfigMismatchError(
            f"checkpoint {path} was trained with a different model config: {items}")


def _model_class(name: str | None) -> type:
    """The model class a checkpoint names (only classes of this package are imported)."""
    if not name or name == model_class_name_of(Transformer):
        return Transformer
    module, _, qual = name.rpartition(".")
    if not module.startswith("unmask."):
        raise CorruptCheckpointError(f"checkpoint names model class {name!r} outside unmask")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def model_class_name_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
    cls = _model_class(state.get("model_class"))
    if model_config is not None:
        given_cls = Transformer if isinstance(model_config, ModelConfig | dict) else None
        check_model_config(state["model_config"], model_config, path, state.get("model_class"),
                           model_class_name_of(given_cls) if given_cls else None)
    model = cls(state["model_config"])
    cfg = model.cfg
    weights = state["ema"]["shadow"] if ema and state.get("ema") else state["model"]
    model.load_state_dict(weights)
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu").eval()
    return LoadedCheckpoint(model, cfg, state.get("train_config", {}), int(state["step"]), path,
                            state)
