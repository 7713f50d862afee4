"""write_pipeline_report: one pipeline's page from the runs of its MLflow experiment.

One temp sqlite store (nothing started) holds, per pipeline kind, runs logged the way that
family's stages log them (names, tags, metrics, artifacts): joint image+mask (``unmask.task
=joint_seg``), video (an evaluate stage run twice), MDM-Prime ℓ runs (+ the summary run's
verdict and text samples), eMIGM (``unmask.stage`` tags, discrete/continuous metrics) and a DI
experiment pipeline (an unavailable CLIP score logged as params). Each page is parsed: every
logged metric is on it under its run with the logged value, wall-clock metrics are not, images
are the logged PNGs' bytes, and two builds write the same bytes.
"""

from __future__ import annotations

import base64
import csv
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from unmask.config import TrackingConfig
from unmask.reporting import write_pipeline_report
from unmask.tracking import make_tracker
from unmask.tracking_tags import PAPER, PAPER_EMIGM, STAGE, prime_l_tags

# ----------------------------------------------------------------------------------------------
# the runs: (run name, tags, params, metrics, artifacts {artifact dir or "": file name})
# metric values have ≤ 4 significant digits, so the page's 4-digit numbers equal them exactly

WALL = {"train_seconds", "sample_seconds", "nelbo_seconds", "tokens_per_s",
        "discrete.seconds_per_image"}
JOINT = {"unmask.task": "joint_seg"}
VIDEO = {"unmask.task": "video"}
VERDICT = "ℓ=2 PPL 25.00 is better than ℓ=1 PPL 30.00 — MDM-Prime claims ℓ > 1 is better."
UNAVAILABLE_FID = "FID Inception weights absent (no file at weights/fid.pt)"
UNAVAILABLE_CLIP = "no CLIP checkpoint at weights/clip.pt"
TEXT = "===== sample 0 =====\nthe cat sat on the mat\n\n===== sample 1 =====\nhello\n"

KINDS: dict[str, list[dict[str, Any]]] = {
    "seg-default": [
        dict(name="tokenize", tags={**JOINT, "stage": "tokenize"},
             metrics={"psnr": 21.37, "codebook_usage": 0.8125}),
        dict(name="train", tags={**JOINT, "stage": "train"},
             metrics={"final_loss": 3.125, "num_params": 12345.0, "train_seconds": 17.25}),
        dict(name="evaluate",
             tags={**JOINT, "stage": "evaluate", "unavailable.fid_mask_to_image": UNAVAILABLE_FID},
             metrics={"miou_image_to_mask": 0.4123, "miou_foreground": 0.7781, "iou.shirt": 0.5},
             pngs={"samples": "joint.png"}),
    ],
    "video-default": [
        dict(name="train", tags={**VIDEO, "stage": "train"},
             metrics={"final_loss": 4.25, "tokens_per_s": 812.5}),
        # the evaluate stage run twice: the page shows the newer run only
        dict(name="evaluate", tags={**VIDEO, "stage": "evaluate"},
             metrics={"fid_frame": 99.0}, stale=True),
        dict(name="evaluate", tags={**VIDEO, "stage": "evaluate"},
             metrics={"fid_frame": 55.5, "sample_seconds": 3.5},
             pngs={"samples": "uncond.png"}),
    ],
    "text-default": [
        *[dict(name=f"train-l{ell}", tags={"stage": "train", "ell": ell, **prime_l_tags("train")},
               params={"prime.l": ell, "ell": ell},
               metrics={"final_loss_per_token": loss, "train_seconds": 40.0 + ell})
          for ell, loss in ((1, 3.5), (2, 3.25))],
        *[dict(name=f"evaluate-l{ell}",
               tags={"stage": "evaluate", "ell": ell, **prime_l_tags("evaluate")},
               params={"prime.l": ell, "ell": ell},
               metrics={"ppl": ppl, "isr": isr, "nelbo_nats_per_token": nelbo,
                        "sample_seconds": 2.5, "nelbo_seconds": 1.25},
               texts={f"l{ell}": "samples.txt"})
          for ell, ppl, isr, nelbo in ((1, 30.0, 0.125, 3.401), (2, 25.0, 0.0625, 3.219))],
        dict(name="report", tags={"stage": "report", **prime_l_tags("summary"), "verdict": VERDICT},
             metrics={"perplexity_l1": 30.0, "perplexity_l2": 25.0}),
    ],
    "emigm-default": [
        dict(name="train-discrete", tags={PAPER: PAPER_EMIGM, STAGE: "train"},
             metrics={"train_seconds": 30.5, "encoder_tokens_per_sample": 12.0}),
        dict(name="evaluate", tags={PAPER: PAPER_EMIGM, STAGE: "evaluate"},
             metrics={"discrete.fid": 45.62, "continuous.fid": 38.21, "discrete.nfe": 16.0,
                      "discrete.seconds_per_image": 0.125},
             pngs={"": "discrete.png"}),
    ],
    "imagenet256-di": [
        dict(name="train-base", tags={"stage": "train", "git_commit": "0123456789abcdef"},
             metrics={"loss": 5.5}),
        dict(name="evaluate-base", tags={"stage": "evaluate", "git_commit": "0123456789abcdef"},
             params={"fid.num_samples": 100, "clip_score.available": "False",
                     "clip_score.unavailable_reason": UNAVAILABLE_CLIP},
             metrics={"fid": 77.75}),
    ],
}


