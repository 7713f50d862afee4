"""Paths in params resolve against the project root (never the cwd), a sweep with a missing
input fails before any trial naming the file and the DVC stage that writes it, and one MLflow
store: the stack's server serves the project's store and clients follow ``server.json``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from unmask.config import load_params
from unmask.data.shards import ShardWriter
from unmask.orchestration import stack
from unmask.orchestration.ablation import Ablation, AblationRequest, SweepSummary
from unmask.paths import MissingInputError, producing_stage, resolve, resolve_params
from unmask.tracking import SERVER_FILE, announce_server, serving, tracking_uri, withdraw_server

REPO = Path(__file__).resolve().parents[2]


def test_resolve_params_makes_every_path_absolute_against_the_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cwd must play no part
    params = load_params(REPO / "params.yaml", {"data": {"root": "~/fm"}})
    root = tmp_path / "project"
    out = resolve_params(params, root)
    assert out.tokenizer.path == str(root.resolve() / "models" / "tokenizer.pt")
    assert out.tracking.root == str(root.resolve() / "mlruns")
    assert out.data.root == str(Path.home() / "fm")  # ~ expanded, not joined to the root
    # everything else is unchanged, the input object too (sections are frozen)
    assert out.model == params.model and out.train == params.train
    assert params.tokenizer.path == "models/tokenizer.pt"
    absolute = load_params(REPO / "params.yaml", {"tokenizer": {"path": "/abs/tok.pt"}})
    assert resolve_params(absolute, root).tokenizer.path == "/abs/tok.pt"
    assert resolve("a/b", root) == root.resolve() / "a" / "b"


def test_producing_stage_reads_the_outs_of_dvc_yaml():
    assert producing_stage("models/tokenizer.pt", REPO) == "train-tokenizer"
    assert producing_stage("data/tokens/test/manifest.json", REPO) == "tokenize"  # inside an out
    assert producing_stage(REPO / "models/model.pt", REPO) == "train"
    assert producing_stage("models/other.pt", REPO) is None


def _project(root: Path, *, tokenizer: bool, tokens: bool, checkpoint: bool,
             prepared: bool = True) -> Path:
    """The real params.yaml / dvc.yaml / flows/ablations.yaml and whichever outputs exist."""
    root.mkdir(parents=True)
    for f in ("params.yaml", "dvc.yaml", "flows/ablations.yaml"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, root / f)
    (root / "models").mkdir()
    if prepared:
        (root / "data/prepared").mkdir(parents=True)
        (root / "data/prepared/test.npz").write_bytes(b"stand-in")
    if tokenizer:
        (root / "models/tokenizer.pt").write_bytes(b"stand-in")
    if checkpoint:
        (root / "models/model.pt").write_bytes(b"stand-in")
    if tokens:
        for split in ("train", "test"):
            with ShardWriter(root / "data/tokens" / split, count=4, shape=(4,), vocab_size=5,
                             labels=True, tokenizer={"identity": "t", "hash": "t"}) as w:
                w.write(np.arange(16).reshape(4, 4) % 5, np.arange(4) % 2)
    return root


@pytest.mark.parametrize("missing, axis, file, stage", [
    ("prepared", "nfe", "data/prepared/test.npz", "prepare"),
    ("tokenizer", "nfe", "models/tokenizer.pt", "train-tokenizer"),
    ("tokens", "weighting", "data/tokens/train/manifest.json", "tokenize"),
    ("tokens", "nfe", "data/tokens/test/manifest.json", "tokenize"),
    ("checkpoint", "nfe", "models/model.pt", "train"),
])
def test_a_missing_input_fails_the_sweep_before_any_trial(tmp_path, monkeypatch, missing, axis,
                                                          file, stage):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    have = {k: k != missing for k in ("prepared", "tokenizer", "tokens", "checkpoint")}
    project = _project(tmp_path / "p", **have)
    monkeypatch.chdir(tmp_path)  # started from elsewhere, as a Prefect worker or Ray would
    ablation = Ablation(AblationRequest(axis=axis, workdir=str(project)))
    with pytest.raises(MissingInputError) as e:
        ablation.plan()
    msg = str(e.value)
    assert msg.startswith(str(project / file)) and f"dvc repro {stage}" in msg
    assert "\n" not in msg
    assert not (project / "mlruns").exists()  # nothing was started or logged


def test_planning_from_another_cwd_reads_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = _project(tmp_path / "p", tokenizer=True, tokens=True, checkpoint=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ablation = Ablation(AblationRequest(axis="nfe", workdir=str(project), values=[2, 4]))
    planned = ablation.plan()
    assert [pp.spec.point for pp in planned] == [{"sample.steps": 2}, {"sample.steps": 4}]
    spec = planned[0].spec
    assert spec.root == str(project.resolve())
    assert spec.checkpoint == str(project / "models/model.pt")
    assert ablation.uri == f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    assert not (elsewhere / "mlruns").exists()


def test_tracking_uri_follows_a_live_server_of_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlruns"
    sqlite = f"sqlite:///{store.resolve() / 'mlflow.db'}"
    assert tracking_uri(store) == sqlite
    me = psutil.Process()
    announce_server(store, "http://127.0.0.1:5999", me.pid, me.create_time())
    assert serving(store) == "http://127.0.0.1:5999"
    assert tracking_uri(store) == "http://127.0.0.1:5999"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:1")
    assert tracking_uri(store) == "http://elsewhere:1"  # an explicit URI wins
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    withdraw_server(store, "http://127.0.0.1:1")  # another server's record: left alone
    assert (store / SERVER_FILE).is_file()
    withdraw_server(store, "http://127.0.0.1:5999")
    assert tracking_uri(store) == sqlite

    # a server that died (or a recycled pid) leaves a stale record: the sqlite file again
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    announce_server(store, "http://127.0.0.1:5998", proc.pid, created)
    assert serving(store) is None and tracking_uri(store) == sqlite
    announce_server(store, "http://127.0.0.1:5997", me.pid, me.create_time() - 3600)
    assert tracking_uri(store) == sqlite


def test_the_stack_serves_the_projects_store(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text(yaml.safe_dump({"tracking": {"root": "store/here"}}))
    cfg = stack.StackConfig(repo=repo, state_dir=tmp_path / "state")
    argv = stack.server_commands(cfg, tmp_path / "state", 4200, 5000)["mlflow"]
    store = (repo / "store/here").resolve()
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{store / 'mlflow.db'}"
    assert argv[argv.index("--default-artifact-root") + 1] == str(store / "artifacts")
    assert "--no-serve-artifacts" in argv  # artifacts stay files, readable without the server
    (repo / "params.yaml").unlink()
    assert stack.project_store(repo) == repo.resolve() / "mlruns"


def test_sweep_summary_table_and_markdown():
    rows = [
        {"index": 0, "point": "steps=2", "status": "completed", "primary_metric": "fid",
         "primary": 30.123456, "fid": 30.123456, "nfe": 2.0, "mlflow_run_id": "r0"},
        {"index": 1, "point": "steps=4", "status": "skipped", "primary_metric": "fid",
         "primary": 20.5, "fid": 20.5, "nfe": 4.0, "mlflow_run_id": "r1"},
        {"index": 2, "point": "steps=8", "status": "failed", "error": "ValueError: boom"},
    ]
    s = SweepSummary("nfe", "ablations/nfe", "parent", Path("t.csv"), rows, completed=[0],
                     skipped=[1], failed={2: "ValueError: boom"}, seconds=12.34)
    table = s.table("http://127.0.0.1:5000", "7")
    assert [r["point"] for r in table] == ["steps=2", "steps=4", "steps=8"]
    assert table[0]["primary"] == 30.1235 and "fid" not in table[0]  # primary not repeated
    assert table[0]["nfe"] == 2.0
    assert table[1]["mlflow_run"] == "http://127.0.0.1:5000/#/experiments/7/runs/r1"
    assert table[2]["mlflow_run"] == "" and table[2]["error"] == "ValueError: boom"
    md = s.markdown("sqlite:///x/mlflow.db", "7")
    assert "3 — 1 run, 1 reused (finished before), 1 failed" in md
    assert "best point: **steps=4** (fid = 20.5)" in md  # the lower FID, skipped or not
    assert "`steps=8`: ValueError: boom" in md and "runs:/parent (sqlite:///x/mlflow.db)" in md
    assert "12.3 s" in md


@pytest.mark.timeout(300)
def test_stack_mlflow_server_shows_runs_logged_before_it_started(tmp_path, monkeypatch):
    """A run logged to the sqlite store, then the stack's MLflow server on that store: the
    REST API lists it with its artifact, and a client started now logs through the server."""
    import json
    import urllib.request

    from unmask.orchestration import procs
    from unmask.orchestration.env import free_port, service_env
    from unmask.tracking import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlruns"
    art = tmp_path / "note.txt"
    art.write_text("hello")
    with Tracker(root=store).start_run("default", "pipeline", params={"a": 1}) as tr:
        tr.log_metrics({"fid": 9.5}, step=0)
        tr.log_artifact(art)
        before = tr.run_id
    port = free_port()
    cfg = stack.StackConfig(repo=tmp_path, store=store)
    argv = stack.server_commands(cfg, tmp_path, 0, port)["mlflow"]
    info = procs.start("mlflow", argv, tmp_path / "mlflow.log",
                       env=service_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while not procs.poll(f"{url}/health", 1, proc=info):
            assert procs.is_running(info) and time.monotonic() < deadline, \
                Path(info.log).read_text()[-2000:]
        announce_server(store, url, info.pid, info.create_time)
        assert tracking_uri(store) == url
        with Tracker(root=store).start_run("ablations/nfe", "trial") as tr:
            tr.log_metrics({"fid": 7.0}, step=0)
            tr.log_artifact(art, "samples")
            after = tr.run_id

        def post(path, body):
            req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())

        exps = post("experiments/search", {"max_results": 100})["experiments"]
        ids = [e["experiment_id"] for e in exps]
        found = {r["info"]["run_id"]: r for r in post(
            "runs/search", {"experiment_ids": ids, "max_results": 100})["runs"]}
        assert {before, after} <= set(found)
        for run_id, path in ((before, "note.txt"), (after, "samples/note.txt")):
            with urllib.request.urlopen(f"{url}/get-artifact?path={path}&run_uuid={run_id}",
                                        timeout=30) as r:
                assert r.read() == b"hello"
    finally:
        withdraw_server(store)
        procs.stop(info, grace=5)
    # the server's runs are in the sqlite file, artifacts as plain files: readable without it
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri(store))
    assert c.get_run(after).data.metrics["fid"] == 7.0
    assert os.path.isfile(c.download_artifacts(after, "samples/note.txt", str(tmp_path)))
