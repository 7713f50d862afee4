"""Sweeps, end to end through the real ``ablations`` Prefect flow (``prefect_test_harness``),
local Ray Tune (2 CPUs, 2 concurrent trials) and an MLflow sqlite store, with a light trial
function in place of sampling + scoring:

- a trial whose process dies is retried (``retries: 1``) and completes on its second attempt;
- a trial that keeps failing is FAILED in Prefect (its task) and MLflow (its run, with the
  error), the flow fails, and the other trials finish;
- concurrent trials write only into their own folders;
- re-running the half-finished sweep skips the finished grid points (keyed by their params) and
  reruns the failed one (keys, ``force`` and RUNNING / FAILED runs: the second test).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from reliability_helpers import REPO

from unmask.data.shards import ShardWriter
from unmask.orchestration import runs
from unmask.orchestration.ablation import Ablation, AblationRequest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STEPS = [2, 3, 4, 5]  # sample.steps per point; 3: killed once, 4: always fails
KILLED, FAILING = 3, 4


def light_trial(config, specs):
    """Stands in for sampling + scoring: records its attempts in its own folder, dies on the
    first attempt of the point with steps=3, raises on the point with steps=4."""
    import os
    import time

    from ray import tune

    from unmask.orchestration.runs import TrialRun
    from unmask.orchestration.trials import TrialSpec

    spec = TrialSpec(**specs[config["index"]])
    out = Path(spec.trial_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = spec.point["sample.steps"]
    with TrialRun(
        spec.tracking_uri, spec.experiment_id, spec.parent_run_id, spec.key, spec.label
    ) as run:
        foreign = sorted(
            p.name for p in out.iterdir() if p.name not in {"attempts.txt", "result.json"}
        )
        with open(out / "attempts.txt", "a") as f:
            f.write(f"{spec.index} {os.getpid()} {foreign}\n")
        if steps == 3 and len((out / "attempts.txt").read_text().splitlines()) == 1:
            os._exit(1)  # the trial's process dies (OOM-killer, lost node, ...)
        if steps == 4:
            raise ValueError(f"point steps={steps} is broken")
        time.sleep(1.0)  # overlap with the other running trial
        (out / "result.json").write_text(json.dumps({"index": spec.index, "steps": steps}))
        run.log_metrics({"score": float(steps)})
        run.set_tags({"unmask.primary_metric": "score"})
    tune.report({"score": float(steps)})


class LightAblation(Ablation):
    trainable = staticmethod(light_trial)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    for split in ("train", "test"):
        with ShardWriter(
            root / "data" / "tokens" / split,
            count=8,
            shape=(4,),
            vocab_size=5,
            labels=True,
            tokenizer={"identity": "t", "hash": "t"},
        ) as w:
            w.write(np.arange(32).reshape(8, 4) % 5, np.arange(8) % 2)
    (root / "models").mkdir()
    (root / "models" / "model.pt").write_bytes(b"stand-in checkpoint (the trials never read it)")
    # the real params name a VQ tokenizer: the sweep checks it exists before any trial starts
    (root / "models" / "tokenizer.pt").write_bytes(b"stand-in tokenizer (never read either)")
    (root / "data" / "prepared").mkdir(parents=True)
    (root / "data" / "prepared" / "test.npz").write_bytes(b"stand-in held-out images")
    settings = yaml.safe_load((REPO / "flows" / "ablations.yaml").read_text())
    settings.update(retries=1)
    settings["ray"].update(num_cpus=2, cpus_per_trial=1, max_concurrent_trials=2)
    settings["axes"] = {"nfe": {"kind": "sampling", "grid": {"sample.steps": STEPS}}}
    (root / "ablations.yaml").write_text(yaml.safe_dump(settings))
    return root


def _flow(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "flows_ablations", REPO / "flows" / "ablations.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "Ablation", LightAblation)
    return module


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def fetch():
        async with get_client() as c:
            trs = await c.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            return {t.name: t.state.type.value for t in trs}

    import asyncio

    return asyncio.run(fetch())


def _artifacts(flow_run_id) -> dict[str, object]:
    """{key: artifact} of a flow run (Prefect API)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def fetch():
        async with get_client() as c:
            arts = await c.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return {a.key: a for a in arts}

    return asyncio.run(fetch())


def _run_flow(module, project, **kw):
    """Run the flow; returns (flow state, its task-run states, the table rows by steps)."""
    state = module.ablations(
        axis="nfe", workdir=str(project), settings="ablations.yaml", return_state=True, **kw
    )
    flow_run_id = state.state_details.flow_run_id
    with open(project / "reports" / "ablations" / "nfe.csv") as f:
        rows = {int(r["sample.steps"]): r for r in csv.DictReader(f)}
    module.last_artifacts = _artifacts(flow_run_id)
    return state, _task_states(flow_run_id), rows


