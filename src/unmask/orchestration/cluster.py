"""A simulated multi-node Ray cluster on this machine (:class:`LocalCluster`).

Started the way a real one is: ``ray start --head --block`` and one
``ray start --address=<head> --block`` per worker node, each with its own ``--num-cpus`` /
``--num-gpus`` / ``--resources``, temp dir and agent port. Every node is one process we started
(its own session) and stop by pid; its raylet can be SIGKILLed by pid to lose the node mid-run
(``ray start --block`` then takes the node's other processes down, as a lost machine would).
Drivers join it through ``RAY_ADDRESS`` = :attr:`LocalCluster.address` — the same path as a
real cluster. Placement checks and node tags are :mod:`unmask.orchestration.placement`; copying a
sweep's inputs to shared storage is :mod:`unmask.orchestration.staging`.

Note: ``ray start`` replaces a loopback ``--node-ip-address`` by the host's reachable address
(:func:`ray._private.services.resolve_ip_for_localhost`), so the simulated nodes all register
under this host's IP and are told apart by node id and ``--node-name``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from unmask.orchestration import procs
from unmask.orchestration.env import ensure_ray_bootstrap, free_port, service_env

__all__ = ["NODE_MARK", "NodeSpec", "Node", "LocalCluster"]

#: Environment mark of every process of a simulated node: Ray workers leave the node's process
#: group and are re-parented when the raylet dies, the mark still finds them (procs.marked).
NODE_MARK = "UNMASK_RAY_NODE"

#: GCS health checks of the simulated head: a lost node is declared dead after ~3 s instead of
#: Ray's default ~15 s (period 3 s × threshold 5), so node-loss tests stay short.
FAST_HEALTH_CHECKS: dict[str, str] = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


@dataclass(frozen=True)
class NodeSpec:
    """One simulated node: ``name`` (``--node-name``), its CPUs, GPUs, custom resources and
    object store size (Ray's minimum is ~75 MB)."""

    name: str
    num_cpus: float = 1
    num_gpus: int = 0
    resources: Mapping[str, float] = field(default_factory=dict)
    object_store_mb: int = 100


@dataclass
class Node:
    """A started node: its spec, the ``ray start --block`` process and its Ray node id."""

    spec: NodeSpec
    proc: procs.ProcInfo
    temp_dir: Path
    node_id: str | None = None

    @property
    def mark(self) -> str:
        return str(self.temp_dir)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the node's processes by pid: ``ray start``, its group, its descendants and
        every process carrying the node's mark (its Ray workers)."""
        procs.stop(self.proc, grace=grace, extra=procs.marked(NODE_MARK, self.mark))

    @property
    def name(self) -> str:
        return self.spec.name

    def raylet_pid(self) -> int:
        """Pid of this node's raylet (a child of the ``ray start`` process)."""
        for p in procs.descendants(self.proc):
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.name() == "raylet":
                    return p.pid
        raise RuntimeError(f"node {self.name}: no raylet process (node not running?)")


def _ensure_auth_token() -> None:
    """Create Ray's auth token (``~/.ray/auth_token``) if there is none yet."""
    from ray._private.authentication.authentication_token_setup import (
        generate_and_save_token,
    )  # why: ray is slow to import; sweeps only
    from ray._raylet import AuthenticationTokenLoader  # why: ray is slow to import; sweeps only

    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        generate_and_save_token()


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


class LocalCluster:
    """A multi-node Ray cluster on this machine (see the module docstring).

    Args:
        root: where node temp dirs and logs go (default: a fresh short dir under /tmp — Ray's
            Unix socket paths must stay under ~107 characters).
        head_cpus: CPUs of the head node (0: the head only coordinates, as on a real cluster
            where the head should not run trials).
        object_store_mb: object store of the head.
        env: extra environment of every node (e.g. ``PYTHONPATH`` for the trial code).
        fast_health_checks: declare lost nodes dead after ~3 s (:data:`FAST_HEALTH_CHECKS`).

    Use as a context manager; :meth:`shutdown` stops every node by pid.
    """

    def __init__(self, root: str | Path | None = None, *, head_cpus: float = 0,
                 object_store_mb: int = 100, env: Mapping[str, str] | None = None,
                 fast_health_checks: bool = True) -> None:
        self._own_root = root is None  # removed by shutdown()
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="ur-", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.head_cpus, self.head_store_mb = head_cpus, object_store_mb
        self.env = service_env({**(FAST_HEALTH_CHECKS if fast_health_checks else {}),
                                **(env or {})})
        self.env.pop("RAY_ADDRESS", None)  # a node must not join another cluster
        # Ray's token authentication, explicitly on every node (the head and its workers must
        # agree); the token is ~/.ray/auth_token, which drivers on this machine pick up.
        self.env["RAY_AUTH_MODE"] = "token"
        self.port: int | None = None
        self.head: Node | None = None
        self.nodes: list[Node] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The GCS address drivers pass as ``RAY_ADDRESS`` / ``ray.init(address=...)``."""
        if self.port is None:
            raise RuntimeError("the cluster is not started")
        from ray._private.services import (
            resolve_ip_for_localhost,  # why: ray is slow to import; sweeps only
        )

        return f"{resolve_ip_for_localhost('127.0.0.1')}:{self.port}"

    def _common(self, spec: NodeSpec, temp: Path) -> list[str]:
        argv = ["--block", "--disable-usage-stats", "--node-name", spec.name,
                "--num-cpus", f"{spec.num_cpus:g}", "--num-gpus", str(spec.num_gpus),
                "--object-store-memory", str(spec.object_store_mb * 1024 * 1024),
                "--temp-dir", str(temp),
                # fixed default 52365 on every node: give each node its own
                "--dashboard-agent-listen-port", str(free_port())]
        if spec.resources:
            argv += ["--resources", json.dumps(dict(spec.resources))]
        return argv

    def _spawn(self, spec: NodeSpec, extra: Sequence[str]) -> Node:
        if any(n.name == spec.name for n in self.nodes + ([self.head] if self.head else [])):
            raise ValueError(f"node name {spec.name!r} is already in use in this cluster")
        temp = self.root / spec.name
        temp.mkdir(parents=True, exist_ok=True)
        argv = [_ray_bin(), "start", *extra, *self._common(spec, temp)]
        info = procs.start(f"ray-{spec.name}", argv, self.root / f"{spec.name}.log",
                           env={**self.env, NODE_MARK: str(temp)}, cwd=self.root)
        return Node(spec, info, temp)

    def start(self, timeout: float = 120.0) -> LocalCluster:
        """Start the head node and wait until it is registered."""
        if self.head is not None:
            return self
        ensure_ray_bootstrap()
        _ensure_auth_token()
        self.port = free_port()
        spec = NodeSpec("head", num_cpus=self.head_cpus, object_store_mb=self.head_store_mb)
        self.head = self._spawn(spec, ["--head", "--port", str(self.port),
                                       "--include-dashboard", "false"])
        self.wait_for_nodes(timeout)
        return self

    def add_node(self, spec: NodeSpec, *, wait: bool = True, timeout: float = 120.0) -> Node:
        """Start a worker node that joins the head (``ray start --address``)."""
        if self.head is None:
            self.start()
        node = self._spawn(spec, ["--address", self.address])
        self.nodes.append(node)
        if wait:
            self.wait_for_nodes(timeout)
        return node

    def _all(self) -> list[Node]:
        return ([self.head] if self.head else []) + self.nodes

    def node_table(self) -> list[dict[str, Any]]:
        """Every node the GCS knows (``ray.nodes()`` rows: NodeID, NodeName, Alive, Resources)."""
        import ray  # why: ray is slow to import; sweeps only

        if ray.is_initialized():
            return list(ray.nodes())
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )  # why: ray is slow to import; sweeps only
        from ray._private.state import GlobalState  # why: ray is slow to import; sweeps only
        from ray._raylet import GcsClientOptions  # why: ray is slow to import; sweeps only

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        state = GlobalState()
        state._initialize_global_state(GcsClientOptions.create(
            self.address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False))
        try:
            return list(state.node_table())
        finally:
            state.disconnect()

    def wait_for_nodes(self, timeout: float = 120.0) -> None:
        """Wait until every running node of ours is alive in the GCS; records node ids."""
        deadline = time.monotonic() + timeout
        while True:
            running = [n for n in self._all() if procs.is_running(n.proc)]
            dead = [n.name for n in self._all() if n.node_id is None
                    and not procs.is_running(n.proc)]
            if dead:
                raise RuntimeError(f"Ray node(s) {dead} exited during start-up; see "
                                   f"{', '.join(str(self.root / f'{d}.log') for d in dead)}")
            alive: dict[str, str] = {}
            with contextlib.suppress(Exception):  # the GCS may not answer yet
                for row in self.node_table():
                    if row.get("Alive"):
                        alive[row["NodeName"]] = row["NodeID"]
            # Node names are unique among our live nodes; a dead node's old row is not Alive.
            if all(n.name in alive for n in running):
                for n in running:
                    n.node_id = alive[n.name]
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Ray nodes not alive after {timeout:.0f}s: "
                                   f"{[n.name for n in running if n.name not in alive]}")
            time.sleep(0.5)

    def node(self, name_or_id: str) -> Node:
        for n in self._all():
            if name_or_id in (n.name, n.node_id):
                return n
        raise KeyError(f"no node {name_or_id!r} in this cluster")

    def kill_raylet(self, node: Node | str, wait_dead: float = 60.0) -> int:
        """SIGKILL the raylet of a worker node (a node lost without warning); returns its pid.
        Waits until the GCS reports the node dead."""
        node = node if isinstance(node, Node) else self.node(node)
        pid = node.raylet_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + wait_dead
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                rows = {r["NodeID"]: r for r in self.node_table()}
                if node.node_id and not rows.get(node.node_id, {}).get("Alive", False):
                    break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"node {node.name} still alive {wait_dead:.0f}s after its raylet "
                               f"(pid {pid}) was killed")
        node.stop(grace=5.0)  # whatever of the node is left, its orphaned workers included
        return pid

    def stop_node(self, node: Node | str, grace: float = 10.0) -> None:
        """Stop one node's ``ray start`` process and its descendants by pid."""
        node = node if isinstance(node, Node) else self.node(node)
        node.stop(grace)

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop every node by pid (workers first, then the head); remove the temp root if the
        cluster created it."""
        for n in reversed(self._all()):
            n.stop(grace)
        self.nodes, self.head = [], None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.shutdown()
            raise

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
