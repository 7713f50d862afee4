"""One ablation sweep end to end, driver side: plan → parent run → Tune grid → table.

:class:`Ablation` is what the ``ablations`` Prefect flow calls (the flow adds the Prefect tasks
that mirror the trials). Steps:

1. :meth:`Ablation.plan` — check the inputs (:meth:`Ablation.preflight`: a missing tokenizer,
   token shard or checkpoint is one error naming the file and the DVC stage that writes it,
   before any trial starts), expand the axis grid, validate the base params, give each
   point its key (resolved params sections + checkpoint hash or training data + scoring
   settings) and look the keys up in MLflow: a point with a FINISHED run is *skipped* (its run
   is reused in the table) unless ``force``;
2. :meth:`Ablation.run` — open the sweep's parent MLflow run, start Ray, run the remaining points
   as one Tune grid (:func:`~unmask.orchestration.tune_grid.run_grid`), then write the grid's
   table (from the MLflow runs) as CSV to ``<workdir>/reports/ablations/<axis>.csv`` and as an
   artifact of the parent run; the parent run is FAILED when a trial failed.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from unmask.config import ConfigError, load_params
from unmask.data.shards import TokenShards
from unmask.orchestration import runs
from unmask.orchestration.env import ray_init
from unmask.orchestration.grid import GridPoint, expand, grid_key, resolve_overrides, write_csv
from unmask.orchestration.runs import run_link
from unmask.orchestration.settings import AblationSettings, load_settings
from unmask.orchestration.staging import stage_planned
from unmask.orchestration.trials import RELEVANT_SECTIONS, TrialSpec
from unmask.orchestration.tune_grid import TrialBoard, TrialOutcome, run_grid
from unmask.paths import project_root, require, resolve
from unmask.reporting.build import build_report
from unmask.tracking import Tracker, tracking_uri

__all__ = ["AblationRequest", "PlannedPoint", "SweepSummary", "Ablation", "dotted_overrides"]



def refresh_report(tracking_uri: str, out_dir: Path) -> Path | None:
    """Rebuild the MLflow report (``unmask.reporting.build_report``) over every run of the store
    into ``out_dir/index.html`` after a sweep, so its runs appear next to the earlier ones. A
    report failure is a warning: the sweep's runs and CSV are already safe in MLflow."""

    try:
        return build_report(tracking_uri, out_dir, title="unmask — ablations")
    except Exception as e:  # noqa: BLE001 - the report must never fail a finished sweep
        warnings.warn(f"could not rebuild the report in {out_dir}: {e}", stacklevel=2)
        return None

class AblationRequest(BaseModel):
    """The parameters of one sweep (the ``ablations`` flow's parameters).

    Attributes:
        axis: the axis name (``nfe``, ``temperature``, ``cfg``, ``schedule``, ``t_min``, ...).
        values: replaces the value list of the axis' first grid key.
        grid: replaces the whole grid ({dotted key: values}).
        workdir: the project the trials read (params file, checkpoint, token shards) and where
            tables and trial folders go. Every relative path (settings file, the settings'
            paths, ``checkpoint``) is relative to it; paths inside the params file are relative
            to the params file's folder (:mod:`unmask.paths`) — never to a process' cwd.
        settings: the settings file (absolute, or relative to ``workdir``).
        checkpoint: the checkpoint sampling-time axes reuse (default from the settings).
        overrides: ``params.yaml`` overrides for every point (``["train.steps=50"]`` or a
            mapping of dotted keys).
        n_per_class / metric / retries / num_workers / max_concurrent_trials: override the
            settings (eval.n_per_class, eval.metric, retries, ray.num_workers,
            ray.max_concurrent_trials).
        force: rerun points that already have a FINISHED run.
        experiment: MLflow experiment (default ``<experiment_prefix><axis>``).
        tags: extra tags on every run (the flow adds the Prefect flow-run id and name).
    """

    model_config = ConfigDict(extra="forbid")

    axis: str
    values: list[Any] | None = None
    grid: dict[str, list[Any]] | None = None
    workdir: str = "."
    settings: str = "flows/ablations.yaml"
    checkpoint: str | None = None
    overrides: list[str] | dict[str, Any] = Field(default_factory=list)
    n_per_class: int | None = None
    metric: str | None = None
    retries: int | None = None
    num_workers: int | None = None
    max_concurrent_trials: int | None = None
    force: bool = False
    experiment: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


#: Metrics shown beside the primary one in a sweep's Prefect table (when a trial has them).
HEADLINE_METRICS = ("fid", "hist_tv", "nelbo_bpt", "nfe", "seconds_per_sample", "train_seconds",
                    "compute_seconds")


