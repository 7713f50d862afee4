"""Stage ``experiment.report``: the paper-experiment pipeline's page, by the one report writer.

:func:`unmask.reporting.build.write_pipeline_report` over the finished MLflow runs of
``tracking.experiment`` (``train-<run>``, ``evaluate-<run>``: their metrics, unavailable-metric
reasons, commits), with each run's sample grid (``out/samples/<run>/grid.png``) on top and a
note per run: the sampler it was drawn with and, for DI Table S8's κ-schedule ablation
(``schedules`` set: one run per schedule), that row's FID-5k in the paper. Writes
``out/report/{index.html, metrics.csv}``; with tracking disabled, the writer's page that says
so. Run ``python -m unmask.stages experiment.report`` after the sample (and evaluate) stages.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from unmask.errors import ConfigError
from unmask.models import ModelConfig
from unmask.reporting.images import image_grid, save_png
from unmask.stages import stage
from unmask.stages.experiment.params import ExperimentParams

__all__ = ["run", "figure", "notes", "title", "MAX_PER_CLASS"]

#: Columns of a class grid on the page: DI Tab. S8's 500 samples per class would make one
#: ~33,000 px wide image per schedule; the page shows the first ones (grid.png keeps all).
MAX_PER_CLASS = 16

_DATASET = {"imagenet": "ImageNet", "coco": "MS-COCO", "cc12m": "CC12M", "cifar10": "CIFAR-10"}


def title(p: ExperimentParams) -> str:
    """``report.title``, else ``Discrete Interpolants — <dataset> (<name>)``."""
    if p.report.title:
        return p.report.title
    d = p.data
    size = "" if d.dataset == "cifar10" else f" {d.image_size}×{d.image_size}"
    return f"Discrete Interpolants — {_DATASET[d.dataset]}{size} ({p.name})"


def figure(out: Path, run: str, tmp: Path) -> tuple[str, Path]:
    """(caption, PNG) of ``run``'s sample grid: the sample stage's ``grid.png``; a class grid
    wider than :data:`MAX_PER_CLASS` columns is redrawn from ``samples.npz`` with the first
    ones of each class (into ``tmp``), as the sample stage draws it."""
    d = out / "samples" / run
    grid = d / "grid.png"
    if not grid.is_file() or not (d / "samples.npz").is_file():
        raise ConfigError(f"{grid}: no samples of run {run!r}; run experiment.sample first")
    with np.load(d / "samples.npz") as z:
        if "labels" not in z.files:  # text-to-image: the first heldout.grid captions' samples
            return f"{run}: samples of held-out captions ({d / 'info.json'})", grid
        labels, images = z["labels"], z["images"]
    classes = list(dict.fromkeys(labels.tolist()))
    per_class = len(labels) // max(len(classes), 1)
    caption = f"{run}: one row per class ({', '.join(map(str, classes))})"
    if per_class <= MAX_PER_CLASS:
        return f"{caption}, {per_class} samples each", grid
    tiles = np.stack([images[labels == c][:MAX_PER_CLASS] for c in classes])
    scale = max(1, round(64 / images.shape[1]))  # the sample stage's upscaling
    path = save_png(image_grid(tiles, [str(c) for c in classes], scale=scale), tmp / f"{run}.png")
    return f"{caption}, the first {MAX_PER_CLASS} of {per_class} samples each ({grid})", path


def _sampler(out: Path, run: str) -> str:
    """How ``run`` was sampled, from ``out/metrics/sample-<run>.json``."""
    path = out / "metrics" / f"sample-{run}.json"
    if not path.is_file():
        return f"sampler settings not found ({path})"
    s = json.loads(path.read_text())
    return (f"{s['n_samples']} samples: {s['method']}, {s['steps']} steps (NFE {s['nfe']}), "
            f"CFG w = {s['cfg_scale']:g}, checkpoint step {s['checkpoint_step']}")


def _tab_s8(p: ExperimentParams, schedule: str) -> str:
    """DI Table S8's FID-5k of ``schedule`` at this model's timestep (ETM ✓ / ITM ✗), from the
    transcribed paper values; a schedule outside the table is said to be."""
    from unmask.reporting.claims import references, resolve_values  # pandas: slow to import

    timestep = p.model.get("timestep", ModelConfig.model_fields["timestep"].default)
    kind = "ETM" if timestep == "explicit" else "ITM"
    if p.train.keep_ratio > 0:  # a coupled run is none of the table's plain κ rows
        return f"no plain κ row of DI Tab. S8 (train.keep_ratio {p.train.keep_ratio:g})"
    value = resolve_values(references()).get(f"di_tab_s8/{schedule.capitalize()} ({kind})")
    if value is None:
        return f"not in DI Tab. S8 ({schedule}, {kind}): no paper FID-5k"
    return f"DI Tab. S8 FID-5k {value.display} ({schedule.capitalize()}, {kind})"


def notes(p: ExperimentParams, runs: list[str]) -> dict[str, str]:
    """The rows under the page's title: per run its sampler, and for a κ-schedule ablation
    (``schedules``) the paper's number of that schedule."""
    out = Path(p.out)
    if not p.schedules:
        return {f"run {r}": _sampler(out, r) for r in runs}
    return {f"schedule {r}": f"{_tab_s8(p, r)} · here: {_sampler(out, r)}" for r in runs}


@stage("experiment.report", params=ExperimentParams)
def run(p: ExperimentParams) -> dict[str, Any]:
    """Write ``out/report/{index.html, metrics.csv}`` (see the module docstring); returns the
    page's path and figure captions."""
    from unmask.reporting.build import write_pipeline_report  # pandas, plotly: slow to import

    out = Path(p.out)
    runs = list(p.schedules or [p.name])  # the sample stage's runs: one per schedule, else name
    with tempfile.TemporaryDirectory(prefix="unmask-report-") as tmp:
        figures = dict(figure(out, r, Path(tmp)) for r in runs)
        page = write_pipeline_report(out / "report", title=title(p), tracking=p.tracking,
                                     experiment=p.tracking.experiment, figures=figures,
                                     notes=notes(p, runs))
    print(f"report: {len(runs)} run(s) → {page}")
    return {"index": str(page), "figures": list(figures)}
