"""Where Ray work can run: fail-fast resource checks and the node a trial ran on.

- :func:`require_resources` — fail fast, before submitting, when no set of alive nodes can hold
  a request (e.g. ``use_gpu`` without a GPU node): Ray Tune and Ray Train would otherwise wait
  forever for an autoscaler. ``UNMASK_RAY_AUTOSCALING=1`` turns the check off on a cluster whose
  autoscaler adds nodes on demand.
- :func:`node_tags` — which node ran a trial (MLflow tags ``ray.node_*``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["AUTOSCALING_ENV", "UnsatisfiableResources", "alive_nodes", "train_bundles",
           "require_resources", "node_tags"]

#: Set to 1 on a cluster with an autoscaler: resources may appear after the request.
AUTOSCALING_ENV = "UNMASK_RAY_AUTOSCALING"


class UnsatisfiableResources(ValueError):
    """No set of alive nodes can hold a resource request (one line naming what is missing)."""


def alive_nodes() -> list[dict[str, Any]]:
    """Alive nodes of the connected cluster: ``{"id", "name", "resources"}`` (totals)."""
    import ray  # why: ray is slow to import; sweeps only

    return [{"id": r["NodeID"], "name": r.get("NodeName", ""), "resources": dict(r["Resources"])}
            for r in ray.nodes() if r.get("Alive")]


def train_bundles(num_workers: int, cpus_per_worker: float, use_gpu: bool,
                  ) -> list[dict[str, float]]:
    """The resource bundles of Ray Train's workers (one GPU each with ``use_gpu``)."""
    return [{"CPU": cpus_per_worker, **({"GPU": 1.0} if use_gpu else {})}] * num_workers


def _fmt(res: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in res.items()
                           if not k.startswith("node:") and k not in
                           ("memory", "object_store_memory")) + "}"


def require_resources(bundles: Sequence[Mapping[str, float]], what: str,
                      nodes: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Raise :class:`UnsatisfiableResources` unless all ``bundles`` fit at once on the alive
    nodes' total resources (first-fit decreasing; each bundle on one node). Only the resources
    named in a bundle count; zero amounts are ignored. No-op when ``$UNMASK_RAY_AUTOSCALING``
    is 1 (an autoscaler may add the nodes) or Ray is not initialised and ``nodes`` not given.
    """
    if os.environ.get(AUTOSCALING_ENV, "") in ("1", "true"):
        return
    if nodes is None:
        import ray  # why: ray is slow to import; sweeps only

        if not ray.is_initialized():
            return
        nodes = alive_nodes()
    wanted = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    free = [dict(n["resources"]) for n in nodes]
    order = sorted(range(len(wanted)), key=lambda i: sorted(wanted[i].items()), reverse=True)
    for i in order:
        b = wanted[i]
        for f in free:
            if all(f.get(k, 0.0) + 1e-9 >= v for k, v in b.items()):
                for k, v in b.items():
                    f[k] -= v
                break
        else:
            have = "; ".join(f"{n['name'] or n['id'][:8]} {_fmt(n['resources'])}"
                             for n in nodes) or "no alive node"
            n_same = sum(1 for w in wanted if w == b)
            raise UnsatisfiableResources(
                f"{what} needs {n_same} x {_fmt(b)} but the Ray cluster cannot hold it "
                f"(alive nodes: {have}); add a node with these resources (e.g. `ray start "
                f"--num-gpus`), lower the request, or set {AUTOSCALING_ENV}=1 if an "
                "autoscaler adds nodes")


def node_tags(prefix: str = "ray.node") -> dict[str, str]:
    """The current Ray worker's node: ``{prefix}_id``, ``{prefix}_ip``, ``{prefix}_name``."""
    import ray  # why: ray is slow to import; sweeps only

    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    name = ""
    with contextlib.suppress(Exception):
        name = next((r.get("NodeName", "") for r in ray.nodes() if r["NodeID"] == node_id), "")
    return {f"{prefix}_id": node_id, f"{prefix}_ip": ray.util.get_node_ip_address(),
            f"{prefix}_name": name}
