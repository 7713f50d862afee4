"""Stage ``report``: ``reports/index.html`` (sample grid, unmasking chain, metrics, params, git
commit; self-contained) and ``reports/metrics.csv``, from the outputs of the earlier stages."""

from __future__ import annotations

import json
from pathlib import Path

from unmask.config import Params
from unmask.report import write_report
from unmask.stages import PATHS, git_commit, main


def run(params: Params) -> Path:
    metrics = json.loads((PATHS.metrics / "metrics.json").read_text())
    info = json.loads((PATHS.samples / "info.json").read_text())
    train = json.loads((PATHS.models / "train.json").read_text())
    s = params.sample
    notes = {
        "model": f"{train['num_params']:,} parameters, {train['step']} steps, "
        f"final loss {train['loss']:.4f}, {train['elapsed_s']:.0f} s",
        "sampler": f"{info['method']}, {info['steps']} steps, NFE {info['nfe']}, "
        f"cfg {s.cfg_scale} ({s.cfg_schedule}), temperature {s.temperature}, "
        f"top-p {s.top_p}",
        "tokenizer": params.tokenizer.build().identity,
    }
    figures = {
        "Class-conditional samples (rows = classes)": PATHS.samples / "grid.png",
        "Unmasking chains (blue = [MASK])": PATHS.samples / "chain.png",
    }
    path = write_report(
        PATHS.reports,
        title=params.report.title,
        metrics=metrics,
        params=params.flat(),
        figures=figures,
        commit=git_commit(),
        notes=notes,
    )
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    main("report", run=run)
