"""Process environment for the services and Ray: telemetry off, free ports, ``ray.init``.

Offline, every service must be told not to phone home (DESIGN.md), and Ray probes cloud
metadata at start-up unless ``~/ray_bootstrap_config.yaml`` exists (``{}`` is enough).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from unmask.runtime import TELEMETRY_OFF, service_env

__all__ = [
    "TELEMETRY_OFF",
    "HOST",
    "service_env",
    "free_port",
    "port_is_free",
    "ensure_ray_bootstrap",
    "ray_init",
]

HOST = "127.0.0.1"

def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a TCP port can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = HOST) -> int:
    """``preferred`` if it is free, else a port the OS hands out (bind to port 0)."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: Ray ``worker_process_setup_hook`` of :func:`ray_init` (a name, not an import: the hook module
#: sits above the trial code, which itself uses this module)
WARM_HOOK = "unmask.orchestration.warm.warm_worker"


def ensure_ray_bootstrap(home: str | Path | None = None) -> Path:
    """Create ``~/ray_bootstrap_config.yaml`` (``{}``) if missing, so a local ``ray.init``
    does not wait on cloud-metadata probes offline. Returns its path."""
    path = Path(home or Path.home()) / "ray_bootstrap_config.yaml"
    if not path.exists():
        path.write_text("{}\n")
    return path


def ray_init(address: str | None = None, num_cpus: int | None = None,
             num_gpus: int | None = None, **kwargs: Any) -> Any:
    """Connect to Ray: ``address`` (or ``$RAY_ADDRESS``, e.g. ``auto`` on a cluster) when given,
    else start a local instance with ``num_cpus``/``num_gpus``. Idempotent: returns the current
    context when Ray is already initialised."""
    os.environ.update(TELEMETRY_OFF)
    import ray  # why: ray is slow to import; sweeps only

    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or os.environ.get("RAY_ADDRESS") or None
    opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, **kwargs}
    # Workers Ray starts ahead of time import torch / MLflow / the trial code while the driver
    # plans the grid, instead of inside the first trial (~3 s on a CPU).
    opts.setdefault("runtime_env", {"worker_process_setup_hook": WARM_HOOK})
    if address:
        return ray.init(address=address, **opts)
    ensure_ray_bootstrap()
    opts.setdefault("dashboard_host", HOST)  # if the dashboard is turned on: this machine only
    return ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **opts)
