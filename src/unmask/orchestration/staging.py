"""A sweep's inputs in shared storage, so trials never read the driver's local project.

:func:`stage_inputs` copies the params file, checkpoint, token shards, tokenizer and held-out
images into a storage path every node mounts (``ray.shared_storage``), content-addressed;
:func:`stage_planned` points an ablation plan's trial specs at those copies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unmask.config import ConfigError, load_params
from unmask.paths import project_root, resolve

__all__ = ["stage_inputs", "stage_planned"]

def _tree_id(path: Path) -> str:
    """Cheap identity of a file or folder: relative paths, sizes and mtimes (sha256, 16 hex)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}:{st.st_size}:"
                 f"{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def stage_inputs(paths: Mapping[str, str | Path], shared: str | Path) -> dict[str, Path]:
    """Copy each input (file or folder) to ``<shared>/inputs/<id>/<name>`` unless that copy
    exists (content-addressed by :func:`_tree_id`); returns {key: path in shared storage}.
    Copies land under a temporary name and are renamed into place, so a node never sees a
    half-written input and concurrent sweeps staging the same input do not collide."""
    shared = Path(shared)
    out: dict[str, Path] = {}
    for key, src in paths.items():
        src = Path(src)
        if not src.exists():
            raise FileNotFoundError(f"{key}: input {src} not found (cannot stage it to {shared})")
        dst = shared / "inputs" / _tree_id(src) / src.name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".stage-", dir=dst.parent)) / src.name
            if src.is_dir():
                shutil.copytree(src, tmp)
            else:
                shutil.copy2(src, tmp)
                side = src.with_name(src.name + ".sha256")  # a checkpoint's recorded digest
                if side.is_file():
                    shutil.copy2(side, dst.with_name(side.name))
            try:
                os.replace(tmp, dst)
            except OSError:  # staged concurrently by another sweep
                if not dst.exists():
                    raise
            shutil.rmtree(tmp.parent, ignore_errors=True)
        out[key] = dst
    return out


def stage_planned(planned: Sequence[Any], shared: str | Path) -> None:
    """Point the trial specs of an ablation plan (:class:`~unmask.orchestration.ablation.
    PlannedPoint`) at copies of their inputs in ``shared`` (``ray.shared_storage``): the params
    file, the checkpoint (sampling axes), the token splits the trial reads (``train`` for
    training axes, ``evaluate.split`` always), the VQ tokenizer and, when trials score FID, the
    prepared held-out images — so a trial on a node without the project's outputs finds them.
    Specs are replaced in place."""

    shared = Path(shared)
    if not shared.is_absolute():
        raise ValueError(f"ray.shared_storage: {shared} must be an absolute path that every "
                         "node mounts")
    staged: dict[tuple[str, ...], dict[str, Path]] = {}
    for pp in planned:
        spec = pp.spec
        try:
            params = load_params(spec.params_path, spec.overrides)
        except ConfigError:  # an invalid point fails as a trial; stage the base params' inputs
            params = load_params(spec.params_path)
        split = params.evaluate.split
        # A learned tokenizer is a file the params name relative to the driver's project.
        vq = (str(resolve(params.tokenizer.path, spec.root or project_root(spec.params_path)))
              if params.tokenizer.kind == "vq" else "")
        splits = tuple(sorted({split} | ({"train"} if spec.kind == "training" else set())))
        # FID scores against the prepared real held-out images, which the trial finds beside
        # the token folder (<tokens_dir>/../prepared, unmask.orchestration.evaluation).
        fid = spec.eval.metric != "stats"
        key = (spec.params_path, spec.checkpoint or "", spec.tokens_dir, vq, str(fid), *splits)
        if key not in staged:
            tokens = Path(spec.tokens_dir)
            found = {f"tokens/{s}": tokens / s for s in splits if (tokens / s).exists()}
            if fid:
                prepared = tokens.parent / "prepared"
                found.update({f"prepared/{n}": prepared / n
                              for n in (f"{split}.npz", "manifest.json")
                              if (prepared / n).exists()})
            out = stage_inputs({"params": spec.params_path, **found,
                                **({"checkpoint": spec.checkpoint} if spec.checkpoint else {}),
                                **({"tokenizer": vq} if vq else {})}, shared)
            # One folder laid out as the project's data/ (tokens/<split>, prepared/<file>),
            # made of links to the content-addressed copies.
            bundle = shared / "inputs" / ("data-" + hashlib.sha256("".join(
                f"{k}={out[k]}" for k in sorted(found)).encode()).hexdigest()[:16])
            for k in found:
                link = bundle / k
                if not link.is_symlink():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(FileExistsError):
                        link.symlink_to(out[k], target_is_directory=out[k].is_dir())
            (bundle / "tokens").mkdir(parents=True, exist_ok=True)
            out["tokens"] = bundle / "tokens"
            staged[key] = out
        out = staged[key]
        overrides = dict(spec.overrides)
        if "tokenizer" in out:  # absolute, so the driver's root no longer matters for it
            overrides["tokenizer.path"] = str(out["tokenizer"])
        pp.spec = spec.model_copy(update={
            "params_path": str(out["params"]), "tokens_dir": str(out["tokens"]),
            "overrides": overrides,
            **({"checkpoint": str(out["checkpoint"])} if spec.checkpoint else {})})
