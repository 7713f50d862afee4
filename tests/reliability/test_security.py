"""Security: every load of a checkpoint or cached tensor file is ``torch.load(weights_only=True)``
and refuses a pickle that carries code; archive extraction refuses absolute paths, ``..`` and
links leaving the target; every server the project starts binds 127.0.0.1 unless told
otherwise; training and tracking make no network request beyond the configured services."""

from __future__ import annotations

import ast
import io
import socket
import tarfile
from pathlib import Path

import pytest
import torch

from unmask.data.archive import UnsafeArchiveError, safe_extract
from unmask.orchestration.stack import StackConfig, server_commands
from unmask.training import CorruptCheckpointError, load_checkpoint, read_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src" / "unmask"


class Evil:
    """Unpickling this creates the file ``target`` (a stand-in for arbitrary code)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _malicious(path: Path, target: Path, **extra) -> Path:
    torch.save({"format": "unmask-ckpt-v1", "step": 1, "payload": Evil(target), **extra}, path)
    return path


# -- unpickling ---------------------------------------------------------------------------------


def _calls(tree: ast.AST, attr: str, owner: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == attr
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == owner
    ]


def test_every_torch_load_in_src_is_weights_only():
    loads, offenders = 0, []
    for f in sorted(SRC.rglob("*.py")):
        tree = ast.parse(f.read_text())
        for call in _calls(tree, "load", "torch"):
            loads += 1
            kw = {k.arg: k.value for k in call.keywords}
            ok = (
                isinstance(kw.get("weights_only"), ast.Constant)
                and kw["weights_only"].value is True
            )
            if not ok:
                offenders.append(f"{f.relative_to(SRC)}:{call.lineno}")
        for owner in ("pickle", "cPickle", "dill", "joblib"):
            for attr in ("load", "loads"):
                offenders += [
                    f"{f.relative_to(SRC)}:{c.lineno} {owner}.{attr}"
                    for c in _calls(tree, attr, owner)
                ]
        for call in _calls(tree, "load", "np"):
            kw = {k.arg: k.value for k in call.keywords}
            if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value:
                offenders.append(f"{f.relative_to(SRC)}:{call.lineno} np.load(allow_pickle)")
    assert loads >= 4  # the checker sees the real call sites
    assert offenders == []


def test_a_pickle_with_code_is_refused_by_checkpoint_loading(tmp_path):
    target = tmp_path / "pwned"
    path = _malicious(tmp_path / "ckpt-00000001.pt", target)
    with pytest.raises(CorruptCheckpointError, match="ckpt-00000001.pt cannot be read"):
        read_checkpoint(path)
    with (
        pytest.raises(FileNotFoundError, match="no valid checkpoint"),
        pytest.warns(UserWarning, match="ckpt-00000001.pt cannot be read"),
    ):
        load_checkpoint(tmp_path)
    assert not target.exists()
    # The same payload through plain pickle does run: the test's payload is real.
    torch.load(io.BytesIO(path.read_bytes()), weights_only=False)
    assert target.exists()


def test_a_pickle_with_code_is_refused_by_cached_features_and_tokenizers(tmp_path):
    from unmask.metrics import fidelity
    from unmask.tokenizers.vq import VQTokenizer

    target = tmp_path / "pwned"
    cache = fidelity._cache_file(tmp_path, "ref")
    cache.parent.mkdir(parents=True)
    _malicious(cache, target)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        fidelity.cached_features("ref", tmp_path)
    with pytest.raises(ValueError, match="unreadable VQ-VAE checkpoint"):
        VQTokenizer.load(_malicious(tmp_path / "tok.pt", target))
    assert not target.exists()


# -- archives -----------------------------------------------------------------------------------


def _tar(path: Path, members: list[tuple[str, str, str | None]]) -> Path:
    """members: (name, kind 'file'|'sym'|'hard'|'dir'|'fifo', data or link target)."""
    with tarfile.open(path, "w") as tar:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = (arg or "x").encode()
                info.size = len(data)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path


@pytest.mark.parametrize(
    "members, needle",
    [
        ([("ok.txt", "file", "a"), ("/tmp/abs-escape.txt", "file", "x")], "absolute or '..'"),
        ([("../escape.txt", "file", "x")], "absolute or '..'"),
        ([("a/../../escape.txt", "file", "x")], "absolute or '..'"),
        ([("link", "sym", "/etc")], "outside the extraction folder"),
        ([("d/link", "sym", "../../outside")], "outside the extraction folder"),
        ([("hard", "hard", "../outside")], "outside the extraction folder"),
        ([("inner", "sym", "."), ("inner/x.txt", "file", "x")], "below the link"),
        ([("fifo", "fifo", None)], "device file or FIFO"),
    ],
)
def test_safe_extract_refuses_escaping_members(tmp_path, members, needle):
    archive = _tar(tmp_path / "evil.tar", members)
    dest = tmp_path / "root" / "out"
    with pytest.raises(UnsafeArchiveError, match=needle) as e:
        safe_extract(archive, dest)
    assert "evil.tar" in str(e.value)
    assert not dest.exists() and not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "root" / "escape.txt").exists()


def test_safe_extract_extracts_a_benign_archive(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar",
        [
            ("d", "dir", None),
            ("d/a.txt", "file", "hello"),
            ("d/link", "sym", "a.txt"),
            ("b.txt", "file", "b"),
        ],
    )
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "d" / "a.txt").read_text() == "hello"
    assert (dest / "d" / "link").read_text() == "hello"
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt", "d"]
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 40)
    with pytest.raises(ValueError, match="bad.tar cannot be read"):
        safe_extract(tmp_path / "bad.tar", tmp_path / "out")
    assert (dest / "b.txt").read_text() == "b"  # the old folder survives a failed extraction


# -- servers ------------------------------------------------------------------------------------


def _host(argv: list[str]) -> str:
    return argv[argv.index("--host") + 1]


def test_servers_bind_localhost_unless_told_otherwise(tmp_path):
    cmds = server_commands(StackConfig(state_dir=tmp_path), tmp_path, 4200, 5000)
    assert set(cmds) == {"prefect", "mlflow"}
    assert {_host(c) for c in cmds.values()} == {"127.0.0.1"}
    assert cmds["prefect"][1:3] == ["server", "start"] and cmds["mlflow"][1] == "server"
    wide = server_commands(StackConfig(state_dir=tmp_path, host="0.0.0.0"), tmp_path, 1, 2)
    assert {_host(c) for c in wide.values()} == {"0.0.0.0"}


def test_ray_dashboard_binds_localhost(monkeypatch):
    import ray

    from unmask.orchestration.env import ray_init

    seen: dict = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_init(num_cpus=1)
    assert seen["include_dashboard"] is False and seen["dashboard_host"] == "127.0.0.1"
    seen.clear()
    ray_init(num_cpus=1, include_dashboard=True)
    assert seen["include_dashboard"] is True and seen["dashboard_host"] == "127.0.0.1"


@pytest.mark.slow  # the sqlite store migrations take ~20 s
def test_training_and_tracking_make_no_outside_connections(tmp_path, monkeypatch):
    from unmask.models import ModelConfig, Transformer
    from unmask.tracking import Tracker
    from unmask.training import TrainConfig, train

    attempts: list = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1") and not isinstance(address, str):
            attempts.append(address)
            raise OSError(f"test: outside connection to {address} refused")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=4, seq_len=4, dim=16, depth=1, heads=2))
    tokens = torch.randint(0, 4, (16, 4))
    cfg = TrainConfig(steps=3, batch_size=8, log_every=1, ckpt_every=3, device="cpu")
    with Tracker(root=tmp_path / "mlruns").start_run("net", "t") as tr:
        train(model, tokens, None, cfg, tmp_path / "run", tracker=tr, progress=False)
    load_checkpoint(tmp_path / "run" / "checkpoints")
    assert attempts == []


def test_shard_manifest_cannot_point_outside_its_folder(tmp_path):
    import json

    import numpy as np

    from unmask.data.shards import MANIFEST, ShardError, ShardWriter, TokenShards

    shard = tmp_path / "shard"
    with ShardWriter(
        shard,
        count=2,
        shape=(2,),
        vocab_size=3,
        labels=False,
        tokenizer={"identity": "t", "hash": "t"},
    ) as w:
        w.write(np.zeros((2, 2), np.int64))
    (tmp_path / "secret.npy").write_bytes((shard / "tokens.npy").read_bytes())
    manifest = json.loads((shard / MANIFEST).read_text())
    for name in ("../secret.npy", str(tmp_path / "secret.npy")):
        manifest["files"]["tokens"]["name"] = name
        (shard / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(ShardError, match="is not a plain name in the shard folder"):
            TokenShards(shard, verify=False)