def _png(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrackingConfig, dict[str, Path]]:
    """The store (a ``tracking`` section) and the logged PNG files, by 'experiment/run/name'."""
    root = tmp_path_factory.mktemp("pipeline-store")
    files: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        cfg = TrackingConfig(enabled=True, root=str(root / "mlruns"))
        tracker = make_tracker(cfg)
        for seed, (exp, runs) in enumerate(KINDS.items()):
            for i, r in enumerate(runs):
                local = root / "files" / exp / str(i)
                local.mkdir(parents=True)
                with tracker.start_run(exp, r["name"], params=r.get("params"), tags=r["tags"]):
                    tracker.log_metrics(r["metrics"], step=0)
                    for folder, name in r.get("pngs", {}).items():
                        files[f"{exp}/{r['name']}/{name}"] = _png(local / name, 100 * seed + i)
                        tracker.log_artifact(files[f"{exp}/{r['name']}/{name}"], folder or None)
                    for folder, name in r.get("texts", {}).items():
                        (local / folder).mkdir()
                        (local / folder / name).write_text(TEXT)
                        tracker.log_artifact(local / folder, folder)
                    # a page of the old writer among the artifacts: not an image, not shown
                    (local / "index.html").write_text("<html>old page</html>")
                    tracker.log_artifact(local / "index.html")
                time.sleep(0.01)  # distinct start times: "newest run" is well defined
    return cfg, files


class Page(HTMLParser):
    """Headings, tables (rows of cell texts, under the heading before them), images, <pre>s,
    and paragraphs by class."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.imgs: list[str] = []
        self.pres: list[str] = []
        self.paras: dict[str, list[str]] = {}
        self.ids: set[str] = set()
        self._buf: list[str] | None = None
        self._what: tuple[str, str] | None = None
        self._row: list[str] | None = None
        self._table: list[list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag in ("h1", "h2", "h3", "td", "th", "pre", "p"):
            self._buf, self._what = [], (tag, str(a.get("class") or ""))
        elif tag == "table":
            self._table = []
            self.tables.setdefault(self.headings[-1] if self.headings else "", []).append(
                self._table)
        elif tag == "tr":
            self._row = []
        elif tag == "img":
            self.imgs.append(str(a.get("src")))

    def handle_data(self, data: str) -> None:
        if self._buf is not None:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._what is not None and tag == self._what[0] and self._buf is not None:
            text, (kind, cls) = "".join(self._buf), self._what
            if kind in ("h1", "h2", "h3"):
                self.headings.append(text)
            elif kind in ("td", "th") and self._row is not None:
                self._row.append(text)
            elif kind == "pre":
                self.pres.append(text)
            elif kind == "p":
                self.paras.setdefault(cls, []).append(text)
            self._buf = self._what = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self._table.append(self._row)
            self._row = None

    def run_heading(self, exp: str, run: str) -> str:
        found = [h for h in self.headings if h.startswith(f"{exp} · {run} ")]
        assert len(found) == 1, (run, self.headings)
        return found[0]

    def kv(self, heading: str) -> dict[str, str]:
        """The first table under ``heading`` (a run's metrics; FID settings come after)."""
        tables = self.tables.get(heading, [])
        rows = tables[0] if tables else [["key", "value"]]
        assert rows[0] == ["key", "value"]
        return dict((k, v) for k, v in rows[1:])


def _build(cfg: TrackingConfig, exp: str, out: Path) -> Page:
    path = write_pipeline_report(out, title=f"{exp} report", tracking=cfg, experiment=exp)
    assert path == out / "index.html"
    return Page(path.read_text())


def _shown(exp: str) -> dict[str, dict[str, float]]:
    """run name → the metrics the page must show: the newest run of each name, no wall clock."""
    newest = {r["name"]: r for r in KINDS[exp]}
    return {n: {k: v for k, v in r["metrics"].items() if k not in WALL}
            for n, r in newest.items()}


@pytest.mark.parametrize("exp", list(KINDS))
def test_page_shows_every_logged_metric_of_each_run(store, tmp_path, exp):
    cfg, files = store
    page = _build(cfg, exp, tmp_path / "a")
    for run, metrics in _shown(exp).items():
        shown = page.kv(page.run_heading(exp, run))
        assert shown.keys() == metrics.keys(), run
        for k, v in metrics.items():
            assert float(shown[k]) == v, (run, k)
    # images: the logged PNGs, inlined byte for byte; the old writer's page is not an image
    want = {f"data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"
            for key, p in files.items() if key.startswith(f"{exp}/")}
    assert want <= set(page.imgs) and len(page.imgs) == len(want)
    # metrics.csv: exactly the numbers on the page
    with open(tmp_path / "a" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["run"], r["metric"]): float(r["value"]) for r in rows} == {
        (run, k): v for run, m in _shown(exp).items() for k, v in m.items()}
    assert {r["experiment"] for r in rows} == {exp}


