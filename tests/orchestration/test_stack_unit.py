"""Stack pieces that need no server: the Prefect profile switch and its undo, state files."""

from __future__ import annotations

import toml

from unmask.orchestration import stack
from unmask.orchestration.procs import ProcInfo


def test_profile_is_activated_and_restored(tmp_path):
    env = {"PREFECT_HOME": str(tmp_path)}
    path = tmp_path / "profiles.toml"
    path.write_text(toml.dumps({"active": "mine", "profiles": {"mine": {"PREFECT_API_URL": "x"}}}))
    saved = stack._activate_profile("http://127.0.0.1:1234/api", env)
    doc = toml.loads(path.read_text())
    assert doc["active"] == stack.PROFILE
    assert doc["profiles"][stack.PROFILE] == {"PREFECT_API_URL": "http://127.0.0.1:1234/api"}
    stack._restore_profile(saved)
    assert toml.loads(path.read_text()) == {"active": "mine",
                                            "profiles": {"mine": {"PREFECT_API_URL": "x"}}}


def test_profile_without_previous_file(tmp_path):
    env = {"PREFECT_PROFILES_PATH": str(tmp_path / "p.toml")}
    saved = stack._activate_profile("http://h/api", env)
    assert saved["previous"] is None
    stack._restore_profile(saved)
    doc = toml.loads((tmp_path / "p.toml").read_text())
    assert "active" not in doc and stack.PROFILE not in doc.get("profiles", {})


def test_state_roundtrip_and_down_without_stack(tmp_path):
    info = ProcInfo("mlflow", 999999, 999999, 1.0, str(tmp_path / "l"), ["x"])
    st = stack.StackState(tmp_path, {"mlflow": info}, "http://a", "http://b", "unmask",
                          stack_id="s1")
    st.save()
    back = stack.load_state(tmp_path)
    assert back.services["mlflow"] == info and back.client_env == {
        "PREFECT_API_URL": "http://a/api", "MLFLOW_TRACKING_URI": "http://b"}
    assert stack.status(tmp_path)["mlflow"]["running"] is False
    assert stack.down(tmp_path, echo=lambda _: None) == []  # nothing alive to stop
    assert stack.load_state(tmp_path) is None
    assert stack.down(tmp_path, echo=lambda _: None) == []
