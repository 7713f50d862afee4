"""Ray beyond one node: a simulated multi-node cluster, resource checks, node tags, shared inputs.

- :class:`LocalCluster` — a Ray cluster of several nodes on this machine, started the way a
  real one is: ``ray start --head --block`` and one ``ray start --address=<head> --block`` per
  worker node, each with its own ``--num-cpus`` / ``--num-gpus`` / ``--resources``, temp dir and
  agent port. Every node is one process we started (its own session) and stop by pid; its
  raylet can be SIGKILLed by pid to lose the node mid-run (``ray start --block`` then takes the
  node's other processes down, as a lost machine would). Drivers join it through
  ``RAY_ADDRESS`` = :attr:`LocalCluster.address` — the same path as a real cluster.
- :func:`require_resources` — fail fast, before submitting, when no set of alive nodes can
  hold a request (e.g. ``use_gpu`` without a GPU node): Ray Tune and Ray Train would otherwise
  wait forever for an autoscaler. ``UNMASK_RAY_AUTOSCALING=1`` turns the check off on a cluster
  whose autoscaler adds nodes on demand.
- :func:`node_tags` — which node ran a trial (MLflow tags ``ray.node_*``).
- :func:`stage_inputs` — copy a sweep's inputs (params file, checkpoint, token shards) into a
  storage path every node mounts (``ray.shared_storage``), content-addressed, so trials never
  read the driver's local project.

Note: ``ray start`` replaces a loopback ``--node-ip-address`` by the host's reachable address
(:func:`ray._private.services.resolve_ip_for_localhost`), so the simulated nodes all register
under this host's IP and are told apart by node id and ``--node-name``.
"""

from __future__ import annotations

import contextlib
import hashlib
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

from unmask.config import ConfigError, load_params
from unmask.orchestration import procs
from unmask.orchestration.env import ensure_ray_bootstrap, free_port, service_env
from unmask.paths import project_root, resolve

__all__ = [
    "AUTOSCALING_ENV",
    "NODE_MARK",
    "NodeSpec",
    "Node",
    "LocalCluster",
    "UnsatisfiableResources",
    "alive_nodes",
    "require_resources",
    "train_bundles",
    "node_tags",
    "stage_inputs",
    "stage_planned",
]

#: Set to 1 on a cluster with an autoscaler: resources may appear after the request.
AUTOSCALING_ENV = "UNMASK_RAY_AUTOSCALING"

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
    )
    from ray._raylet import AuthenticationTokenLoader

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
        from ray._private.services import resolve_ip_for_localhost

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
        import ray

        if ray.is_initialized():
            return list(ray.nodes())
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        from ray._private.state import GlobalState
        from ray._raylet import GcsClientOptions

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


# -- resource checks ------------------------------------------------------------------------

class UnsatisfiableResources(ValueError):
    """No set of alive nodes can hold a resource request (one line naming what is missing)."""


def alive_nodes() -> list[dict[str, Any]]:
    """Alive nodes of the connected cluster: ``{"id", "name", "resources"}`` (totals)."""
    import ray

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
        import ray

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


# -- node tags ------------------------------------------------------------------------------

def node_tags(prefix: str = "ray.node") -> dict[str, str]:
    """The current Ray worker's node: ``{prefix}_id``, ``{prefix}_ip``, ``{prefix}_name``."""
    import ray

    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    name = ""
    with contextlib.suppress(Exception):
        name = next((r.get("NodeName", "") for r in ray.nodes() if r["NodeID"] == node_id), "")
    return {f"{prefix}_id": node_id, f"{prefix}_ip": ray.util.get_node_ip_address(),
            f"{prefix}_name": name}


# -- shared storage -------------------------------------------------------------------------

