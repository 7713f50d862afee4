"""MLflow outages: a server that is down at the start is one clear line (and exit status 2 for
commands that need it); a server that goes away mid-run loses nothing — training goes on, the
records wait in a local spool file and reach the server when it is back (or by import)."""

from __future__ import annotations

import json
import subprocess
import time
import warnings

import pytest
import torch
from reliability_helpers import PYTHON, assert_user_error, run_cli, subprocess_env

from unmask.models import ModelConfig, Transformer
from unmask.orchestration.env import free_port
from unmask.tracking import NullTracker, Tracker, TrackingUnavailableError
from unmask.training import TrainConfig, train

pytestmark = pytest.mark.timeout(600)


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _tiny():
    torch.manual_seed(0)
    model = Transformer(
        ModelConfig(vocab_size=5, seq_len=6, dim=16, depth=1, heads=2, num_classes=0, dropout=0.0)
    )
    tokens = torch.randint(0, 5, (32, 6), generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(
        steps=8,
        batch_size=8,
        lr=1e-2,
        warmup_steps=1,
        log_every=1,
        ckpt_every=2,
        keep_last=1,
        device="cpu",
        ema_decay=0.9,
    )
    return model, tokens, cfg


def test_server_down_at_start_is_one_line_and_exit_2(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens
    with pytest.raises(TrackingUnavailableError) as e:
        Tracker(uri).start_run("x")
    assert "\n" not in str(e.value) and "mlflow server" in str(e.value)
    assert "--host 127.0.0.1" in str(e.value)
    # A command that needs the server: `unmask train` with MLFLOW_TRACKING_URI pointing at it.
    out = run_cli(
        ["train", "--params", str(_params_file(tmp_path))], tmp_path, MLFLOW_TRACKING_URI=uri
    )
    line = assert_user_error(out, uri, "does not answer", "mlflow server")
    assert "start one with" in line


def _params_file(tmp_path):
    """The repo's params with a tiny training (it never starts: the server is down)."""
    from reliability_helpers import REPO

    text = (REPO / "params.yaml").read_text()
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


@pytest.mark.slow  # two server starts (~25 s each on 2 cores)
def test_training_survives_a_server_outage_and_nothing_is_lost(tmp_path, mlflow_server):
    model, tokens, cfg = _tiny()
    reference = NullTracker()
    ref_model, _, _ = _tiny()
    train(ref_model, tokens, None, cfg, tmp_path / "ref", tracker=reference, progress=False)

    tracker = Tracker(mlflow_server.url, spool_dir=tmp_path / "spool", retry_every=0.2)
    seen: dict[str, object] = {}

    def outage(path, step, metrics):
        if step == 2:  # the server crashes after step 2 ...
            mlflow_server.stop()
        elif step == 6:  # ... and is back before step 7
            seen["spooled"] = tracker.spool_file.read_text()
            seen["pending"] = tracker.pending
            mlflow_server.start()
            time.sleep(0.3)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker.start_run("outage", "train", params={"steps": 8}):
            run_id = tracker.run_id
            train(
                model,
                tokens,
                None,
                cfg,
                tmp_path / "run",
                tracker=tracker,
                progress=False,
                on_checkpoint=outage,
            )
    assert any(
        "went away" in str(w.message) and str(tmp_path / "spool") in str(w.message) for w in caught
    )
    # Steps 3..6 waited in the spool file while the server was down.
    spooled = [json.loads(ln) for ln in str(seen["spooled"]).splitlines()]
    steps = sorted({it[3] for op in spooled if op["op"] == "metrics" for it in op["items"]})
    assert steps == [3, 4, 5, 6] and seen["pending"] == len(spooled)
    # Nothing lost: the server has every step's loss, bit for bit, and the run is FINISHED.
    assert _history(mlflow_server.url, run_id, "loss") == list(reference.history("loss"))
    assert [s for s, _ in _history(mlflow_server.url, run_id, "lr")] == list(range(1, 9))
    from mlflow.tracking import MlflowClient

    run = MlflowClient(mlflow_server.url).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["steps"] == "8"
    assert tracker.pending == 0 and not list((tmp_path / "spool").glob("*.jsonl"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:MLflow server .* went away")
def test_records_left_when_the_server_stays_down_are_imported_later(tmp_path, mlflow_server):
    tracker = Tracker(mlflow_server.url, spool_dir=tmp_path / "spool", retry_every=0.2)
    artifact = tmp_path / "note.txt"
    artifact.write_text("hello")
    with (
        pytest.warns(UserWarning, match="could not be sent.*python -m unmask.tracking import"),
        tracker.start_run("later", "r"),
    ):
        run_id = tracker.run_id
        tracker.log_metrics({"loss": 1.5}, step=1)
        mlflow_server.stop()
        tracker.log_metrics({"loss": 1.25}, step=2)
        tracker.set_tags({"phase": "offline"})
        tracker.log_artifact(artifact)
    artifact.unlink()  # the spool keeps its own copy
    spool = tracker.spool_file
    assert spool is not None and spool.is_file()
    mlflow_server.start()
    out = subprocess.run(
        [PYTHON, "-m", "unmask.tracking", "import", str(spool), "--uri", mlflow_server.url],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "sent 4 records" in out.stdout  # metrics, tags, artifact, terminate
    assert _history(mlflow_server.url, run_id, "loss") == [(1, 1.5), (2, 1.25)]
    from mlflow.tracking import MlflowClient

    c = MlflowClient(mlflow_server.url)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["phase"] == "offline"
    assert [a.path for a in c.list_artifacts(run_id)] == ["note.txt"]
    assert not spool.exists()
