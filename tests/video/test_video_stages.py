"""The video stages on the one stage framework (``python -m unmask.stages video.<stage>``): the
three video pipelines' params load with :class:`~unmask.video.params.VideoParams`, and bad
params are one ``error:`` line naming the key before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from unmask import stages
from unmask.config import load_params

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("exp, kind, frames", [("video-default", "moving_fmnist", 8),
                                               ("faceforensics", "faceforensics", 16),
                                               ("dmlab", "dmlab", 16)])
def test_the_video_pipelines_params_load(exp, kind, frames):
    schema = stages.resolve("video.train").schema  # what the runner validates them with
    p = load_params(REPO / "pipelines" / exp / "params.yaml", schema=schema)
    assert p.data.kind == kind and p.data.frames == frames
    assert p.model["attention"] == "factorized" and p.tracking.experiment == exp.split("-")[0]


@pytest.mark.parametrize("exp, edit, message", [
    ("dmlab", {"data": {"root": None}}, "data.root: set it to the dmlab dataset folder"),
    ("faceforensics", {"data": {"root": None}},
     "data.root: set it to the faceforensics dataset folder"),
    ("video-default", {"model": {"attention": "sparse"}},
     "model.attention: Input should be 'full' or 'factorized'"),
    ("video-default", {"model": {"pos": "learned3d"}}, "model.pos: Input should be "),
    ("video-default", {"sample": {"method": "ancestral"}}, "sample.method must be one of "),
    ("video-default", {"evaluate": {"fvdd": True}},
     "unknown key 'evaluate.fvdd' (did you mean 'evaluate.fvd'?)"),
])
def test_bad_params_are_one_line_naming_the_key(tmp_path, monkeypatch, capsys, exp, edit,
                                                message):
    raw: dict[str, Any] = yaml.safe_load((REPO / "pipelines" / exp / "params.yaml").read_text())
    for section, values in {**edit, "tracking": {"enabled": False}}.items():
        raw[section] = {**raw[section], **values}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        # video.train: without the check it would get past the params and fail on tokens/
        stages.main(["video.train", "--params", str(params)])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {params}: {message}"), lines
    assert not (tmp_path / "models").exists()
