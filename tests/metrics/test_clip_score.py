"""CLIP score: unavailable, with the reason, when open_clip or the checkpoint is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from unmask.metrics import as_mlflow_metrics, as_mlflow_params
from unmask.metrics import clip_score as clip_module
from unmask.metrics.clip_score import clip_score

IMAGES = np.zeros((2, 8, 8, 3), np.uint8)
TEXTS = ["a dress", "a sneaker"]


def test_unavailable_without_open_clip_or_checkpoint(tmp_path: Path) -> None:
    res = clip_score(IMAGES, TEXTS, tmp_path / "ViT-B-32.pt")
    assert not res.available and res.value is None and res.name == "clip_score"
    if importlib.util.find_spec("open_clip") is None:
        assert "open_clip" in res.reason
    else:
        assert "not found" in res.reason
    assert as_mlflow_metrics(res) == {}
    assert as_mlflow_params(res)["clip_score.num_samples"] == "2"


def test_missing_checkpoint_reason_when_open_clip_is_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(clip_module.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "open_clip" else real(name, *a))
    res = clip_score(IMAGES, TEXTS, tmp_path / "missing.bin")
    assert not res.available and "missing.bin" in res.reason
    res = clip_score(IMAGES, TEXTS, None)
    assert not res.available and "no CLIP checkpoint" in res.reason


def test_images_and_texts_must_pair() -> None:
    with pytest.raises(ValueError):
        clip_score(IMAGES, ["only one"], None)
