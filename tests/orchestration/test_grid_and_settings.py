"""Ablation settings, grid expansion, keys, the CSV table, and the deployments file."""

from __future__ import annotations

import csv
import importlib.util
import inspect
from pathlib import Path

import pytest
import yaml

from unmask import schedules
from unmask.orchestration.ablation import dotted_overrides
from unmask.orchestration.grid import expand, grid_key, resolve_overrides, write_csv
from unmask.orchestration.settings import SettingsError, load_settings
from unmask.orchestration.stack import pool_name

REPO = Path(__file__).resolve().parents[2]
SETTINGS = REPO / "flows/ablations.yaml"
PREFECT_YAML = REPO / "flows/prefect.yaml"
REQUIRED_AXES = {"nfe", "temperature", "cfg", "schedule", "t_min", "sampler", "weighting",
                 "top_p", "cfg_interval"}


def test_repo_settings_cover_the_required_axes():
    s = load_settings(SETTINGS)
    assert set(s.axes) >= REQUIRED_AXES
    kinds = {a: s.axes[a].kind for a in s.axes}
    assert {a for a, k in kinds.items() if k == "training"} == {"schedule", "weighting", "t_min"}
    assert s.axes["nfe"].grid["sample.steps"][0] == 4 and s.axes["nfe"].grid["sample.steps"][-1] \
        == 1024
    assert set(s.axes["schedule"].grid["train.schedule"]) == set(schedules.NAMES)
    assert set(s.axes["cfg"].grid["sample.cfg_schedule"]) == {"constant", "linear", "interval"}


def test_settings_errors_name_the_key(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump({"axes": {}, "eval": {"n_per_clas": 3}}))
    with pytest.raises(SettingsError, match=r"s\.yaml: unknown key 'eval\.n_per_clas' \(did you "
                                            r"mean 'eval\.n_per_class'\?\)"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="unknown ablation axis 'nfee'.*nfe"):
        load_settings(SETTINGS).axis("nfee")
    with pytest.raises(SettingsError, match="missing.yaml: ablation settings file not found"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(SettingsError, match=r"^override: ray\.num_workers must be > 0 \(got 0\)"):
        load_settings(SETTINGS, {"ray": {"num_workers": 0}})


def test_expand_product_values_and_grid_override():
    s = load_settings(SETTINGS)
    cfg = expand(s.axes["cfg"])
    assert len(cfg) == 6 * 3 and [p.index for p in cfg] == list(range(18))
    assert cfg[1].values == {"sample.cfg_scale": 0.0, "sample.cfg_schedule": "linear"}
    assert cfg[1].label == "cfg_scale=0,cfg_schedule=linear"
    nfe = expand(s.axes["nfe"], values=[8, 2])
    assert [p.values for p in nfe] == [{"sample.steps": 8}, {"sample.steps": 2}]
    one = expand(s.axes["cfg"], values=[2.0])  # replaces the first key's values only
    assert len(one) == 3 and {p.values["sample.cfg_scale"] for p in one} == {2.0}
    g = expand(s.axes["cfg"], values=[9], grid={"sample.cfg_scale": [1, 2]})
    assert [p.values for p in g] == [{"sample.cfg_scale": 1}, {"sample.cfg_scale": 2}]
    with pytest.raises(ValueError, match="empty grid"):
        expand(s.axes["nfe"], values=[])


def test_emigm_t_min_maps_to_this_time_convention():
    assert resolve_overrides({"emigm.t_min": 0.2}) == {"train.t_min": 0.0,
                                                       "train.t_max": pytest.approx(0.8)}
    assert resolve_overrides({"sample.steps": 4}) == {"sample.steps": 4}


def test_grid_key_is_canonical():
    a = grid_key({"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}})
    assert a == grid_key({"z": {"a": 2, "b": 1}, "y": [1, 2], "x": 1})
    assert a != grid_key({"x": 1, "y": [2, 1], "z": {"b": 1, "a": 2}})
    assert len(a) == 20


def test_dotted_overrides():
    assert dotted_overrides(["train.steps=50", "sample.cfg_interval=[0.1, 0.9]"]) == {
        "train.steps": 50, "sample.cfg_interval": [0.1, 0.9]}
    assert dotted_overrides({"a.b": 1}) == {"a.b": 1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        dotted_overrides(["train.steps"])


def test_write_csv(tmp_path):
    path = write_csv(tmp_path / "t" / "g.csv",
                     [{"index": 1, "point": "a", "fid": 2.5, "iv": [0.0, 0.5]},
                      {"index": 0, "point": "b", "error": "boom", "fid": float("nan")}],
                     first=["point"])
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert list(rows[0]) == ["point", "index", "fid", "iv", "error"]
    assert rows[0]["iv"] == "[0,0.5]" and rows[1]["fid"] == "" and rows[1]["error"] == "boom"


def _flow(entrypoint: str):
    file, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"flows_{Path(file).stem}", REPO / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_deployments_file():
    doc = yaml.safe_load(PREFECT_YAML.read_text())
    deps = {(d["entrypoint"].split(":")[1], d["name"]): d for d in doc["deployments"]}
    assert pool_name(PREFECT_YAML) == "unmask"
    ablation_names = {n for f, n in deps if f == "ablations"}
    assert ablation_names == set(load_settings(SETTINGS).axes) >= REQUIRED_AXES
    for (flow_name, name), d in deps.items():
        fl = _flow(d["entrypoint"])
        assert fl.name == flow_name
        accepted = set(inspect.signature(fl.fn).parameters)
        assert set(d.get("parameters") or {}) <= accepted, name
        if flow_name == "ablations":
            assert d["parameters"]["axis"] == name


def test_a_train_deployment_per_pipeline_experiment():
    doc = yaml.safe_load(PREFECT_YAML.read_text())
    trained = {d["parameters"]["experiment"] for d in doc["deployments"]
               if d["entrypoint"].endswith(":train")}
    experiments = {"default"} | {p.parent.name for p in (REPO / "pipelines").glob("*/params.yaml")}
    assert experiments <= trained, f"add train deployments for {experiments - trained}"
