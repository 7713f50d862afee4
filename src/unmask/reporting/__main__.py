"""``python -m unmask.reporting [--tracking-uri URI] [--out reports] [--experiment NAME ...]``:
build the report from an MLflow store (what the end of an ablation flow calls)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unmask.reporting.build import build_report


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m unmask.reporting", description=__doc__)
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)",
    )
    ap.add_argument("--out", default="reports", help="output folder (default: %(default)s)")
    ap.add_argument(
        "--experiment",
        action="append",
        default=None,
        help="experiment to include (repeatable; default: all)",
    )
    ap.add_argument("--title", default="unmask — ablations and runs")
    a = ap.parse_args(argv)
    path = build_report(a.tracking_uri, Path(a.out), a.experiment, title=a.title)
    print(f"report: {path}")
    return path


if __name__ == "__main__":
    main()
