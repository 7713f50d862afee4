"""``python -m unmask.stages emigm.evaluate``: sample every enabled branch
(:func:`unmask.emigm.sample.sample_emigm`) and score it (FID, NFE) → ``out/metrics/metrics.json``,
``out/samples/<kind>.png`` and the page ``out/report`` (the one report writer's, over the
experiment's MLflow runs); wall clock → ``out/runs/timings``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask.emigm.continuous import load_continuous
from unmask.emigm.layout import OUT, TIMINGS, Kind, write_json
from unmask.emigm.params import EMIGMParams
from unmask.emigm.pipeline import fid_reference, load_discrete, token_decoder
from unmask.emigm.sample import sample_emigm
from unmask.metrics import as_mlflow_metrics, compute_fidelity
from unmask.reporting.images import image_grid, save_png
from unmask.runtime import read_timings, write_timings
from unmask.stages import stage
from unmask.tracking import make_tracker
from unmask.tracking_tags import PAPER, PAPER_EMIGM, STAGE

__all__ = ["evaluate"]

KINDS: tuple[Kind, ...] = ("discrete", "continuous")


@stage("emigm.evaluate", params=EMIGMParams)
def evaluate(p: EMIGMParams) -> None:
    """Sample and score (FID) every enabled branch → out/metrics, out/samples, out/report.

    Logs FID, NFE and seconds per image as the MLflow run ``evaluate`` (wall clock also to
    out/runs/timings); the page is the one report writer's, over the experiment's runs."""
    from unmask.reporting.build import write_pipeline_report  # pandas, plotly: slow to import

    n, classes = p.evaluate.n_fid, p.data.num_classes
    ref, key, ref_note = fid_reference(p)
    labels = torch.arange(n) % classes
    tracker = make_tracker(p.tracking)
    metrics: dict[str, Any] = {}
    timings: dict[str, float] = {}  # wall clock: runs/timings, not the DVC metrics file
    figures: dict[str, Path] = {}
    with tracker.start_run(p.tracking.experiment, "evaluate", params=p.model_dump(mode="json"),
                           tags={PAPER: PAPER_EMIGM, STAGE: "evaluate"}):
        for kind in KINDS:
            if not (p.discrete if kind == "discrete" else p.continuous).enabled:
                continue
            ckpt = OUT / "models" / kind / "model.pt"
            model = load_discrete(ckpt) if kind == "discrete" else load_continuous(ckpt)
            smp = sample_emigm(model, token_decoder(p, kind), labels, p,
                               batch_size=p.evaluate.batch_size, progress=True)
            fid = compute_fidelity(smp.images, ref, metrics="fid", reference_key=key,
                                   batch_size=50)
            row = {f"{kind}.{k}": v for k, v in as_mlflow_metrics(fid).items()}
            row.update({f"{kind}.nfe": smp.nfe, f"{kind}.num_samples": len(smp.images)})
            timings[f"{kind}.seconds_per_image"] = smp.seconds_per_image
            tracker.log_metrics({**row, f"{kind}.seconds_per_image": smp.seconds_per_image},
                                step=0)
            metrics.update(row, **{f"{kind}.nfe_label": smp.nfe_label})
            per = p.sample.n_per_class
            grid = np.stack([smp.images[smp.labels == c][:per] for c in range(min(classes, 10))])
            title = f"{kind} samples (rows: classes)"
            figures[title] = save_png(image_grid(grid, scale=2), OUT / "samples" / f"{kind}.png")
            tracker.log_artifact(figures[title])
        for kind in KINDS:
            path = OUT / "models" / kind / "train.json"
            if path.is_file():
                tr = json.loads(path.read_text())
                metrics.update({f"{kind}.encoder_tokens_per_sample":
                                    tr["encoder_tokens_per_sample"],
                                f"{kind}.num_params": tr["num_params"]})
                secs = read_timings(TIMINGS / f"train-{kind}.json").get("elapsed_s")
                if secs is not None:
                    timings[f"{kind}.train_seconds"] = secs
        write_json(OUT / "metrics" / "metrics.json", metrics)
        write_timings(TIMINGS / "evaluate.json", timings)
        tracker.log_artifact(OUT / "metrics" / "metrics.json")
    # after the run has ended: the page reads FINISHED runs only
    write_pipeline_report(OUT / "report", title=p.report.title, tracking=p.tracking,
                          experiment=p.tracking.experiment, figures=figures,
                          notes={"FID": f"{n} class-balanced samples vs {ref_note} (a small-"
                                        "sample FID is biased upwards: compare within a page)"})
