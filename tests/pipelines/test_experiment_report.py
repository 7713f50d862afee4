"""``experiment.report``: the paper-experiment pipelines' page from the one report writer.

tokenize → train → sample → report in process on the tiny CIFAR-10 fixture of
test_pipeline_experiment_stages, logging into a temp sqlite MLflow store; the page is parsed:
the train run's last logged loss (read back from the loss curve the stage wrote), the sample
grid's PNG byte for byte, DI Tab. S8's number for the schedule; two builds give the same bytes;
tracking disabled gives the writer's own page. The class-grid preview and the Tab. S8 notes are
checked on hand-made sample files.
"""

from __future__ import annotations

import base64
import csv
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import unmask.stages
from unmask.config import load_params
from unmask.data.fixtures import write_cifar10
from unmask.errors import ConfigError
from unmask.reporting.images import image_grid
from unmask.stages.experiment import report
from unmask.stages.experiment.params import ExperimentParams

REPO = Path(__file__).resolve().parents[2]
S8 = REPO / "pipelines" / "cifar10-s8" / "params.yaml"
IMAGENET = REPO / "pipelines" / "imagenet256-di" / "params.yaml"


class Page(HTMLParser):
    """Headings, table rows (cell texts) under the heading before them, image sources and the
    text of paragraphs by class."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.imgs: list[str] = []
        self.paras: dict[str, list[str]] = {}
        self._buf: list[str] | None = None
        self._what = ("", "")
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2", "h3", "td", "th", "p", "figcaption"):
            self._buf, self._what = [], (tag, str(dict(attrs).get("class") or ""))
        elif tag == "tr":
            self._row = []
        elif tag == "img":
            self.imgs.append(str(dict(attrs).get("src")))

    def handle_data(self, data: str) -> None:
        if self._buf is not None:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._buf is not None and tag == self._what[0]:
            text, self._buf = "".join(self._buf), None
            if tag in ("h1", "h2", "h3"):
                self.headings.append(text)
            elif tag in ("td", "th") and self._row is not None:
                self._row.append(text)
            else:
                self.paras.setdefault(self._what[1] or tag, []).append(text)
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self.headings[-1] if self.headings else "", []).append(self._row)
            self._row = None

    def kv(self, heading: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self.rows.get(heading, []) if len(r) == 2 and r[0] != "key"}


def _uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_tokenize_train_sample_report_in_process(tmp_path, monkeypatch, tiny):
    data = write_cifar10(tmp_path / "cifar", per_batch=4, test=4)
    monkeypatch.chdir(tmp_path)  # out/ is relative to the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = tmp_path / "mlruns"
    over = {**tiny, "data.root": str(data.parent), "tokenizer.size": 8, "sample.steps": 4,
            "sample.classes": [0, 3], "sample.n_per_class": 2, "schedules": ["cosine"],
            "tracking.enabled": True, "tracking.root": str(store)}
    p = load_params(S8, over, schema=ExperimentParams)
    threads = torch.get_num_threads()
    try:
        unmask.stages.run("experiment.tokenize", p)
        unmask.stages.run("experiment.train", p, schedule="cosine")
        unmask.stages.run("experiment.sample", p, schedule="cosine")
        res = unmask.stages.run("experiment.report", p)
    finally:
        torch.set_num_threads(threads)
    assert (store / "mlflow.db").is_file()  # the runs went to the temp store
    index = Path("out/report/index.html")
    assert res["index"] == str(index)
    page = Page(index.read_text())
    assert page.headings[0] == "Discrete Interpolants — CIFAR-10 (cifar10-s8)"
    assert "1 finished runs in experiment cifar10-s8" in page.paras["meta"][0]

    # the train run's final loss: the last row of the loss curve the train stage wrote
    with open("out/plots/train-cosine.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert int(last["step"]) == 3
    [heading] = [h for h in page.headings if h.startswith("cifar10-s8 · train-cosine ")]
    shown = page.kv(heading)
    assert float(shown["loss"]) == pytest.approx(float(last["loss"]), rel=5e-4)
    assert "tokens_per_s" not in shown  # wall clock stays in MLflow
    with open("out/report/metrics.csv", newline="") as f:
        rows = {(r["run"], r["stage"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}
    assert rows[("train-cosine", "train", "loss")] == pytest.approx(float(last["loss"]), rel=5e-4)

    # the sample grid, byte for byte, and the schedule's note: DI Tab. S8 "Cosine ✓ 41.75"
    grid = Path("out/samples/cosine/grid.png")
    assert page.imgs == [_uri(grid)]
    assert page.paras["figcaption"] == ["cosine: one row per class (0, 3), 2 samples each"]
    note = page.kv(page.headings[0])["schedule cosine"]
    assert note.startswith("DI Tab. S8 FID-5k 41.75 (Cosine, ETM)")
    # cfg_scale 1 (params.yaml): each step evaluates the conditional and the null branch
    assert "· here: 4 samples: mdm, 4 steps (NFE 8), CFG w = 1, checkpoint step 3" in note

    # a second build of the same runs: the same bytes
    first = {n: (Path("out/report") / n).read_bytes() for n in ("index.html", "metrics.csv")}
    unmask.stages.run("experiment.report", p)
    for name, data_ in first.items():
        assert (Path("out/report") / name).read_bytes() == data_, name

    # tracking disabled: the writer's page that says so, with the grid and the notes
    off = load_params(S8, {**over, "tracking.enabled": False}, schema=ExperimentParams)
    unmask.stages.run("experiment.report", off)
    page = Page(index.read_text())
    assert any("Tracking is disabled" in t for t in page.paras["no-runs tracking-disabled"])
    assert page.imgs == [_uri(grid)] and "schedule cosine" in page.kv(page.headings[0])
    assert Path("out/report/metrics.csv").read_text().splitlines() == [
        "experiment,run,stage,metric,value"]


def _samples(out: Path, run: str, classes: list[int], per_class: int, nfe: int) -> np.ndarray:
    """Hand-made sample-stage files of ``run``: grid.png, samples.npz, sample-<run>.json."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(classes) * per_class, 4, 4, 3), dtype=np.uint8)
    d = out / "samples" / run
    d.mkdir(parents=True)
    np.savez(d / "samples.npz", images=images, labels=np.repeat(classes, per_class))
    (d / "grid.png").write_bytes(b"\x89PNG stand-in")
    info = {"method": "euler", "steps": nfe, "nfe": nfe, "cfg_scale": 1.0,
            "n_samples": len(images), "checkpoint_step": 7}
    (out / "metrics").mkdir(exist_ok=True)
    (out / "metrics" / f"sample-{run}.json").write_text(json.dumps(info))
    return images


