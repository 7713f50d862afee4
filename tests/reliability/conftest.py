"""Fixtures of the reliability suite (helpers live in reliability_helpers.py)."""

from __future__ import annotations

import pytest
from reliability_helpers import MlflowServer


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "mlflow-server")
    server.root.mkdir()
    server.start()
    yield server
    server.stop()
