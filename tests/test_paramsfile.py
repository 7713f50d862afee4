"""unmask.paramsfile: the params-file machinery is schema-free — a pipeline's own schema gets the
same one-line errors as the default pipeline's (tests/test_config.py covers those)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from unmask import paramsfile
from unmask.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Train(_Section):
    steps: int = Field(default=10, gt=0)
    learning_rate: float = 1e-3


class _Schema(_Section):
    train: _Train = _Train()
    name: str = "exp"


@pytest.fixture
def params(tmp_path: Path) -> Path:
    f = tmp_path / "params.yaml"
    f.write_text("train: {steps: 5}\nname: toy\n")
    return f


def test_load_merges_overrides_into_the_file(params: Path) -> None:
    p = paramsfile.load(params, ["train.learning_rate=0.5"], _Schema)
    assert isinstance(p, _Schema)
    assert (p.train.steps, p.train.learning_rate, p.name) == (5, 0.5, "toy")
    p = paramsfile.load(params, {"train": {"steps": 7}}, _Schema)
    assert p.train.steps == 7


def test_errors_name_the_file_or_the_override_and_the_key(params: Path) -> None:
    with pytest.raises(ConfigError) as e:
        paramsfile.load(params, ["train.learning_rat=0.5"], _Schema)
    assert str(e.value) == ("override: unknown key 'train.learning_rat' (did you mean "
                            "'train.learning_rate'?)")
    params.write_text("train: {steps: 0}\n")
    with pytest.raises(ConfigError) as e:
        paramsfile.load(params, None, _Schema)
    assert str(e.value) == f"{params}: train.steps must be > 0 (got 0)"
    params.write_text("train: {steps: [1\n")
    with pytest.raises(ConfigError, match=r"params.yaml: invalid YAML at line \d+"):
        paramsfile.load(params, None, _Schema)
    with pytest.raises(ConfigError, match="nope.yaml: params file not found"):
        paramsfile.load(params.with_name("nope.yaml"), None, _Schema)
    with pytest.raises(ConfigError, match="override 'train.steps': expected KEY=VALUE"):
        paramsfile.parse_overrides(["train.steps"])


def test_the_default_schema_wrapper_is_the_same_machinery(params: Path) -> None:
    """``unmask.config.load_params(schema=...)`` and ``paramsfile.load`` agree."""
    from unmask.config import load_params

    a = load_params(params, ["name=x"], schema=_Schema)
    assert a == paramsfile.load(params, ["name=x"], _Schema)
