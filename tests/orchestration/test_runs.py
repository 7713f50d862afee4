"""MLflow bookkeeping of a sweep (local sqlite store): a retried trial reuses its run, a failed
one records its error, finished points are found by key."""

from __future__ import annotations

import pytest

from unmask.orchestration import runs
from unmask.tracking import Tracker


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    exp = runs.ensure_experiment(uri, "ablations/test")
    assert runs.ensure_experiment(uri, "ablations/test") == exp
    tracker = Tracker(uri)
    tracker.start_run("ablations/test", "sweep", tags={"unmask.kind": "sweep"})
    yield uri, exp, tracker.run_id
    tracker.end_run()


def test_retry_reuses_the_run_and_failure_is_recorded(store):
    uri, exp, parent = store
    with pytest.raises(ValueError, match="boom"), \
            runs.TrialRun(uri, exp, parent, "k1", "steps=4", {"x": 1}) as first:
        first.log_params({"sample": {"steps": 4}})
        raise ValueError("boom")
    c = runs.client(uri)
    run = c.get_run(first.run_id)
    assert run.info.status == "FAILED" and run.data.tags["unmask.error"] == "ValueError: boom"
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["x"] == "1"
    with runs.TrialRun(uri, exp, parent, "k1", "steps=4") as second:
        second.log_params({"sample": {"steps": 4}})  # the same params again: allowed
        second.log_metrics({"fid": 12.5})
    assert second.run_id == first.run_id and second.attempt == 2
    run = c.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["fid"] == 12.5
    assert run.data.tags["unmask.attempt"] == "2" and run.data.params["sample.steps"] == "4"

    with runs.TrialRun(uri, exp, parent, "k2", "steps=8"):
        pass
    with pytest.raises(RuntimeError), runs.TrialRun(uri, exp, parent, "k3", "steps=16"):
        raise RuntimeError("x")
    assert set(runs.finished_points(uri, exp)) == {"k1", "k2"}
    assert runs.finished_points(uri, runs.ensure_experiment(uri, "other")) == {}


def test_run_logger_buffers_while_the_server_is_away(tmp_path):
    import json
    import warnings

    from unmask.orchestration.env import free_port

    logger = runs.RunLogger(f"http://127.0.0.1:{free_port()}", "run-1", "train/",
                            spool_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.log_metrics({"loss": 2.5}, step=3)  # the rank-0 training step goes on
        logger.log_metrics({"loss": 2.0}, step=4)
    assert any("went away" in str(w.message) for w in caught)
    assert logger.pending == 2 and not logger.flush()
    (spool,) = tmp_path.glob("*.jsonl")
    ops = [json.loads(line) for line in spool.read_text().splitlines()]
    assert [(op["run_id"], op["items"][0][0], op["items"][0][1], op["items"][0][3])
            for op in ops] == [("run-1", "train/loss", 2.5, 3), ("run-1", "train/loss", 2.0, 4)]
