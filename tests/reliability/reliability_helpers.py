"""Helpers of the reliability suite: subprocess runners, a real MLflow server on
127.0.0.1 that a test can kill and restart, telemetry off, one intra-op thread."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from unmask.orchestration import procs
from unmask.orchestration.env import free_port, service_env

torch.set_num_threads(1)
for _k, _v in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(sys.executable).parent


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell running our commands: no tracking server configured,
    one thread, telemetry off, no debug tracebacks."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MLFLOW_TRACKING_URI", "UNMASK_DEBUG", "PREFECT_API_URL", "RAY_ADDRESS"}
    }
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **extra,
        }
    )
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **env: str):
    """Run ``unmask ARGS`` (the console script) in ``cwd``."""
    return subprocess.run(
        [str(BIN / "unmask"), *args],
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_user_error(out, *needles: str) -> str:
    """A user error: exit status 2, one ``error: ...`` line naming ``needles``, no traceback."""
    err = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out.stdout, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite store in ``root``; stop / start at will
    (same port, same store)."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.info: procs.ProcInfo | None = None

    def start(self, timeout: float = 120) -> None:
        argv = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = service_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        self.info = procs.start("mlflow", argv, self.root / "server.log", env=env, cwd=self.root)
        if not procs.poll(f"{self.url}/health", timeout, proc=self.info):
            log = (self.root / "server.log").read_text()[-3000:]
            self.stop()
            raise RuntimeError(f"mlflow server did not start:\n{log}")

    def stop(self) -> None:
        if self.info is not None:
            procs.stop(self.info, grace=0.5)  # SIGTERM, then SIGKILL: a crash, not a shutdown
            self.info = None
            deadline = time.monotonic() + 30
            while procs.poll(f"{self.url}/health", 0.2) and time.monotonic() < deadline:
                time.sleep(0.2)
