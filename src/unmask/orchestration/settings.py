"""Typed settings of the ablation and training flows, read from ``flows/ablations.yaml``.

The file names the pipeline inputs the trials start from (params file, checkpoint, token shards),
how trials are scored (:class:`EvalSettings`), the Ray resources (:class:`RaySettings`) and, per
axis, its kind and default grid (:class:`AxisSpec`). Every model forbids unknown keys; a bad file
is one :class:`SettingsError` line naming the file and the dotted key.

Grid keys are dotted ``params.yaml`` keys (``sample.steps``, ``train.schedule``) plus the
derived key ``emigm.t_min``: eMIGM's time truncation (its t = masking time ∈ [t_min, 1]), which
in this package's convention (t = 0 all [MASK]) is ``train.t_min, train.t_max = 0, 1 − t_min``
(:func:`unmask.corruption.emigm_time_range`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unmask import paramsfile
from unmask.errors import ConfigError

__all__ = [
    "SettingsError",
    "EvalSettings",
    "RaySettings",
    "AxisSpec",
    "AblationSettings",
    "DERIVED_KEYS",
    "load_settings",
]

#: Grid keys that are not params keys, and the params keys each one sets.
DERIVED_KEYS: dict[str, tuple[str, ...]] = {"emigm.t_min": ("train.t_min", "train.t_max")}


class SettingsError(ConfigError, ValueError):
    """An invalid settings file or override (one line naming the key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalSettings(_Strict):
    """How each trial is scored.

    ``metric``: ``auto`` = FID when the Inception weights are available (else reported
    unavailable) plus the sample statistics; ``fid`` = FID required (a trial fails without the
    weights); ``stats`` = sample statistics only. FID is the pipeline's (the same function and
    params, :mod:`unmask.metrics.heldout`): ``n_per_class`` × classes samples (up to
    ``evaluate.fid_num_samples``) against the real held-out images; ``fid_reference`` null uses
    ``evaluate.fid_reference`` (the pipeline's reference set — a number replaces it, and the
    trials' FIDs are then not comparable with the pipeline's). Training-time axes also score
    the held-out NELBO of ``nelbo_sequences`` sequences with ``nelbo_samples`` Monte-Carlo times
    each.
    """

    metric: Literal["auto", "fid", "stats"] = "auto"
    n_per_class: int = Field(default=10, gt=0)
    fid_reference: int | None = Field(default=None, gt=1)
    fid_batch_size: int = Field(default=50, gt=0)
    nelbo_sequences: int = Field(default=250, gt=0)
    nelbo_samples: int = Field(default=2, gt=0)


class RaySettings(_Strict):
    """Ray resources. ``address`` None: ``$RAY_ADDRESS`` or a local instance of ``num_cpus``
    CPUs; ``auto`` joins a running cluster. A sampling trial takes ``cpus_per_trial`` /
    ``gpus_per_trial``; a training trial runs Ray Train's ``TorchTrainer`` with ``num_workers``
    DDP workers (``use_gpu``: nccl, else gloo) of ``cpus_per_worker`` CPUs each, restarting from
    the last checkpoint up to ``max_failures`` times when a worker dies. ``shared_storage``
    (an absolute path every node mounts): trials read copies of their inputs there and write
    trial folders and Ray storage there (:func:`unmask.orchestration.staging.stage_planned`)."""

    address: str | None = None
    shared_storage: str | None = None
    num_cpus: int | None = Field(default=2, gt=0)
    num_gpus: int | None = Field(default=None, ge=0)
    cpus_per_trial: float = Field(default=1.0, ge=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    max_concurrent_trials: int | None = Field(default=1, gt=0)
    num_workers: int = Field(default=1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=1.0, ge=0)
    max_failures: int = Field(default=1, ge=0)


class AxisSpec(_Strict):
    """One ablation axis: ``sampling`` axes reuse one trained checkpoint, ``training`` axes train
    one model per grid point. ``grid`` maps dotted keys to value lists (the points are their
    Cartesian product, first key varying slowest); ``fixed`` overrides apply to every point."""

    kind: Literal["sampling", "training"]
    grid: dict[str, list[Any]]
    fixed: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not v or any(len(vals) == 0 for vals in v.values()):
            raise ValueError("a grid needs at least one key with at least one value")
        return v


class AblationSettings(_Strict):
    """The whole settings file (paths are relative to the flow's ``workdir``)."""

    params: str = "params.yaml"
    checkpoint: str = "models/model.pt"
    tokens: str = "data/tokens"
    output: str = "reports/ablations"
    runs: str = "runs/ablations"
    experiment_prefix: str = "ablations/"
    retries: int = Field(default=1, ge=0)
    eval: EvalSettings = EvalSettings()
    ray: RaySettings = RaySettings()
    axes: dict[str, AxisSpec]

    def axis(self, name: str) -> AxisSpec:
        if name not in self.axes:
            raise SettingsError(f"unknown ablation axis {name!r}; valid: {', '.join(self.axes)}")
        return self.axes[name]


def load_settings(path: str | Path, overrides: dict[str, Any] | None = None) -> AblationSettings:
    """Read and validate the settings file; ``overrides`` is a nested dict merged on top
    (e.g. ``{"eval": {"n_per_class": 2}}``). Raises :class:`SettingsError` (one line naming the
    file or the override and the key, as every params file: :mod:`unmask.paramsfile`)."""
    try:
        return paramsfile.load(path, overrides, AblationSettings, what="ablation settings file")
    except ConfigError as e:
        raise SettingsError(str(e)) from None
