"""The Ray ``worker_process_setup_hook`` (:data:`unmask.orchestration.env.WARM_HOOK`).

Ray workers it starts ahead of time import torch, MLflow and the trial code while the driver
plans the grid, instead of inside the first trial (~3 s on a CPU). Importing this module imports
the trial code; :func:`warm_worker` adds the heavy third-party packages.
"""

from __future__ import annotations

import unmask.orchestration.evaluation  # noqa: F401
import unmask.orchestration.trials  # noqa: F401
import unmask.stages.sample  # noqa: F401
import unmask.training.loop  # noqa: F401

__all__ = ["warm_worker"]


def warm_worker() -> None:
    """Import what every trial and training worker needs (run once per Ray worker process)."""
    import mlflow  # noqa: F401  # why: heavy (~1 s); only Ray workers run this hook
    import torch  # noqa: F401  # why: heavy; only Ray workers run this hook