def test_a_wide_class_grid_shows_the_first_samples_of_each_class(tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    images = _samples(out, "wide", [5, 2], report.MAX_PER_CLASS + 3, 8)
    caption, path = report.figure(out, "wide", tmp_path)
    assert path != out / "samples" / "wide" / "grid.png"
    assert caption.startswith(f"wide: one row per class (5, 2), the first {report.MAX_PER_CLASS}"
                              f" of {report.MAX_PER_CLASS + 3} samples each")
    n = report.MAX_PER_CLASS + 3  # class 5 is rows 0..n-1 of the npz, class 2 rows n..2n-1
    want = np.stack([images[: report.MAX_PER_CLASS], images[n: n + report.MAX_PER_CLASS]])
    drawn = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(drawn, image_grid(want, ["5", "2"], scale=16))

    _samples(out, "narrow", [1], 3, 8)
    caption, path = report.figure(out, "narrow", tmp_path)
    assert path == out / "samples" / "narrow" / "grid.png"  # the sample stage's own file
    with pytest.raises(ConfigError, match=r"samples/missing/grid.png: no samples of run 'missing'"):
        report.figure(out, "missing", tmp_path)


@pytest.mark.parametrize(("overrides", "want"), [
    ({}, {"linear": "DI Tab. S8 FID-5k 20.05 (Linear, ETM)",  # "Linear ✓ 20.05"
          "cubic": "DI Tab. S8 FID-5k 33.46 (Cubic, ETM)",  # "Cubic ✓ 33.46"
          "arccos": "not in DI Tab. S8 (arccos, ETM): no paper FID-5k"}),
    ({"model.timestep": "implicit"},
     {"linear": "DI Tab. S8 FID-5k 20.67 (Linear, ITM)",  # "Linear X 20.67"
      "cosine": "not in DI Tab. S8 (cosine, ITM): no paper FID-5k"}),
    ({"train.keep_ratio": 0.25},
     {"linear": "no plain κ row of DI Tab. S8 (train.keep_ratio 0.25)"}),
])
def test_schedule_notes_cite_table_s8(tmp_path, overrides: dict[str, Any], want: dict[str, str]):
    out = tmp_path / "out"
    p = load_params(S8, {**overrides, "out": str(out), "schedules": list(want)},
                    schema=ExperimentParams)
    for r in want:
        _samples(out, r, [0], 1, 12)
    notes = report.notes(p, list(want))
    assert notes == {f"schedule {r}": f"{w} · here: 1 samples: euler, 12 steps (NFE 12), CFG "
                                      "w = 1, checkpoint step 7" for r, w in want.items()}


def test_titles_and_a_run_without_schedules(tmp_path):
    p = load_params(IMAGENET, {"out": str(tmp_path)}, schema=ExperimentParams)
    assert report.title(p) == "Discrete Interpolants — ImageNet 256×256 (di-546m)"
    assert report.notes(p, ["di-546m"]) == {
        "run di-546m": f"sampler settings not found ({tmp_path}/metrics/sample-di-546m.json)"}
    named = load_params(IMAGENET, {"report.title": "mine"}, schema=ExperimentParams)
    assert report.title(named) == "mine"


def test_the_cli_names_the_missing_samples(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as e:
            unmask.stages.main(["experiment.report", "--params", str(S8),
                                "--set", "tracking.enabled=false"])
    finally:
        torch.set_num_threads(threads)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: out/samples/linear/grid.png: no samples of run 'linear'; "
                   "run experiment.sample first")
