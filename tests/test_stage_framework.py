"""The one stage framework (:mod:`unmask.stages`): every dvc.yaml runs registered stages the
same way, options come from the stage function's signature, errors are one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from unmask import stages
from unmask.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DVC_FILES = [REPO / "dvc.yaml", *sorted(REPO.glob("pipelines/*/dvc.yaml"))]
_CMD = re.compile(r"python -m unmask\.stages ([\w.-]+)((?:\s+--[\w-]+\s+\S+)*)\s*$")


def _cmds(path: Path) -> list[tuple[str, str]]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for key, st in doc["stages"].items():
        body = st.get("do", st)
        out.append((key, str(body["cmd"]).strip()))
    return out


@pytest.mark.parametrize("dvcfile", DVC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_dvc_stage_runs_a_registered_stage(dvcfile):
    for key, cmd in _cmds(dvcfile):
        m = _CMD.fullmatch(cmd)
        assert m, f"{dvcfile.name}:{key}: cmd {cmd!r} is not `python -m unmask.stages NAME ...`"
        st = stages.resolve(m.group(1))
        given = set(re.findall(r"--([\w-]+)", m.group(2)))
        opts = {o.replace("_", "-"): d for o, (_, d) in st.options.items()}
        required = {o for o, d in opts.items() if d is stages._REQUIRED}
        assert required <= given <= set(opts), (key, cmd, st.options)


class _P(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 1


def test_options_come_from_the_signature_and_errors_are_one_line(tmp_path, monkeypatch, capsys):
    seen = {}

    @stages.stage("test-fw-echo", params=_P)
    def echo(p: _P, ell: int, tag: str = "x") -> dict:
        seen.update(n=p.n, ell=ell, tag=tag)
        return seen

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("n: 3\n")
    assert stages.main(["test-fw-echo", "--ell", "2", "--set", "n=4"]) == {
        "n": 4, "ell": 2, "tag": "x"}
    with pytest.raises(SystemExit):  # --ell has no default: required
        stages.main(["test-fw-echo"])
    with pytest.raises(SystemExit) as e:
        stages.main(["test-fw-echo", "--ell", "1", "--set", "m=1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "m" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="registered twice"):
        stages.stage("test-fw-echo", params=_P)(lambda p: None)
    stages.REGISTRY.pop("test-fw-echo")


def test_unknown_names_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown family 'nope'"):
        stages.module_of("nope.train")
    with pytest.raises(ConfigError, match="unknown stage 'no-such-stage'; valid: .*tokenizer"):
        stages.resolve("no-such-stage")
    with pytest.raises(ConfigError, match="unknown stage 'prime.trian'; valid: .*prime.train"):
        stages.resolve("prime.trian")


def test_routing_finds_a_stage_module_without_importing():
    assert stages.module_of("train-tokenizer") == "unmask.stages.train_tokenizer"
    for name in ("prime.train", "emigm.train-discrete", "joint.evaluate", "experiment.train"):
        mod = stages.module_of(name)
        assert mod.startswith(stages.FAMILIES[name.split(".")[0]]), (name, mod)