@pytest.mark.parametrize("exp", list(KINDS))
def test_two_builds_write_the_same_bytes(store, tmp_path, exp):
    cfg, _ = store
    for d in ("a", "b"):
        write_pipeline_report(tmp_path / d, title="t", tracking=cfg, experiment=exp)
    for name in ("index.html", "metrics.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_joint_page_names_the_task_and_why_fid_is_missing(store, tmp_path):
    page = _build(store[0], "seg-default", tmp_path)
    assert "task joint_seg" in page.paras["meta"][0]
    assert page.paras["meta unavailable"] == [
        f"Not computed — fid_mask_to_image: {UNAVAILABLE_FID}"]
    assert "fid_mask_to_image" not in page.kv(page.run_heading("seg-default", "evaluate"))
    # no ablation runs: no plots, no claims, no plotly.js
    assert not any(i.startswith("ablation-") for i in page.ids) and "fidelity" not in page.ids
    assert "Plotly" not in (tmp_path / "index.html").read_text()


def test_video_page_shows_the_newest_evaluate_run_only(store, tmp_path):
    page = _build(store[0], "video-default", tmp_path)
    assert sum(h.startswith("video-default · evaluate ") for h in page.headings) == 1
    assert page.kv(page.run_heading("video-default", "evaluate")) == {"fid_frame": "55.5"}
    assert "task video" in page.paras["meta"][0]


def test_prime_page_plots_l_and_shows_verdict_and_text_samples(store, tmp_path):
    page = _build(store[0], "text-default", tmp_path)
    assert "ablation-prime_l" in page.ids  # the ℓ plot
    [table] = page.tables["ELBO perplexity vs sub-token count ℓ (MDM-Prime; our sub-token ELBO, "
                          "not eq. 5)"]
    head, *rows = table
    ppl = {float(r[head.index("x")]): float(r[head.index("value")]) for r in rows}
    assert ppl == {1.0: 30.0, 2.0: 25.0}
    # the claims table holds the ℓ claim only (no other ablation has runs here)
    [claims] = page.tables["Fidelity to the papers"]
    assert {r[claims[0].index("ablation")] for r in claims[1:]} == {"prime_l"}
    assert page.paras["verdict"] == [f"Verdict: {VERDICT}"]
    assert page.pres.count(TEXT) == 2  # evaluate-l1, evaluate-l2
    assert "paper mdm-prime" in page.paras["meta"][0]


def test_emigm_page_reads_unmask_stage_tags(store, tmp_path):
    page = _build(store[0], "emigm-default", tmp_path)
    shown = page.kv(page.run_heading("emigm-default", "evaluate"))
    assert float(shown["discrete.fid"]) == 45.62 and float(shown["continuous.fid"]) == 38.21
    assert "paper emigm" in page.paras["meta"][0]


def test_experiment_page_shows_params_logged_unavailable_metrics(store, tmp_path):
    page = _build(store[0], "imagenet256-di", tmp_path)
    assert page.paras["meta unavailable"] == [f"Not computed — clip_score: {UNAVAILABLE_CLIP}"]
    assert "0123456789ab" in page.paras["meta"][0]  # the commit the runs were made from


def test_disabled_tracking_writes_a_page_that_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrackingConfig(enabled=False)
    page = _build(cfg, "seg-default", tmp_path / "report")
    assert any("Tracking is disabled" in p for p in page.paras["no-runs tracking-disabled"])
    assert not page.tables and not page.imgs  # no numbers
    assert (tmp_path / "report" / "metrics.csv").read_text().splitlines() == [
        "experiment,run,stage,metric,value"]
    assert not (tmp_path / "mlruns").exists()  # no store was created


def test_experiment_without_runs_is_an_empty_page(store, tmp_path):
    page = _build(store[0], "not-run-yet", tmp_path)
    assert page.paras["meta"][0].startswith("0 finished runs in experiment not-run-yet")
    assert "pipeline" not in page.ids


def test_stage_figures_on_top_are_not_repeated_under_their_run(store, tmp_path):
    cfg, files = store
    png = files["emigm-default/evaluate/discrete.png"]
    other = _png(tmp_path / "local.png", 999)  # a figure the run did not log
    path = write_pipeline_report(tmp_path / "r", title="t", tracking=cfg,
                                 experiment="emigm-default",
                                 figures={"discrete samples": png, "local": other},
                                 notes={"FID": "100 samples"})
    page = Page(path.read_text())
    data = {p: f"data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"
            for p in (png, other)}
    assert page.imgs == [data[png], data[other]]  # on top only, in the order given
    assert page.kv("t")["FID"] == "100 samples"  # notes: under the title


def test_a_server_that_does_not_answer_is_one_clear_error(tmp_path, monkeypatch):
    import socket

    from unmask.tracking import TrackingUnavailableError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingUnavailableError, match=f"127.0.0.1:{port} does not answer"):
        write_pipeline_report(tmp_path, title="t", tracking=TrackingConfig(), experiment="x")
    assert not (tmp_path / "index.html").exists()
