"""Ray Train (TorchTrainer, 2 gloo workers on CPU) around the training loop: the same loss
curve as one process, checkpoints through Ray Train, resume after a failed worker; and a
training-time ablation axis (one model trained per grid point inside a Ray Tune trial)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unmask.data import fashion_mnist
from unmask.orchestration.ddp import run_rank, train_with_ray
from unmask.orchestration.env import ray_init

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray_init(num_cpus=2)
    yield
    ray.shutdown()


def history(path: str) -> dict[int, float]:
    """step → loss; a step logged twice (before and after a restart) keeps the last value."""
    out: dict[int, float] = {}
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        out[row["step"]] = row["loss"]
    return out


def test_two_ray_workers_match_one_process_and_survive_a_worker_failure(ray_local, make_job,
                                                                        tmp_path):
    single = make_job("single")
    run_rank(single, 0, 1)
    job = make_job("ray", ckpt_every=2).model_copy(update={"fail_once_at": 4})
    out = train_with_ray(job, name="ddp-test", storage_path=tmp_path / "ray", num_workers=2,
                         max_failures=1)
    assert (Path(job.work_dir) / ".failed_once").read_text() == "4"  # the failure happened
    assert out.step == 8 and out.checkpoint.is_file()
    assert list((tmp_path / "ray" / "ddp-test").glob("checkpoint_*"))  # kept by Ray Train
    a, b = history(single.history_file), history(job.history_file)
    assert sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    # The restarted group resumed from the step-4 checkpoint instead of starting over.
    lines = [json.loads(x)["step"] for x in Path(job.history_file).read_text().splitlines()]
    assert lines.count(1) == 1 and lines[-4:] == [5, 6, 7, 8]


@pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                    reason="apt-get install dataset-fashion-mnist")
def test_training_axis_trains_a_model_per_point(ray_local, tmp_path):
    from mlflow.tracking import MlflowClient

    from unmask.orchestration.ablation import Ablation, AblationRequest
    from unmask.orchestration.tiny import make_project

    project = make_project(tmp_path / "p", stages=("prepare", "train-tokenizer", "tokenize"))
    assert not (project / "models/model.pt").exists()  # training axes need no checkpoint
    summary = Ablation(AblationRequest(
        axis="weighting", workdir=str(project), metric="stats", num_workers=2,
        overrides=["train.steps=4", "train.batch_size=16"])).run()
    assert summary.completed == [0, 1] and not summary.failed

    c = MlflowClient(tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db")
    exp = c.get_experiment_by_name("ablations/weighting")
    runs = c.search_runs([exp.experiment_id], "tags.`unmask.kind` = 'trial'")
    assert sorted(r.data.params["train.weighting"] for r in runs) == ["constant", "elbo"]
    curves = {}
    for r in runs:
        assert r.info.status == "FINISHED"
        assert {"nelbo_bpt", "hist_tv", "nfe", "seconds_per_sample"} <= set(r.data.metrics)
        curve = c.get_metric_history(r.info.run_id, "train/loss")
        assert [m.step for m in curve] == [2, 4]
        curves[r.data.params["train.weighting"]] = [m.value for m in curve]
    assert curves["constant"] != curves["elbo"]
    for key in (p.key for p in Ablation(AblationRequest(
            axis="weighting", workdir=str(project), metric="stats",
            overrides=["train.steps=4", "train.batch_size=16"])).plan()):
        assert (project / "runs/ablations/weighting" / key / "train/final").is_dir()


@pytest.mark.skipif(not fashion_mnist.DEFAULT_ROOT.is_dir(),
                    reason="apt-get install dataset-fashion-mnist")
def test_train_experiment_default(ray_local, tmp_path):
    """The `train` flow's body: DDP training of the default pipeline, resumable by key."""
    from mlflow.tracking import MlflowClient

    from unmask.orchestration.experiment import TrainRequest, train_experiment
    from unmask.orchestration.tiny import make_project
    from unmask.training import load_checkpoint

    project = make_project(tmp_path / "p", stages=("prepare", "train-tokenizer", "tokenize"))
    req = TrainRequest(workdir=str(project), num_workers=2, overrides=["train.steps=4"])
    out = train_experiment(req)
    ckpt = load_checkpoint(out["checkpoint"])
    assert out["step"] == ckpt.step == 4 and ckpt.train_config["steps"] == 4
    c = MlflowClient(tracking_uri=f"sqlite:///{project}/mlruns/mlflow.db")
    run = c.get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["ray.num_workers"] == "2"
    assert [m.step for m in c.get_metric_history(run.info.run_id, "train/loss")] == [2, 4]
    again = train_experiment(req)  # same key: the finished run is resumed, not redone
    assert again["checkpoint"] == out["checkpoint"] and again["step"] == 4
    assert c.get_metric_history(again["mlflow_run_id"], "train/loss") == []
    with pytest.raises(FileNotFoundError, match="no pipeline experiment 'nope'"):
        train_experiment(TrainRequest(workdir=str(project), experiment="nope"))


