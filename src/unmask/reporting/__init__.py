"""The generated report: MLflow runs → one self-contained HTML page + CSV tables.

Nothing is imported here, so ``unmask.reporting.images`` (used by stage code) stays light;
import what you need from its module:

- :mod:`~unmask.reporting.images`    — sample grids, chain strips, PNGs (numpy + PIL only)
- :mod:`~unmask.reporting.runs`      — ``mlflow.search_runs`` → pandas, the tagging convention
- :mod:`~unmask.reporting.ablations` — what each ablation plots (x, groups, metric)
- :mod:`~unmask.reporting.claims`    — the papers' claims and numbers (``references.yaml``)
- :mod:`~unmask.reporting.figures`   — plotly figures, embedded images
- :mod:`~unmask.reporting.page`      — HTML building blocks
- :mod:`~unmask.reporting.build`     — :func:`~unmask.reporting.build.build_report` (the root
  pipeline's and the sweeps' report over the store)

Usage::

    from unmask.reporting.build import build_report
    build_report(None, Path("reports"))            # every experiment of the default store
    build_report("sqlite:///mlruns/mlflow.db", Path("reports/ablations"), ["ablations/nfe"])
"""