def test_sweep_retries_fails_isolates_and_resumes(project, monkeypatch, tmp_path):
    import sys

    from prefect.testing.utilities import prefect_test_harness
    from ray import cloudpickle

    # Ray workers cannot import this test module: ship light_trial by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    # Anything written relative to the working directory lands in tmp, never in the repo
    # (an earlier version left artifacts/ablations_nfe/... behind; checked below).
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    module = _flow(monkeypatch)
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    with prefect_test_harness(server_startup_timeout=180):
        state, tasks, rows = _run_flow(module, project)
        assert state.is_failed() and "1 of 4 trials failed" in str(state.message)
        labels = {s: f"steps={s}" for s in STEPS}
        assert {tasks[labels[s]] for s in STEPS if s != FAILING} == {"COMPLETED"}
        assert tasks[labels[FAILING]] == "FAILED"
        assert {s: rows[s]["status"] for s in STEPS} == {
            2: "completed",
            3: "completed",
            4: "failed",
            5: "completed",
        }
        assert "point steps=4 is broken" in rows[FAILING]["error"]
        # the sweep table is an artifact of the parent run inside the project's store
        assert list((project / "mlruns").rglob("nfe.csv")) and not (cwd / "artifacts").exists()
        # The flow-run page: a table (one row per point, its status, metric and MLflow run) and
        # a markdown summary naming the failed point.
        arts = module.last_artifacts
        assert arts["ablation-nfe"].type == "table"
        table = arts["ablation-nfe"].data
        table = json.loads(table) if isinstance(table, str) else table
        by_point = {r["point"]: r for r in table}
        assert set(by_point) == {f"steps={s}" for s in STEPS}
        assert by_point["steps=5"]["status"] == "completed"
        assert by_point["steps=5"]["primary"] == 5.0
        assert rows[5]["mlflow_run_id"] in by_point["steps=5"]["mlflow_run"]
        assert by_point["steps=4"]["status"] == "failed"
        md = arts["ablation-nfe-summary"].data
        assert arts["ablation-nfe-summary"].type == "markdown"
        assert "1 failed" in md and "steps=4" in md and "point steps=4 is broken" in md
        assert "best point: **steps=2** (score = 2.0)" in md
        # the sweep rebuilt the MLflow report next to its table: every finished trial is listed
        report_runs = (project / "reports" / "ablations" / "runs.csv").read_text()
        assert (project / "reports" / "ablations" / "index.html").stat().st_size > 0
        for s in (2, 3, 5):
            assert rows[s]["mlflow_run_id"] in report_runs

        # MLflow: one run per point; the killed point's run was reused by its retry.
        c = runs.client(uri)
        by_key = {r["grid_key"]: r for r in rows.values()}
        status = {
            int(rows_k["sample.steps"]): c.get_run(rows_k["mlflow_run_id"])
            for rows_k in by_key.values()
        }
        assert {s: r.info.status for s, r in status.items()} == {
            2: "FINISHED",
            3: "FINISHED",
            4: "FAILED",
            5: "FINISHED",
        }
        assert status[KILLED].data.tags["unmask.attempt"] == "2"
        assert "point steps=4 is broken" in status[FAILING].data.tags["unmask.error"]
        assert status[5].data.metrics["score"] == 5.0

        # Each trial wrote only into its own folder (one per grid key), attempts included.
        folders = {s: project / "runs" / "ablations" / "nfe" / rows[s]["grid_key"] for s in STEPS}
        assert len(set(folders.values())) == 4
        for s, folder in folders.items():
            attempts = [
                ln.split(" ", 2) for ln in (folder / "attempts.txt").read_text().splitlines()
            ]
            assert {a[0] for a in attempts} == {rows[s]["index"]}
            assert all(a[2] == "[]" for a in attempts)  # never saw another trial's files
            assert len(attempts) == {KILLED: 2, FAILING: 2}.get(s, 1)  # retries: 1
            if s != FAILING:
                assert json.loads((folder / "result.json").read_text())["steps"] == s

        # Re-run the half-finished sweep: finished points are skipped, the failed one reruns.
        state2, tasks2, rows2 = _run_flow(module, project)
        assert state2.is_failed()
        assert {s: rows2[s]["status"] for s in STEPS} == {
            2: "skipped",
            3: "skipped",
            4: "failed",
            5: "skipped",
        }
        assert sum(n.endswith("(done before)") for n in tasks2) == 3
        assert rows2[5]["mlflow_run_id"] == rows[5]["mlflow_run_id"]
        assert len((folders[2] / "attempts.txt").read_text().splitlines()) == 1  # not rerun
        assert len((folders[FAILING] / "attempts.txt").read_text().splitlines()) == 4


def test_point_keys_follow_the_params_and_force_reruns(project):
    """The skip key is a hash of the resolved params (and what else the result depends on):
    a FINISHED run of the key skips the point, a run left RUNNING by a killed trial or a FAILED
    one does not; ``force`` skips nothing; other overrides give other keys."""
    req = dict(axis="nfe", workdir=str(project), settings="ablations.yaml", experiment="keys-test")
    planned = Ablation(AblationRequest(**req)).plan()
    keys = [pp.key for pp in planned]
    assert len(set(keys)) == len(STEPS) and not any(pp.skipped for pp in planned)
    assert [pp.key for pp in Ablation(AblationRequest(**req)).plan()] == keys  # deterministic

    uri, exp = planned[0].spec.tracking_uri, planned[0].spec.experiment_id
    parent = runs.client(uri).create_run(exp).info.run_id
    for pp in planned[:2]:  # two points finished
        with runs.TrialRun(uri, exp, parent, pp.key, pp.point.label):
            pass
    killed = runs.TrialRun(uri, exp, parent, planned[2].key, planned[2].point.label)
    killed.__enter__()  # its process died: the run stays RUNNING
    with pytest.raises(ValueError), runs.TrialRun(uri, exp, parent, planned[3].key, "x"):
        raise ValueError("failed point")

    again = Ablation(AblationRequest(**req)).plan()
    assert [pp.skipped for pp in again] == [True, True, False, False]
    assert not any(pp.skipped for pp in Ablation(AblationRequest(**req, force=True)).plan())
    other = Ablation(AblationRequest(**req, overrides=["sample.temperature=0.5"])).plan()
    assert not set(keys) & {pp.key for pp in other}
    assert not any(pp.skipped for pp in other)
