"""The generated report: MLflow runs → one self-contained HTML page + CSV tables.

The names below load their module on first use (:func:`unmask.runtime.lazy_exports`), so
``unmask.reporting.images`` (used by stage code) stays light — no pandas, plotly or MLflow:

- :mod:`~unmask.reporting.images`    — sample grids, chain strips, PNGs (numpy + PIL only)
- :mod:`~unmask.reporting.build`     — the one writer: :func:`build_report` (the store: root
  pipeline, ``unmask report``, sweeps) and :func:`write_pipeline_report` (one
  ``pipelines/<exp>/`` pipeline's experiment)
- :mod:`~unmask.reporting.sections`  — the page's sections
- :mod:`~unmask.reporting.runs`      — ``mlflow.search_runs`` → pandas, the tagging convention
- :mod:`~unmask.reporting.ablations` — what each ablation plots (x, groups, metric)
- :mod:`~unmask.reporting.claims`    — the papers' claims and numbers (``references.yaml``)
- :mod:`~unmask.reporting.figures`   — plotly figures, embedded images
- :mod:`~unmask.reporting.page`      — HTML building blocks

Usage::

    from unmask.reporting import build_report, write_pipeline_report
    build_report(None, Path("reports"))            # every experiment of the default store
    build_report("sqlite:///mlruns/mlflow.db", Path("reports/ablations"), ["ablations/nfe"])
    write_pipeline_report("report", title=p.report.title, tracking=p.tracking,
                          experiment=p.tracking.experiment)
"""

from unmask.runtime import lazy_exports

_LAZY = {
    "unmask.reporting.build": ["build_report", "write_pipeline_report"],
    "unmask.reporting.runs": ["load_runs"],
    "unmask.reporting.ablations": ["ABLATIONS", "ABLATION_IDS", "AblationSpec", "ablation_table"],
    "unmask.reporting.claims": ["fidelity_table", "load_claims", "references"],
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [name for names in _LAZY.values() for name in names]
