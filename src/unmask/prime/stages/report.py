"""``python -m unmask.stages prime.report``: every ℓ side by side with the paired NELBO
difference to ℓ = 1 (:mod:`unmask.prime.compare`) → ``metrics.json``, ``reports/{index.html,
metrics.csv,ells.csv}``; the page is :func:`unmask.reporting.build.write_pipeline_report`'s."""

from __future__ import annotations

from typing import Any

from unmask.prime import compare
from unmask.prime.config import PrimeParams
from unmask.stages import stage
from unmask.tracking import make_tracker
from unmask.tracking_tags import prime_l_tags

__all__ = ["report"]

_LOGGED = ("perplexity", "nelbo_nats_per_token", "bits_per_token", "isr", "isr_token",
           "delta_nelbo_vs_l1")


@stage("prime.report", params=PrimeParams)
def report(p: PrimeParams) -> dict[str, Any]:
    """Every ℓ side by side with the paired NELBO difference to ℓ = 1 → metrics.json, reports/."""
    from unmask.reporting.build import write_pipeline_report  # pandas, plotly: slow to import

    summary = compare.compare(p.prime.ells)
    compare.write_tables(summary)
    tracker = make_tracker(p.tracking)
    with tracker.start_run(p.tracking.experiment, "report", params=p.flat(),
                           tags={"stage": "report", "estimator": summary["estimator"],
                                 **prime_l_tags("summary")}):
        flat = {f"{k}_{key}": m[k] for key, m in summary["per_ell"].items()
                for k in _LOGGED if m.get(k) is not None}
        tracker.log_metrics(flat, step=0)
        tracker.set_tags({"verdict": summary["verdict"]})
        tracker.log_artifact(compare.TABLE)
        tracker.log_artifact(compare.METRICS)
    # after the run has ended: the page reads finished runs only
    write_pipeline_report(compare.REPORTS, title=p.report.title, tracking=p.tracking,
                          experiment=p.tracking.experiment, figures=compare.figures(summary),
                          notes=compare.notes(summary))
    print(f"report: {summary['verdict']}")
    return summary
