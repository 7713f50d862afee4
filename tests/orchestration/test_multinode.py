"""Ray beyond one node, simulated on this machine (issue 21).

One module-scoped :class:`~unmask.orchestration.cluster.LocalCluster`: a head with no CPU
(it only coordinates) and worker nodes ``w1`` (1 CPU) and ``w2`` (1 CPU + 1 simulated GPU),
each a ``ray start --block`` process started and stopped by pid; the driver joins through
``RAY_ADDRESS``, the path a real cluster takes. The tests run in file order:

1. a sampling sweep (2 concurrent trials) lands on both nodes, reads its inputs from the shared
   storage path (the project's own outputs are moved away while it runs), and every trial's
   samples equal those of the same trial run in one process without Ray;
2. through the ``ablations`` Prefect flow, ``gpus_per_trial: 1`` trials land on the GPU node;
   an unsatisfiable request fails fast;
3. Ray Train DDP with 2 workers on 2 nodes = the one-process loss curve;
4. a node's raylet is killed mid-sweep: its trial is retried on the survivor, one FINISHED run
   per grid point, the CSV and the report are complete;
5. a DDP worker's node is lost mid-training: with a replacement node the group resumes from
   the last checkpoint and ends with the one-process losses.

The first two unit tests (resource check, staging) need no Ray.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

import unmask
from unmask.orchestration import procs
from unmask.orchestration.cluster import NODE_MARK, LocalCluster, NodeSpec
from unmask.orchestration.placement import (
    AUTOSCALING_ENV,
    UnsatisfiableResources,
    require_resources,
    train_bundles,
)
from unmask.orchestration.staging import stage_inputs

SRC = str(Path(unmask.__file__).resolve().parents[1])


# -- no Ray needed ----------------------------------------------------------------------------

def test_require_resources_packs_bundles_per_node(monkeypatch):
    monkeypatch.delenv(AUTOSCALING_ENV, raising=False)
    nodes = [{"id": "a" * 8, "name": "w1", "resources": {"CPU": 1.0, "memory": 1e9}},
             {"id": "b" * 8, "name": "w2", "resources": {"CPU": 1.0, "GPU": 1.0}}]
    require_resources(train_bundles(2, 1.0, False), "ddp", nodes)  # one worker per node
    require_resources([{"CPU": 1, "GPU": 1}], "gpu trial", nodes)
    require_resources([{"CPU": 1, "GPU": 0}], "zero GPU is no request", nodes[:1])
    # 2 CPUs in total, but no single node has 2: a bundle never spans nodes.
    with pytest.raises(UnsatisfiableResources, match=r"1 x \{CPU: 2\}.*w1 \{CPU: 1\}"):
        require_resources([{"CPU": 2}], "big trial", nodes)
    with pytest.raises(UnsatisfiableResources, match=r"ddp on gpus needs 2 x \{CPU: 1, GPU: 1\}"):
        require_resources(train_bundles(2, 1.0, True), "ddp on gpus", nodes)
    with pytest.raises(UnsatisfiableResources, match="no alive node"):
        require_resources([{"CPU": 1}], "anything", [])
    monkeypatch.setenv(AUTOSCALING_ENV, "1")  # an autoscaler may add the GPU nodes later
    require_resources(train_bundles(2, 1.0, True), "ddp on gpus", nodes)


def test_stage_inputs_is_content_addressed(tmp_path):
    src = tmp_path / "tokens"
    (src / "test").mkdir(parents=True)
    (src / "test" / "a.bin").write_bytes(b"123")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    (tmp_path / "model.pt.sha256").write_text("abc  model.pt\n")
    out = stage_inputs({"tokens": src, "ckpt": ckpt}, tmp_path / "shared")
    assert out["tokens"].parent.parent == tmp_path / "shared" / "inputs"
    assert (out["tokens"] / "test" / "a.bin").read_bytes() == b"123"
    assert out["ckpt"].read_bytes() == b"weights"
    assert out["ckpt"].with_name("model.pt.sha256").read_text() == "abc  model.pt\n"
    assert stage_inputs({"tokens": src}, tmp_path / "shared")["tokens"] == out["tokens"]
    (src / "test" / "a.bin").write_bytes(b"1234")  # changed input → a new copy, old one kept
    again = stage_inputs({"tokens": src}, tmp_path / "shared")["tokens"]
    assert again != out["tokens"] and (again / "test" / "a.bin").read_bytes() == b"1234"
    assert (out["tokens"] / "test" / "a.bin").read_bytes() == b"123"
    with pytest.raises(FileNotFoundError, match="missing: input .*nope not found"):
        stage_inputs({"missing": tmp_path / "nope"}, tmp_path / "shared")


def test_deploy_examples_are_valid_for_this_ray():
    """deploy/ray/cluster.yaml passes Ray's own cluster-config schema (as `ray up` checks it),
    before and after Ray fills its defaults; the KubeRay RayCluster names this Ray version and
    gives every pod the telemetry-off env, the MLflow server and the shared volume."""
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    repo = Path(SRC).parent
    cfg = yaml.safe_load((repo / "deploy/ray/cluster.yaml").read_text())
    validate_config(cfg)
    validate_config(prepare_config(cfg))
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--head" in head and "--num-cpus=0" in head and "RAY_USAGE_STATS_ENABLED=0" in head
    assert "MLFLOW_TRACKING_URI=http" in " ".join(cfg["worker_start_ray_commands"])

    docs = list(yaml.safe_load_all((repo / "deploy/ray/kuberay.yaml").read_text()))
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    assert rc["apiVersion"] == "ray.io/v1" and rc["spec"]["rayVersion"] == ray.__version__
    assert rc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    pods = [rc["spec"]["headGroupSpec"]["template"]] + [
        g["template"] for g in rc["spec"]["workerGroupSpecs"]]
    for pod in pods:
        (c,) = pod["spec"]["containers"]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["RAY_USAGE_STATS_ENABLED"] == "0"
        assert env["MLFLOW_TRACKING_URI"].startswith("http")
        assert {"name": "shared", "mountPath": "/shared"} in c["volumeMounts"]
    gpu = next(g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    (c,) = gpu["template"]["spec"]["containers"]
    assert gpu["rayStartParams"]["num-gpus"] == c["resources"]["limits"]["nvidia.com/gpu"]


# -- the simulated cluster ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    import ray

    from unmask.orchestration.env import ray_init

    if ray.is_initialized():
        ray.shutdown()
    old = os.environ.get("RAY_ADDRESS")
    # The nodes import the trial code (and this module, for the held-back trial) from here.
    pythonpath = os.pathsep.join(p for p in (SRC, str(Path(__file__).parent),
                                             os.environ.get("PYTHONPATH")) if p)
    c = LocalCluster(env={"PYTHONPATH": pythonpath})
    try:
        c.start()
        c.add_node(NodeSpec("w1", num_cpus=1), wait=False)
        c.add_node(NodeSpec("w2", num_cpus=1, num_gpus=1))
        os.environ["RAY_ADDRESS"] = c.address
        ray_init()  # no address argument: RAY_ADDRESS, as a deployment on a cluster
        yield c
    finally:
        ray.shutdown()
        nodes = c._all()
        c.shutdown()
        left = [p.pid for n in nodes for p in procs.marked(NODE_MARK, n.mark)]
        if old is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = old
    assert not left, f"processes of the simulated nodes left running: {left}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from unmask.orchestration.tiny import make_project

    root = make_project(tmp_path_factory.mktemp("multinode") / "p", settings={
        "retries": 1, "eval": {"metric": "stats"},
        "ray": {"cpus_per_trial": 1, "max_concurrent_trials": 2}})
    return root


def _settings(project: Path, name: str, **ray: object) -> str:
    s = yaml.safe_load((project / "flows/ablations.yaml").read_text())
    s["ray"].update(ray)
    path = project / "flows" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(s))
    return str(path)


def _trial_runs(uri: str, parent: str) -> list:
    from unmask.orchestration.runs import client

    c = client(uri)
    exp_ids = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(exp_ids, f"tags.`mlflow.parentRunId` = '{parent}'", max_results=100)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sweep_spreads_over_nodes_reads_shared_storage_and_matches_one_process(
        cluster, project, tmp_path, monkeypatch):
    from unmask.orchestration import runs
    from unmask.orchestration.ablation import Ablation, AblationRequest
    from unmask.orchestration.trials import run_trial

    shared = tmp_path / "shared"  # what every node would mount (NFS, EFS, a bucket via FUSE)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared}/mlflow.db")
    ab = Ablation(AblationRequest(axis="nfe", values=[2, 4], workdir=str(project),
                                  settings=_settings(project, "shared",
                                                     shared_storage=str(shared))))
    planned = ab.plan()
    for pp in planned:
        s = pp.spec
        for path in (s.params_path, s.checkpoint, s.tokens_dir, s.trial_dir, s.ray_storage):
            assert Path(path).is_relative_to(shared), path
    # Trials that score FID also get the prepared real held-out images, where the trial looks
    # for them (beside its token folder).
    for pp in Ablation(AblationRequest(axis="nfe", values=[2], workdir=str(project),
                                       metric="auto", settings=_settings(
                                           project, "shared", shared_storage=str(shared)))).plan():
        split = Path(pp.spec.tokens_dir) / "test"
        real = Path(pp.spec.tokens_dir).parent / "prepared" / "test.npz"
        assert split.resolve().is_relative_to(shared) and real.resolve().is_relative_to(shared)
        assert real.read_bytes() == (project / "data/prepared/test.npz").read_bytes()
    # The driver's project outputs are gone while the trials run: they cannot be read.
    hidden = project.parent / "hidden"
    hidden.mkdir()
    for d in ("data", "models"):
        (project / d).rename(hidden / d)
    try:
        summary = ab.run()
    finally:
        for d in ("data", "models"):
            (hidden / d).rename(project / d)
    assert summary.completed == [0, 1] and not summary.failed, summary.failed

    trials = _trial_runs(ab.uri, summary.parent_run_id)
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    node_ids = {r.data.tags["ray.node_id"] for r in trials}
    names = {r.data.tags["ray.node_name"] for r in trials}
    assert names == {"w1", "w2"}, names  # 2 concurrent 1-CPU trials: one per worker node
    assert node_ids == {cluster.node("w1").node_id, cluster.node("w2").node_id}

    # The same trials in one process, without Ray, into another store: the same samples.
    ref_uri = f"sqlite:///{tmp_path}/ref.db"
    ref_exp = runs.ensure_experiment(ref_uri, "reference")
    for pp in planned:
        ref = pp.spec.model_copy(update={"tracking_uri": ref_uri, "experiment_id": ref_exp,
                                         "parent_run_id": "ref",
                                         "trial_dir": str(tmp_path / "ref" / pp.key)})
        out = run_trial(ref)
        with np.load(Path(pp.spec.trial_dir) / "eval" / "samples.npz") as a, \
                np.load(Path(ref.trial_dir) / "eval" / "samples.npz") as b:
            assert a["tokens"].shape == b["tokens"].shape and a["tokens"].size > 0
            np.testing.assert_array_equal(a["tokens"], b["tokens"])
        cluster_run = next(r for r in trials if r.data.tags["unmask.grid_key"] == pp.key)
        for k in ("hist_tv", "class_mean_mse", "unique_fraction", "nfe"):
            assert cluster_run.data.metrics[k] == pytest.approx(out[k], abs=1e-12), k


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_trials_land_on_the_gpu_node_and_impossible_requests_fail_fast(cluster, project,
                                                                           tmp_path, monkeypatch):
    """Through the real ``ablations`` Prefect flow (``prefect_test_harness``), on the cluster
    the driver joined through ``RAY_ADDRESS``."""
    import importlib.util

    from prefect.testing.utilities import prefect_test_harness

    from unmask.orchestration.ablation import Ablation, AblationRequest
    from unmask.orchestration.ddp import train_with_ray

    spec = importlib.util.spec_from_file_location("flows_ablations",
                                                  Path(SRC).parent / "flows" / "ablations.py")
    flows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flows)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    settings = _settings(project, "gpu", gpus_per_trial=1)
    with prefect_test_harness(server_startup_timeout=300):
        out = flows.ablations(axis="nfe", values=[3, 5], workdir=str(project), settings=settings)
    assert out["completed"] == [0, 1] and not out["failed"], out
    ab = Ablation(AblationRequest(axis="nfe", workdir=str(project), settings=settings))
    ab.preflight()
    trials = _trial_runs(ab.uri, out["parent_run_id"])
    assert sorted(r.data.tags["ray.node_name"] for r in trials) == ["w2", "w2"]
    assert all(r.data.tags["prefect.flow_run_id"] for r in trials)

    ab = Ablation(AblationRequest(axis="nfe", values=[6], workdir=str(project),
                                  settings=_settings(project, "gpu2", gpus_per_trial=2)))
    with pytest.raises(UnsatisfiableResources, match=r"trial needs 1 x \{CPU: 1, GPU: 2\}"):
        ab.run()
    from unmask.orchestration.ddp import TrainJob

    job = TrainJob(model_cfg={}, train_cfg={}, tokens_dir=str(tmp_path), work_dir=str(tmp_path))
    with pytest.raises(UnsatisfiableResources, match=r"needs 2 x \{CPU: 1, GPU: 1\}"):
        train_with_ray(job, name="gpu-ddp", storage_path=tmp_path / "ray", num_workers=2,
                       use_gpu=True)


def _history(path: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row["loss"]
    return out


def _mlflow_run(tmp_path: Path) -> tuple[str, str]:
    from unmask.orchestration.runs import client, ensure_experiment

    uri = f"sqlite:///{tmp_path}/ddp.db"
    run = client(uri).create_run(ensure_experiment(uri, "ddp"))
    return uri, run.info.run_id


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_on_two_nodes_matches_one_process(cluster, make_job, tmp_path):
    from unmask.orchestration.ddp import run_rank, train_with_ray
    from unmask.orchestration.runs import client

    single = make_job("single")
    run_rank(single, 0, 1)
    uri, run_id = _mlflow_run(tmp_path)
    job = make_job("ray").model_copy(update={"tracking_uri": uri, "run_id": run_id})
    storage = tmp_path / "shared" / "ray"
    out = train_with_ray(job, name="ddp-2nodes", storage_path=storage, num_workers=2)
    assert out.step == 8 and out.checkpoint.is_file()
    assert list((storage / "ddp-2nodes").glob("checkpoint_*"))  # in the shared storage path
    tags = client(uri).get_run(run_id).data.tags
    assert {tags["ray.train.rank0.node_name"], tags["ray.train.rank1.node_name"]} == {"w1",
                                                                                       "w2"}
    a, b = _history(single.history_file), _history(job.history_file)
    assert sorted(b) == sorted(a) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step


def _slow_evaluation_trial(config, specs):
    """The real trial, with evaluation held back 3 s after a marker naming the node, so the
    test can lose that node while the trial's MLflow run is open."""
    import unmask.orchestration.trials as ev  # where the trial binds evaluate_checkpoint
    from unmask.orchestration.placement import node_tags
    from unmask.orchestration.trials import tune_trainable

    if not getattr(ev, "_held_back", False):
        real = ev.evaluate_checkpoint

        def held_back(checkpoint, params, settings, out_dir, *args, **kwargs):
            out = Path(out_dir)
            out.parent.mkdir(parents=True, exist_ok=True)
            (out.parent / f"evaluating-on-{node_tags()['ray.node_name']}").write_text("")
            time.sleep(3.0)
            return real(checkpoint, params, settings, out_dir, *args, **kwargs)

        ev.evaluate_checkpoint, ev._held_back = held_back, True
    tune_trainable(config, specs)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_node_lost_mid_sweep_retries_on_the_survivor(cluster, project):
    from unmask.orchestration.ablation import Ablation, AblationRequest

    class HeldBack(Ablation):
        trainable = staticmethod(_slow_evaluation_trial)

    ab = HeldBack(AblationRequest(axis="nfe", values=[7, 9], workdir=str(project),
                                  settings=_settings(project, "lost")))
    result: dict = {}
    sweep = threading.Thread(target=lambda: result.update(summary=ab.run()), daemon=True)
    sweep.start()
    deadline = time.monotonic() + 600
    while not list((project / "runs/ablations/nfe").glob("*/evaluating-on-w1")):
        assert sweep.is_alive() and time.monotonic() < deadline, "no trial reached node w1"
        time.sleep(0.2)
    killed_key = next((project / "runs/ablations/nfe").glob("*/evaluating-on-w1")).parent.name
    cluster.kill_raylet("w1")
    sweep.join(600)
    assert not sweep.is_alive()
    summary = result["summary"]
    assert summary.completed == [0, 1] and not summary.failed, summary.failed

    trials = _trial_runs(ab.uri, summary.parent_run_id)
    by_key = {}
    for r in trials:
        by_key.setdefault(r.data.tags["unmask.grid_key"], []).append(r)
    assert sorted(by_key) == sorted(pp.key for pp in ab.planned)
    assert all(len(v) == 1 and v[0].info.status == "FINISHED" for v in by_key.values())
    retried = by_key[killed_key][0]
    assert retried.data.tags["unmask.attempt"] == "2"  # the run of the lost attempt, reopened
    assert retried.data.tags["ray.node_name"] == "w2"
    with open(summary.csv) as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["index"]) for r in rows) == [0, 1]
    assert all(r["mlflow_status"] == "FINISHED" and not r.get("error") for r in rows)
    assert all(r["hist_tv"] for r in rows)
    assert (project / "reports/ablations/index.html").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_node_lost_mid_training_resumes_on_a_replacement(cluster, make_job, tmp_path):
    from unmask.orchestration.ddp import run_rank, train_with_ray
    from unmask.orchestration.runs import client

    steps = 40
    single = make_job("single", steps=steps, ckpt_every=5, log_every=1)
    run_rank(single, 0, 1)
    cluster.add_node(NodeSpec("w3", num_cpus=1))  # w1 is lost in the previous test
    uri, run_id = _mlflow_run(tmp_path)
    job = make_job("ray", steps=steps, ckpt_every=5, log_every=1).model_copy(
        update={"tracking_uri": uri, "run_id": run_id})
    result: dict = {}
    storage = tmp_path / "shared" / "ray"
    fit = threading.Thread(target=lambda: result.update(out=train_with_ray(
        job, name="ddp-lost", storage_path=storage, num_workers=2, max_failures=1)),
        daemon=True)
    fit.start()
    hist = Path(job.history_file)
    deadline = time.monotonic() + 600
    while not (hist.is_file() and any(json.loads(x)["step"] >= 10
                                      for x in hist.read_text().splitlines())):
        assert fit.is_alive() and time.monotonic() < deadline, "training never reached step 10"
        time.sleep(0.05)
    # Freeze the workers on rank 1's node (the all-reduce then holds both ranks), then lose
    # that node.
    lost = cluster.node(client(uri).get_run(run_id).data.tags["ray.train.rank1.node_name"])
    assert lost.name != "head"
    for p in psutil.Process(lost.raylet_pid()).children(recursive=True):
        p.send_signal(signal.SIGSTOP)
    frozen_at = max(json.loads(x)["step"] for x in hist.read_text().splitlines())
    cluster.kill_raylet(lost)
    assert not procs.marked(NODE_MARK, lost.mark)  # the lost node took its workers with it
    cluster.add_node(NodeSpec("w4", num_cpus=1))  # the replacement an autoscaler would add
    fit.join(600)
    assert not fit.is_alive() and "out" in result
    assert result["out"].step == steps
    assert frozen_at < steps  # the node was lost before the end
    tags = client(uri).get_run(run_id).data.tags
    placed = {tags["ray.train.rank0.node_name"], tags["ray.train.rank1.node_name"]}
    assert len(placed) == 2 and lost.name not in placed, placed  # restarted elsewhere
    lines = [json.loads(x)["step"] for x in hist.read_text().splitlines()]
    assert lines.count(1) == 1  # resumed from a checkpoint, not restarted from scratch
    a, b = _history(single.history_file), _history(job.history_file)
    assert sorted(b) == list(range(1, steps + 1))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    shutil.rmtree(storage, ignore_errors=True)

