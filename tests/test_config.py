"""params.yaml → one typed Params object; every error is one line naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from unmask.config import ConfigError, Params, load_params, parse_overrides

REPO = Path(__file__).resolve().parents[1]
MINIMAL = "tokenizer: {levels: 4, size: 14}\nmodel: {dim: 64, depth: 2, heads: 4}\n"


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(MINIMAL)
    return path


def _error(path, overrides=None) -> str:
    with pytest.raises(ConfigError) as e:
        load_params(path, overrides)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_repo_params_load():
    p = load_params(REPO / "params.yaml")
    assert isinstance(p, Params)
    assert p.model.vocab_size == p.tokenizer.vocab_size and p.model.num_classes == 10
    assert p.model.grid == p.tokenizer.grid((28, 28))
    assert p.tracking.experiment == "default"


def test_derived_model_shape(params_file):
    p = load_params(params_file)
    assert (p.model.vocab_size, p.model.grid, p.model.num_classes) == (4, (14, 14), 10)
    msg = _error(params_file, {"model.vocab_size": 8})
    assert "model.vocab_size = 8 disagrees" in msg


def test_unknown_key_suggests(params_file):
    msg = _error(params_file, ["train.lr_rate=1e-3"])
    assert msg == "override: unknown key 'train.lr_rate' (did you mean 'train.lr'?)"
    params_file.write_text(MINIMAL + "sample: {temprature: 0.5}\n")
    assert _error(params_file) == (
        f"{params_file}: unknown key 'sample.temprature' (did you mean 'sample.temperature'?)"
    )
    params_file.write_text(MINIMAL + "sampling: {}\n")
    assert "unknown key 'sampling' (did you mean 'sample'?)" in _error(params_file)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sample.temperature=-1", "sample.temperature must be > 0 (got -1)"),
        ("sample.steps=0", "sample.steps must be > 0 (got 0)"),
        ("sample.top_p=1.5", "sample.top_p must be <= 1 (got 1.5)"),
        ("sample.top_p=0", "sample.top_p must be > 0 (got 0)"),
        ("sample.method=eulr", "unknown sampling method 'eulr'; valid: euler, mdm, maskgit"),
        ("sample.schedule=cosin", "unknown schedule 'cosin'; valid: linear"),
        ("train.schedule=cosin", "unknown schedule 'cosin'"),
        ("sample.cfg_schedule=foo", "sample.cfg_schedule must be one of"),
        ("sample.cfg_interval=[0.8,0.2]", "sample.cfg_interval: must satisfy 0 <= lo <= hi <= 1"),
        ("train.steps=abc", "train.steps: input should be a valid integer"),
        ("data.n_train=60000", "n_train + n_val = 61000 exceeds"),
        ("tokenizer.levels=1", "tokenizer.levels must be >= 2 (got 1)"),
    ],
)
def test_range_errors(params_file, override, expected):
    assert expected in _error(params_file, [override])


def test_t_min_below_t_max(params_file):
    msg = _error(params_file, {"train.t_min": 0.9, "train.t_max": 0.1})
    assert "t_min" in msg and "t_max" in msg


def test_file_errors(tmp_path):
    assert _error(tmp_path / "nope.yaml").endswith("nope.yaml: params file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {dim: 3\n")
    assert "bad.yaml: invalid YAML" in _error(bad)
    bad.write_text("- 1\n- 2\n")
    assert "expected a mapping" in _error(bad)


def test_overrides(params_file):
    p = load_params(params_file, ["train.steps=7", "sample.cfg_interval=[0.2, 0.9]"])
    assert p.train.steps == 7 and p.sample.cfg_interval == (0.2, 0.9)
    p = load_params(params_file, {"sample": {"method": "maskgit"}, "model.depth": 3})
    assert p.sample.method == "maskgit" and p.model.depth == 3 and p.model.dim == 64
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["train.steps"])
