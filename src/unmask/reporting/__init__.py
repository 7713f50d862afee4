"""The generated report: MLflow runs → one self-contained HTML page + CSV tables.

- :mod:`~unmask.reporting.runs`      — ``mlflow.search_runs`` → pandas, the tagging convention
- :mod:`~unmask.reporting.ablations` — what each ablation plots (x, groups, metric)
- :mod:`~unmask.reporting.claims`    — the papers' claims and numbers (``references.yaml``)
  and whether our runs reproduce their direction
- :mod:`~unmask.reporting.figures`   — plotly figures, embedded images
- :mod:`~unmask.reporting.page`      — HTML building blocks
- :mod:`~unmask.reporting.build`     — :func:`build_report`

Usage::

    from unmask.reporting import build_report
    build_report(None, Path("reports"))            # every experiment of the default store
    build_report("sqlite:///mlruns/mlflow.db", Path("reports/ablations"), ["ablations/nfe"])
"""

from unmask.reporting.ablations import ABLATION_IDS, ABLATIONS, AblationSpec, ablation_table
from unmask.reporting.build import build_report
from unmask.reporting.claims import fidelity_table, load_claims, references
from unmask.reporting.runs import load_runs

__all__ = [
    "ABLATIONS",
    "ABLATION_IDS",
    "AblationSpec",
    "ablation_table",
    "build_report",
    "fidelity_table",
    "load_claims",
    "load_runs",
    "references",
]