def test_pipeline_with_its_own_schema_trains_through_its_dvc_stages(ray_local, tmp_path):
    """A pipeline whose params are not the default schema: its train* DVC stages run as a Ray
    task, recorded in MLflow; a failing stage fails the flow with the log tail."""
    import subprocess
    import sys

    import yaml
    from mlflow.tracking import MlflowClient

    from unmask.orchestration.experiment import TrainRequest, train_experiment

    bin_dir = Path(sys.executable).parent
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(bin_dir / "dvc"), "init", "-q"], cwd=tmp_path, check=True)
    # a project as users have it: the repo's flow settings, the pipeline its own DVC project
    (tmp_path / "flows").mkdir()
    shutil.copyfile(REPO / "flows/ablations.yaml", tmp_path / "flows/ablations.yaml")
    exp = tmp_path / "pipelines/toy"
    exp.mkdir(parents=True)
    subprocess.run([str(bin_dir / "dvc"), "init", "--subdir", "-q"], cwd=exp, check=True)
    (exp / "params.yaml").write_text("toy:\n  size: 3\n")
    stages = {"stages": {
        "prepare": {"cmd": "python -c \"open('data.txt', 'w').write('d')\"", "outs": ["data.txt"]},
        "train": {"cmd": "python -c \"print('training'); open('model.txt', 'w').write("
                         "open('data.txt').read() + 'm')\"",
                  "deps": ["data.txt"], "params": ["toy.size"], "outs": ["model.txt"]},
        "report": {"cmd": "python -c \"open('report.txt', 'w').write('r')\"",
                   "deps": ["model.txt"], "outs": ["report.txt"]}}}
    (exp / "dvc.yaml").write_text(yaml.safe_dump(stages))
    out = train_experiment(TrainRequest(workdir=str(tmp_path), experiment="toy"))
    assert out["stages"] == ["train"]
    assert (exp / "model.txt").read_text() == "dm"  # train ran after its upstream stage
    assert not (exp / "report.txt").exists()  # downstream stages are not the flow's business
    c = MlflowClient(tracking_uri=f"sqlite:///{exp}/mlruns/mlflow.db")
    run = c.get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "dvc-repro.log" in {
        a.path for a in c.list_artifacts(run.info.run_id)}
    assert "training" in Path(out["log"]).read_text()

    stages["stages"]["train"]["cmd"] = "python -c \"raise SystemExit('no GPU here')\""
    (exp / "dvc.yaml").write_text(yaml.safe_dump(stages))
    with pytest.raises(RuntimeError, match="no GPU here"):
        train_experiment(TrainRequest(workdir=str(tmp_path), experiment="toy"))
    with pytest.raises(ValueError, match="edit .*params.yaml instead of overrides"):
        train_experiment(TrainRequest(workdir=str(tmp_path), experiment="toy",
                                      overrides=["toy.size=4"]))
