import socket
import time

import pytest

from unmask.tracking import NullTracker, Tracker, TrackingUnavailableError, flatten, tracking_uri


def test_flatten_nested():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}) == {
        "a.b": "1", "a.c.d": "x", "e": "[1, 2]", "f": "{}"
    }


def test_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_sqlite_store_roundtrip(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    art = tmp_path / "note.txt"
    art.write_text("hello")
    tr = Tracker(root=tmp_path / "mlruns")
    with tr.start_run("exp", "parent", params={"model": {"dim": 8}}, tags={"k": "v"}):
        parent = tr.run_id
        tr.log_metrics({"loss": 2.0}, step=1)
        tr.log_metrics({"loss": 1.5}, step=2)
        tr.log_artifact(art)
        with tr.start_run("exp", "child", nested=True):
            child = tr.run_id
        with pytest.raises(RuntimeError, match="nested=True"):
            tr.start_run("exp", "other")
    assert tr.run_id is None
    c = tr.client
    run = c.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"model.dim": "8"} and run.data.tags["k"] == "v"
    hist = c.get_metric_history(parent, "loss")
    assert [(m.step, m.value) for m in hist] == [(1, 2.0), (2, 1.5)]
    assert c.get_run(child).data.tags["mlflow.parentRunId"] == parent
    assert (tmp_path / "mlruns" / "mlflow.db").exists()
    arts = list((tmp_path / "mlruns" / "artifacts").rglob("note.txt"))
    assert len(arts) == 1 and arts[0].read_text() == "hello"
    # An exception marks the run FAILED.
    with pytest.raises(KeyError), tr.start_run("exp", "boom"):
        failed = tr.run_id
        raise KeyError("x")
    assert c.get_run(failed).info.status == "FAILED"


def test_unreachable_server_is_one_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(TrackingUnavailableError, match="mlflow server --backend-store-uri") as e:
        Tracker(uri=f"http://127.0.0.1:{port}").start_run("x")
    assert "\n" not in str(e.value) and time.time() - t0 < 10


def test_null_tracker_records():
    tr = NullTracker()
    with tr.start_run("e", params={"a": {"b": 2}}):
        tr.log_metrics({"loss": 1.0, "lr": 0.1}, step=3)
        assert tr.run_id is not None
    assert tr.run_id is None
    assert tr.params == {"a.b": "2"}
    assert list(tr.history("lr")) == [(3, 0.1)]
    with pytest.raises(RuntimeError, match="no active run"):
        Tracker(uri="sqlite:///unused.db").log_metrics({"x": 1}, 0)
