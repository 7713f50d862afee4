"""Stages of the MDM-Prime pipelines (``pipelines/text-default``, ``pipelines/owt``,
``pipelines/*-prime``), run from the pipeline's folder with the one stage runner::

    python -m unmask.stages prime.prepare            → data/{train,valid}, data/meta.json
    python -m unmask.stages prime.train --ell 2      → models/l2/{model.pt,train.json}
    python -m unmask.stages prime.evaluate --ell 2   → eval/l2/{metrics.json,nelbo.npy,
                                                        samples.txt | samples.png}
    python -m unmask.stages prime.report             → metrics.json, reports/{index.html,
                                                        metrics.csv,ells.csv}
    python -m unmask.stages prime.seeds --seeds 0,1,2 --ells 1,2,4 --out seeds
    python -m unmask.stages prime.seeds-summary --seeds 0,1,2 --ells 1,2,4 --out seeds

(``--params FILE``, ``--set key=value``: :mod:`unmask.stages`). Each is a thin shell over
:mod:`unmask.prime.pipeline` (train / evaluate one ℓ), :mod:`unmask.prime.compare` (the ℓ
comparison; the page is :func:`unmask.reporting.build.write_pipeline_report`'s) and
:mod:`unmask.prime.seeds` (seed repeats); every one logs an MLflow run (experiment
``tracking.experiment``).
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic import ValidationError

from unmask.errors import ConfigError
from unmask.prime import compare, data, pipeline, seeds
from unmask.prime.config import PrimeParams, PrimeSection
from unmask.stages import stage
from unmask.tracking import make_tracker
from unmask.tracking_tags import prime_l_tags

__all__ = ["prepare", "train", "evaluate", "report", "seed_study", "seed_summary"]


def _check_ell(p: PrimeParams, ell: int) -> None:
    if ell not in p.prime.ells:
        raise ConfigError(f"--ell {ell} is not in prime.ells {p.prime.ells}")


def _ints(option: str, text: str) -> list[int]:
    """``"0,1,2"`` or ``"0 1 2"`` → [0, 1, 2]; anything else is a one-line error."""
    words = [w for w in re.split(r"[,\s]+", text.strip()) if w]
    if not words or not all(re.fullmatch(r"-?\d+", w) for w in words):
        raise ConfigError(f"--{option}: expected integers such as 0,1,2 (got {text!r})")
    return [int(w) for w in words]


@stage("prime.prepare", params=PrimeParams)
def prepare(p: PrimeParams) -> dict[str, Any]:
    """Tokenize the data section's source into data/{train,valid} shards and data/meta.json."""
    t0 = time.perf_counter()
    meta = data.prepare(p.data, pipeline.DATA)
    print(f"prepare: {meta['counts']} sequences of shape {meta['shape']}, C = "
          f"{meta['vocab_size']} ({time.perf_counter() - t0:.0f}s) → {pipeline.DATA}")
    return meta


@stage("prime.train", params=PrimeParams)
def train(p: PrimeParams, ell: int) -> dict[str, Any]:
    """Train the ℓ sub-token model (resumable) → models/l<ℓ>."""
    _check_ell(p, ell)
    return pipeline.train_ell(p, ell)


@stage("prime.evaluate", params=PrimeParams)
def evaluate(p: PrimeParams, ell: int) -> dict[str, Any]:
    """NELBO, perplexity, samples and idle-step ratio of models/l<ℓ> → eval/l<ℓ>."""
    _check_ell(p, ell)
    return pipeline.evaluate_ell(p, ell)


@stage("prime.report", params=PrimeParams)
def report(p: PrimeParams) -> dict[str, Any]:
    """Every ℓ side by side with the paired NELBO difference to ℓ = 1 → metrics.json, reports/."""
    summary = compare.compare(p.prime.ells)
    compare.write_tables(summary)
    tracker = make_tracker(p.tracking)
    with tracker.start_run(p.tracking.experiment, "report", params=p.flat(),
                           tags={"stage": "report", "estimator": summary["estimator"],
                                 **prime_l_tags("summary")}):
        flat = {}
        for key, m in summary["per_ell"].items():
            for k in ("perplexity", "nelbo_nats_per_token", "bits_per_token", "isr",
                      "isr_token", "delta_nelbo_vs_l1"):
                if m.get(k) is not None:
                    flat[f"{k}_{key}"] = m[k]
        tracker.log_metrics(flat, step=0)
        tracker.set_tags({"verdict": summary["verdict"]})
        tracker.log_artifact(compare.TABLE)
        tracker.log_artifact(compare.METRICS)
    from unmask.reporting.build import write_pipeline_report  # pandas, plotly: this stage only

    # after the run has ended: the page reads finished runs only
    write_pipeline_report(compare.REPORTS, title=p.report.title, tracking=p.tracking,
                          experiment=p.tracking.experiment, figures=compare.figures(summary),
                          notes=compare.notes(summary))
    print(f"report: {summary['verdict']}")
    return summary


@stage("prime.seeds", params=PrimeParams)
def seed_study(p: PrimeParams, seeds: str = "0,1,2", ells: str = "1,2,4", out: str = "seeds",
               jobs: int = 1) -> dict[str, Any]:
    """Train + evaluate every ℓ at each training seed under <out>/s<seed>, then summarise."""
    return _seeds(p, seeds, ells, out, jobs=jobs, train=True)


@stage("prime.seeds-summary", params=PrimeParams)
def seed_summary(p: PrimeParams, seeds: str = "0,1,2", ells: str = "1,2,4",
                 out: str = "seeds") -> dict[str, Any]:
    """Summarise the finished cells of a seed study (no training)."""
    return _seeds(p, seeds, ells, out, jobs=1, train=False)


def _seeds(p: PrimeParams, seed_list: str, ell_list: str, out: str, *, jobs: int,
           train: bool) -> dict[str, Any]:
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1 (got {jobs})")
    ells = _ints("ells", ell_list)
    try:
        PrimeSection(ells=ells)  # the cells' prime.ells: the same rule as the params file
    except ValidationError as e:
        raise ConfigError(f"--ells: {e.errors()[0]['msg'].removeprefix('Value error, ')}"
                          ) from None
    return seeds.study(p, _ints("seeds", seed_list), ells, out, jobs=jobs, train=train)