def _fmt_num(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def dotted_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` (values parsed as YAML) or a mapping → ``{"a.b": 1, ...}``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected KEY=VALUE (e.g. train.steps=100)")
        out[key.strip()] = yaml.safe_load(value)
    return out


@dataclass
class PlannedPoint:
    """A grid point with its key, its trial spec, and its FINISHED run if one exists."""

    point: GridPoint
    key: str
    spec: TrialSpec
    finished: Any = None

    @property
    def skipped(self) -> bool:
        return self.finished is not None


@dataclass
class SweepSummary:
    """What a sweep did."""

    axis: str
    experiment: str
    parent_run_id: str
    csv: Path
    rows: list[dict[str, Any]]
    completed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self, uri: str, experiment_id: str) -> list[dict[str, Any]]:
        """One row per grid point for a Prefect table artifact: point, status, the primary
        metric and its value, the other headline metrics present, the MLflow run link."""

        rows = []
        for r in self.rows:
            row: dict[str, Any] = {"index": r["index"], "point": r["point"],
                                   "status": r["status"],
                                   "primary_metric": r.get("primary_metric", ""),
                                   "primary": _fmt_num(r.get("primary"))}
            for k in HEADLINE_METRICS:
                if k in r and k != row["primary_metric"]:
                    row[k] = _fmt_num(r[k])
            if r.get("error"):
                row["error"] = str(r["error"])[:300]
            run_id = r.get("mlflow_run_id")
            row["mlflow_run"] = run_link(uri, experiment_id, run_id) if run_id else ""
            rows.append(row)
        return rows

    def markdown(self, uri: str, experiment_id: str) -> str:
        """The sweep in a few lines (Prefect markdown artifact): what ran, where its runs and
        table are, the best point by the primary metric (lower is better for every primary
        metric a trial reports: FID, histogram TV), and the errors of failed points."""

        done = [r for r in self.rows if r["status"] in ("completed", "skipped")
                and isinstance(r.get("primary"), int | float)]
        lines = [f"# Ablation `{self.axis}`", "",
                 f"- points: {len(self.rows)} — {len(self.completed)} run, {len(self.skipped)} "
                 f"reused (finished before), {len(self.failed)} failed",
                 f"- wall time: {self.seconds:.1f} s",
                 f"- MLflow experiment `{self.experiment}`, sweep run: "
                 f"{run_link(uri, experiment_id, self.parent_run_id)}",
                 f"- table: `{self.csv}`"]
        if done:
            best = min(done, key=lambda r: r["primary"])
            lines.append(f"- best point: **{best['point']}** ({best['primary_metric']} = "
                         f"{_fmt_num(best['primary'])})")
        if self.failed:
            lines += ["", "## Failed points", ""]
            lines += [f"- `{r['point']}`: {r.get('error', '')}" for r in self.rows
                      if r["status"] == "failed"]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "experiment": self.experiment,
                "parent_run_id": self.parent_run_id, "csv": str(self.csv),
                "completed": self.completed, "skipped": self.skipped,
                "failed": {str(k): v for k, v in self.failed.items()},
                "seconds": round(self.seconds, 2)}


def _file_id(path: Path) -> str:
    """A checkpoint's identity: its recorded sha256 (sidecar), else size + mtime."""
    side = path.with_name(path.name + ".sha256")
    if side.is_file():
        return side.read_text().split()[0]
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


class Ablation:
    """One sweep over one axis (see the module docstring).

    ``trainable`` (class attribute, default None = :func:`~unmask.orchestration.trials.
    tune_trainable`) is the Tune function each trial runs; tests substitute a light one.
    """

    trainable: Any = None

    def __init__(self, request: AblationRequest) -> None:
        self.request = r = request
        self.workdir = Path(r.workdir).resolve()
        overrides: dict[str, Any] = {}
        if r.n_per_class is not None:
            overrides.setdefault("eval", {})["n_per_class"] = r.n_per_class
        if r.metric is not None:
            overrides.setdefault("eval", {})["metric"] = r.metric
        if r.num_workers is not None:
            overrides.setdefault("ray", {})["num_workers"] = r.num_workers
        if r.max_concurrent_trials is not None:
            overrides.setdefault("ray", {})["max_concurrent_trials"] = r.max_concurrent_trials
        if r.retries is not None:
            overrides["retries"] = r.retries
        self.settings: AblationSettings = load_settings(resolve(r.settings, self.workdir),
                                                        overrides)
        self.spec = self.settings.axis(r.axis)
        self.points = expand(self.spec, r.values, r.grid)
        self.experiment = r.experiment or f"{self.settings.experiment_prefix}{r.axis}"
        s = self.settings
        self.params_path = resolve(s.params, self.workdir)
        self.root = project_root(self.params_path)  # what the params' own paths are relative to
        self.checkpoint = resolve(r.checkpoint or s.checkpoint, self.workdir)
        self.tokens_dir = resolve(s.tokens, self.workdir)
        self.runs_dir = resolve(s.runs, self.workdir)
        if s.ray.shared_storage:  # trial folders and Ray storage where every node reaches them
            self.runs_dir = Path(s.ray.shared_storage) / "runs"
        self.csv_path = resolve(s.output, self.workdir) / f"{r.axis}.csv"
        self.uri = ""  # set by plan(): the store named by the params' tracking.root
        self.base_overrides = dotted_overrides(r.overrides)
        self.planned: list[PlannedPoint] = []
        self.experiment_id: str | None = None

    # -- planning ------------------------------------------------------------------------------

    def _point_overrides(self, point: GridPoint) -> dict[str, Any]:
        e = self.settings.eval
        return {**self.base_overrides, **self.spec.fixed, **resolve_overrides(point.values),
                "sample.n_per_class": e.n_per_class, "evaluate.n_sequences": e.nelbo_sequences,
                "evaluate.num_samples": e.nelbo_samples}

    def required_inputs(self, base: Any) -> list[tuple[Path, str]]:
        """The files every trial of this axis reads, in pipeline order, with what they are."""
        split = base.evaluate.split
        need: list[tuple[Path, str]] = []
        if self.settings.eval.metric != "stats":  # FID against the real held-out images
            need.append((self.tokens_dir.parent / "prepared" / f"{split}.npz",
                         f"the prepared held-out images (evaluate.split = {split})"))
        if base.tokenizer.kind == "vq":
            need.append((resolve(base.tokenizer.path, self.root), "the trained VQ tokenizer"))
        if self.spec.kind == "training":
            need.append((self.tokens_dir / "train" / "manifest.json", "the training token shard"))
        need.append((self.tokens_dir / split / "manifest.json",
                     f"the held-out token shard (evaluate.split = {split})"))
        if self.spec.kind == "sampling":
            need.append((self.checkpoint, "the trained checkpoint sampling-time axes reuse "
                                          "(or pass checkpoint=...)"))
        return need

    def preflight(self) -> Any:
        """Validate the base params and check every input exists (:func:`unmask.paths.require`:
        one error naming the first missing file and the DVC stage that writes it). Sets the
        tracking URI (the params' ``tracking.root`` store, or the server serving it). Returns
        the base params."""

        require([(self.params_path, "the params file")], self.root)
        base = self._load_params(self.base_overrides)  # the base params must be valid
        require(self.required_inputs(base), self.root)
        self.uri = tracking_uri(root=resolve(base.tracking.root, self.root))
        return base

    def _identity(self) -> dict[str, Any]:
        """What, besides the params, a trial result depends on."""

        ident: dict[str, Any] = {"kind": self.spec.kind,
                                 "eval": self.settings.eval.model_dump(mode="json")}
        base = self.preflight()
        split = base.evaluate.split
        ident["heldout"] = TokenShards(self.tokens_dir / split, verify=False).hash
        if self.spec.kind == "sampling":
            ident["checkpoint"] = _file_id(self.checkpoint)
        else:
            ident["train_data"] = TokenShards(self.tokens_dir / "train", verify=False).hash
        return ident

    def _load_params(self, overrides: Mapping[str, Any]) -> Any:
        return load_params(self.params_path, overrides)

    def plan(self) -> list[PlannedPoint]:
        """Keys, specs and finished runs of every point (needs the tracking store)."""

        ident = self._identity()
        self.experiment_id = runs.ensure_experiment(self.uri, self.experiment)
        finished = {} if self.request.force else runs.finished_points(self.uri,
                                                                       self.experiment_id)
        r, s = self.request, self.settings
        self.planned = []
        for p in self.points:
            overrides = self._point_overrides(p)
            try:
                flat = self._load_params(overrides).flat()
                resolved = {k: flat[k] for k in RELEVANT_SECTIONS if k in flat}
            except ConfigError as e:  # fails as a trial, with this message
                resolved = {"invalid": str(e), "overrides": overrides}
            key = grid_key({"identity": ident, "params": resolved})
            spec = TrialSpec(
                index=p.index, label=p.label, axis=r.axis, kind=self.spec.kind, key=key,
                point=dict(p.values), overrides=overrides, params_path=str(self.params_path),
                root=str(self.root),
                checkpoint=str(self.checkpoint) if self.spec.kind == "sampling" else None,
                tokens_dir=str(self.tokens_dir), trial_dir=str(self.runs_dir / r.axis / key),
                ray_storage=str(self.runs_dir / "ray"), eval=s.eval, ray=s.ray,
                tracking_uri=self.uri, experiment_id=self.experiment_id, parent_run_id="",
                tags=dict(r.tags))
            self.planned.append(PlannedPoint(p, key, spec, finished.get(key)))
        if s.ray.shared_storage:  # trials read their inputs from there, not this project

            stage_planned(self.planned, s.ray.shared_storage)
        return self.planned

    # -- running -------------------------------------------------------------------------------

    def run(self, board: TrialBoard | None = None) -> SweepSummary:
        """Run the sweep (plans first if needed). Trial events go to ``board``."""

        start = time.perf_counter()
        if not self.planned:
            self.plan()
        board = board or TrialBoard()
        r, s = self.request, self.settings
        todo = [pp for pp in self.planned if not pp.skipped]
        if r.force:
            for pp in todo:  # start trained points from scratch
                shutil.rmtree(pp.spec.trial_dir, ignore_errors=True)
                shutil.rmtree(Path(pp.spec.ray_storage) / f"{r.axis}-{pp.key}",
                              ignore_errors=True)
        tracker = Tracker(self.uri)
        tags = {**r.tags, "unmask.kind": "sweep", "unmask.ablation": r.axis,
                "unmask.axis_kind": self.spec.kind}
        params = {"axis": r.axis, "grid": json.dumps(self._grid()), "points": len(self.points),
                  "overrides": json.dumps(self.base_overrides), "force": r.force,
                  "retries": s.retries, "checkpoint": str(self.checkpoint)
                  if self.spec.kind == "sampling" else "trained per point",
                  "eval": s.eval.model_dump(), "ray": s.ray.model_dump()}
        with tracker.start_run(self.experiment, f"{r.axis}-sweep", params=params, tags=tags):
            parent = tracker.run_id
            tracker.set_tags({"unmask.sweep": parent})
            specs = [pp.spec.model_copy(update={"parent_run_id": parent,
                                                "tags": {**pp.spec.tags, "unmask.sweep": parent}})
                     for pp in todo]
            if specs:
                import ray  # why: ray is slow to import; sweeps only

                ours = not ray.is_initialized()
                ray_init(s.ray.address, num_cpus=s.ray.num_cpus, num_gpus=s.ray.num_gpus)
                try:
                    run_grid(specs, name=f"{r.axis}-{parent[:12]}",
                             storage_path=self.runs_dir / "tune", ray=s.ray, retries=s.retries,
                             board=board, trainable=self.trainable)
                finally:
                    if ours:
                        ray.shutdown()
            summary = self._summarise(parent, board.outcomes)
            tracker.log_metrics({"points": len(self.points), "completed": len(summary.completed),
                                 "skipped": len(summary.skipped),
                                 "failed": len(summary.failed)}, step=0)
            tracker.log_artifact(summary.csv)
            if summary.failed:
                tracker.set_tags({"unmask.failed_points": json.dumps(summary.failed)[:4900]})
                tracker.end_run("FAILED")
        summary.seconds = time.perf_counter() - start
        refresh_report(self.uri, self.workdir / s.output)  # after the parent run is closed
        return summary

    def _grid(self) -> dict[str, list[Any]]:
        keys = list(self.points[0].values)
        return {k: list(dict.fromkeys(json.dumps(p.values[k]) for p in self.points))
                for k in keys}

    def _summarise(self, parent: str, outcomes: Mapping[int, TrialOutcome]) -> SweepSummary:
        """The grid's table from the MLflow runs (this sweep's children and skipped points'
        runs), plus the points that have no run; written as CSV."""

        c = runs.client(self.uri)
        children = {run.data.tags.get(runs.GRID_KEY): run for run in c.search_runs(
            [self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
            max_results=5000)}
        summary = SweepSummary(self.request.axis, self.experiment, parent, self.csv_path, [])
        for pp in self.planned:
            run = pp.finished if pp.skipped else children.get(pp.key)
            out = outcomes.get(pp.point.index)
            if pp.skipped:
                status = "skipped"
                summary.skipped.append(pp.point.index)
            elif out is not None and out.status == "completed":
                status = "completed"
                summary.completed.append(pp.point.index)
            else:
                status = "failed"
                summary.failed[pp.point.index] = (out.error if out else None) or "no outcome"
            row: dict[str, Any] = {"index": pp.point.index, "point": pp.point.label,
                                   **pp.point.values, "status": status}
            if run is not None:
                m = run.data.metrics
                primary = run.data.tags.get("unmask.primary_metric")
                row.update({"primary_metric": primary or "",
                            "primary": m.get(primary) if primary else None,
                            **dict(sorted(m.items())), "mlflow_run_id": run.info.run_id,
                            "mlflow_status": run.info.status})
            if status == "failed":
                if run is not None and run.data.tags.get("unmask.error"):
                    summary.failed[pp.point.index] = run.data.tags["unmask.error"]
                row["error"] = summary.failed[pp.point.index]
            row["grid_key"] = pp.key
            summary.rows.append(row)
        write_csv(self.csv_path, summary.rows, first=["index", "point"])
        return summary