def _tree_id(path: Path) -> str:
    """Cheap identity of a file or folder: relative paths, sizes and mtimes (sha256, 16 hex)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}:{st.st_size}:"
                 f"{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def stage_inputs(paths: Mapping[str, str | Path], shared: str | Path) -> dict[str, Path]:
    """Copy each input (file or folder) to ``<shared>/inputs/<id>/<name>`` unless that copy
    exists (content-addressed by :func:`_tree_id`); returns {key: path in shared storage}.
    Copies land under a temporary name and are renamed into place, so a node never sees a
    half-written input and concurrent sweeps staging the same input do not collide."""
    shared = Path(shared)
    out: dict[str, Path] = {}
    for key, src in paths.items():
        src = Path(src)
        if not src.exists():
            raise FileNotFoundError(f"{key}: input {src} not found (cannot stage it to {shared})")
        dst = shared / "inputs" / _tree_id(src) / src.name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".stage-", dir=dst.parent)) / src.name
            if src.is_dir():
                shutil.copytree(src, tmp)
            else:
                shutil.copy2(src, tmp)
                side = src.with_name(src.name + ".sha256")  # a checkpoint's recorded digest
                if side.is_file():
                    shutil.copy2(side, dst.with_name(side.name))
            try:
                os.replace(tmp, dst)
            except OSError:  # staged concurrently by another sweep
                if not dst.exists():
                    raise
            shutil.rmtree(tmp.parent, ignore_errors=True)
        out[key] = dst
    return out


def stage_planned(planned: Sequence[Any], shared: str | Path) -> None:
    """Point the trial specs of an ablation plan (:class:`~unmask.orchestration.ablation.
    PlannedPoint`) at copies of their inputs in ``shared`` (``ray.shared_storage``): the params
    file, the checkpoint (sampling axes), the token splits the trial reads (``train`` for
    training axes, ``evaluate.split`` always), the VQ tokenizer and, when trials score FID, the
    prepared held-out images — so a trial on a node without the project's outputs finds them.
    Specs are replaced in place."""

    shared = Path(shared)
    if not shared.is_absolute():
        raise ValueError(f"ray.shared_storage: {shared} must be an absolute path that every "
                         "node mounts")
    staged: dict[tuple[str, ...], dict[str, Path]] = {}
    for pp in planned:
        spec = pp.spec
        try:
            params = load_params(spec.params_path, spec.overrides)
        except ConfigError:  # an invalid point fails as a trial; stage the base params' inputs
            params = load_params(spec.params_path)
        split = params.evaluate.split
        # A learned tokenizer is a file the params name relative to the driver's project.
        vq = (str(resolve(params.tokenizer.path, spec.root or project_root(spec.params_path)))
              if params.tokenizer.kind == "vq" else "")
        splits = tuple(sorted({split} | ({"train"} if spec.kind == "training" else set())))
        # FID scores against the prepared real held-out images, which the trial finds beside
        # the token folder (<tokens_dir>/../prepared, unmask.orchestration.evaluation).
        fid = spec.eval.metric != "stats"
        key = (spec.params_path, spec.checkpoint or "", spec.tokens_dir, vq, str(fid), *splits)
        if key not in staged:
            tokens = Path(spec.tokens_dir)
            found = {f"tokens/{s}": tokens / s for s in splits if (tokens / s).exists()}
            if fid:
                prepared = tokens.parent / "prepared"
                found.update({f"prepared/{n}": prepared / n
                              for n in (f"{split}.npz", "manifest.json")
                              if (prepared / n).exists()})
            out = stage_inputs({"params": spec.params_path, **found,
                                **({"checkpoint": spec.checkpoint} if spec.checkpoint else {}),
                                **({"tokenizer": vq} if vq else {})}, shared)
            # One folder laid out as the project's data/ (tokens/<split>, prepared/<file>),
            # made of links to the content-addressed copies.
            bundle = shared / "inputs" / ("data-" + hashlib.sha256("".join(
                f"{k}={out[k]}" for k in sorted(found)).encode()).hexdigest()[:16])
            for k in found:
                link = bundle / k
                if not link.is_symlink():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(FileExistsError):
                        link.symlink_to(out[k], target_is_directory=out[k].is_dir())
            (bundle / "tokens").mkdir(parents=True, exist_ok=True)
            out["tokens"] = bundle / "tokens"
            staged[key] = out
        out = staged[key]
        overrides = dict(spec.overrides)
        if "tokenizer" in out:  # absolute, so the driver's root no longer matters for it
            overrides["tokenizer.path"] = str(out["tokenizer"])
        pp.spec = spec.model_copy(update={
            "params_path": str(out["params"]), "tokens_dir": str(out["tokens"]),
            "overrides": overrides,
            **({"checkpoint": str(out["checkpoint"])} if spec.checkpoint else {})})
