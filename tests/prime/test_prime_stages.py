"""The MDM-Prime pipeline stages (``python -m unmask.stages prime.<stage>``) end to end on tiny
inputs (a fake fortunes corpus; a few Fashion-MNIST images when the Debian package is
installed), and one-line config errors."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from unmask.config import load_params
from unmask.prime.config import PrimeParams
from unmask.prime.pipeline import ESTIMATOR, model_config, run_key
from unmask.stages import main

FORTUNES = "\n%\n".join(
    f"Fortune number {i}: the {w} of {v} is {u}, said the {w}."
    for i, (w, v, u) in enumerate(
        [("cat", "code", "strange"), ("dog", "tests", "green"), ("bird", "ideas", "quick"),
         ("fish", "python", "slow"), ("owl", "rules", "kind")] * 40
    )
)


def _params(tmp: Path, data: dict, extra: dict | None = None) -> Path:
    p = {
        "data": data,
        "model": {"dim": 32, "depth": 1, "heads": 2},
        "prime": {"ells": [1, 2]},
        "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "weighting": "elbo",
                  "log_every": 1, "ckpt_every": 3, "device": "cpu"},
        "evaluate": {"n_sequences": 6, "num_samples": 2, "batch_size": 3},
        "sample": {"steps": 8, "num_samples": 2, "batch_size": 2},
        "tracking": {"enabled": False},
        **(extra or {}),
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


def _run_all(ells: list[int]) -> dict:
    main(["prime.prepare"])
    for e in ells:
        main(["prime.train", "--ell", str(e)])
        main(["prime.evaluate", "--ell", str(e)])
    return main(["prime.report"])


def test_text_pipeline_end_to_end(tmp_path, monkeypatch):
    corpus = tmp_path / "fortunes"
    corpus.mkdir()
    (corpus / "fortunes").write_text(FORTUNES)
    _params(tmp_path, {"kind": "text", "source": "fortunes", "root": str(corpus),
                       "block_size": 16, "valid_fraction": 0.2, "compact_vocab": True})
    monkeypatch.chdir(tmp_path)
    summary = _run_all([1, 2])
    per = summary["per_ell"]
    meta = json.loads(Path("data/meta.json").read_text())
    assert meta["vocab_size"] == len(meta["id_map"]) < 400  # compact relabelling
    assert per["l2"]["base"] ** 2 >= meta["vocab_size"] > (per["l2"]["base"] - 1) ** 2
    for e in ("l1", "l2"):
        m = per[e]
        assert m["perplexity"] > 1 and m["nelbo_stderr"] >= 0
        assert 0 <= m["isr"] <= 1 and m["isr_expected"] is not None
        assert Path(f"eval/{e}/samples.txt").read_text().count("===== sample") == 2
    assert "delta_nelbo_vs_l1" in per["l2"] and "ℓ=2" in summary["verdict"]
    saved = json.loads(Path("metrics.json").read_text())
    assert saved["ells"] == [1, 2]
    # issue 18: the PPL is labelled with its estimator wherever it is written
    assert saved["estimator"] == ESTIMATOR and "not MDM-Prime eq. 5" in ESTIMATOR
    for e in ("l1", "l2"):
        assert json.loads(Path(f"eval/{e}/metrics.json").read_text())["estimator"] == ESTIMATOR
    rows = {r[0]: r[1:] for r in csv.reader(Path("reports/ells.csv").read_text().splitlines())}
    assert rows["metric"] == ["l1", "l2"] and rows["estimator"] == [ESTIMATOR] * 2
    assert float(rows["perplexity"][1]) == pytest.approx(per["l2"]["perplexity"])
    # the one report writer's page; tracking is off, so the ℓ rows come from the stage's notes
    html = Path("reports/index.html").read_text()
    assert "Tracking is disabled" in html and "not MDM-Prime eq. 5" in html
    assert f"PPL {per['l2']['perplexity']:.2f}" in html and "ℓ = 2 (b = " in html
    # a re-run resumes the finished training run instead of starting over
    again = main(["prime.train", "--ell", "1"])
    assert again["step"] == 3


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_pixel_pipeline_end_to_end(tmp_path, monkeypatch):
    _params(tmp_path, {"kind": "pixels", "dataset": "fashion_mnist", "levels": 16, "size": 6,
                       "max_train": 32, "max_valid": 8}, {"prime": {"ells": [1, 4]}})
    monkeypatch.chdir(tmp_path)
    summary = _run_all([1, 4])
    assert summary["per_ell"]["l4"]["base"] == 2  # 2^4 = 16 levels
    assert Path("eval/l4/samples.png").is_file()


def _one_line_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    return err


def test_config_errors_are_one_line(tmp_path, monkeypatch, capsys):
    _params(tmp_path, {"kind": "text"}, {"trian": {"steps": 1}})
    monkeypatch.chdir(tmp_path)
    assert "trian" in _one_line_error(["prime.report"], capsys)
    _params(tmp_path, {"kind": "text"}, {"model": {"vocab_size": 7}})
    assert "derived" in _one_line_error(["prime.report"], capsys)
    _params(tmp_path, {"kind": "text"}, {"model": {"dim": -3}})
    assert "model.dim" in _one_line_error(["prime.report"], capsys)
    _params(tmp_path, {"kind": "owt"})  # OpenWebText has no embedded copy
    assert "data.root" in _one_line_error(["prime.prepare"], capsys)
    _params(tmp_path, {"kind": "pixels", "dataset": "cifar10"})
    assert "data.root" in _one_line_error(["prime.prepare"], capsys)
    _params(tmp_path, {"kind": "text"})
    assert "prime.ells" in _one_line_error(["prime.train", "--ell", "3"], capsys)
    assert "--seeds" in _one_line_error(["prime.seeds", "--seeds", "0,x"], capsys)
    assert "--ells" in _one_line_error(["prime.seeds", "--ells", "1,1"], capsys)
    assert "prime.ells" in _one_line_error(
        ["prime.report", "--set", "prime.ells=[0, 2]"], capsys)
    p = load_params(tmp_path / "params.yaml", ["train.steps=7"], schema=PrimeParams)
    assert isinstance(p, PrimeParams) and p.train.steps == 7
    assert "prime.carry_over" in _one_line_error(
        ["prime.report", "--set", "prime.carry_over=sometimes"], capsys)


def test_carry_over_reaches_the_model_and_its_run_key():
    owt = Path(__file__).resolve().parents[2] / "pipelines" / "owt" / "params.yaml"
    meta = {"vocab_size": 50257, "shape": [16], "counts": {}, "data": {}}
    on = load_params(owt, schema=PrimeParams)
    off = load_params(owt, ["prime.carry_over=false"], schema=PrimeParams)
    assert on.prime.carry_over is True  # the paper's final model (MDM-Prime App. A.4.3)
    cfg_on, cfg_off = model_config(on, meta, 2), model_config(off, meta, 2)
    assert cfg_on.carry_over is True and cfg_off.carry_over is False
    # a run trained one way is never resumed the other way
    assert run_key(cfg_on, on, meta) != run_key(cfg_off, off, meta)


@pytest.mark.slow
def test_seed_repeats_log_the_report_names(tmp_path, monkeypatch):
    """`python -m unmask.stages prime.seeds` (2 seeds × ℓ ∈ {1, 2}, rotary trunk) trains and
    evaluates every cell and logs evaluate runs with the names of unmask.tracking_tags to
    MLflow; `prime.seeds-summary` summarises the finished cells without training."""
    from unmask.orchestration.runs import client
    from unmask.tracking_tags import (
        ABLATION,
        ABLATION_PRIME_L,
        METRIC_ISR,
        METRIC_PPL,
        PAPER,
        PAPER_PRIME,
        PARAM_PRIME_L,
        PARAM_SEED,
        STAGE,
    )

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    corpus = tmp_path / "fortunes"
    corpus.mkdir()
    (corpus / "fortunes").write_text(FORTUNES)
    _params(tmp_path, {"kind": "text", "source": "fortunes", "root": str(corpus),
                       "block_size": 16, "valid_fraction": 0.2, "compact_vocab": True},
            {"tracking": {"enabled": True, "experiment": "prime-test", "root": "mlruns"},
             "model": {"dim": 32, "depth": 1, "heads": 2, "rotary": True}})
    monkeypatch.chdir(tmp_path)
    main(["prime.prepare"])
    argv = ["--seeds", "0,1", "--ells", "1,2", "--out", "seeds"]
    summary = main(["prime.seeds", *argv])
    assert set(summary["per_ell"]) == {"l1", "l2"} and summary["estimator"] == ESTIMATOR
    assert len(summary["per_ell"]["l2"]["delta_nelbo_vs_l1"]) == 2
    assert json.loads(Path("seeds/summary.json").read_text())["seeds"] == [0, 1]
    mc = client(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = mc.get_experiment_by_name("prime-test")
    runs = mc.search_runs([exp.experiment_id],
                          filter_string=f"tags.`{ABLATION}` = '{ABLATION_PRIME_L}'")
    ev = [r for r in runs if r.data.tags[STAGE] == "evaluate"]
    assert len(ev) == 4
    assert {(r.data.params[PARAM_PRIME_L], r.data.params[PARAM_SEED]) for r in ev} == {
        ("1", "0"), ("2", "0"), ("1", "1"), ("2", "1")}
    for r in ev:
        assert r.data.tags[PAPER] == PAPER_PRIME
        assert r.data.metrics[METRIC_PPL] > 1 and 0 <= r.data.metrics[METRIC_ISR] <= 1
        assert r.data.params["model.rotary"] == "True"
    assert [r.data.tags[STAGE] for r in runs].count("summary") == 1
    # a second call reuses the finished cells (no new training runs), as does the summary
    n_train = sum(r.data.tags[STAGE] == "train" for r in runs)
    again = main(["prime.seeds", *argv, "--jobs", "2"])
    assert main(["prime.seeds-summary", *argv]) == again == summary
    runs = mc.search_runs([exp.experiment_id],
                          filter_string=f"tags.`{ABLATION}` = '{ABLATION_PRIME_L}'")
    assert sum(r.data.tags[STAGE] == "train" for r in runs) == n_train
    # prime.report on seed 0's cells: the one writer's page over the store's real runs
    monkeypatch.chdir(tmp_path / "seeds" / "s0")
    rep = main(["prime.report", "--params", str(tmp_path / "params.yaml"),
                "--set", f"tracking.root={tmp_path / 'mlruns'}"])
    ev0 = json.loads(Path("eval/l2/metrics.json").read_text())
    assert rep["per_ell"]["l2"]["perplexity"] == ev0["perplexity"]
    page = {(r["run"], r["metric"]): float(r["value"])
            for r in csv.DictReader(Path("reports/metrics.csv").read_text().splitlines())}
    assert page[("report", "perplexity_l2")] == pytest.approx(ev0["perplexity"])
    assert "not MDM-Prime eq. 5" in Path("reports/index.html").read_text()
