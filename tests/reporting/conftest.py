"""Fixtures of the report tests: a session MLflow store filled by
:func:`unmask.reporting.demo.populate` and the report built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from unmask.reporting.demo import populate


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return populate(tmp_path_factory.mktemp("mlflow-all"))


@pytest.fixture(scope="session")
def report(store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unmask.reporting.build import build_report

    return build_report(store, tmp_path_factory.mktemp("report"))
