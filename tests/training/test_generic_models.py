"""Training, resuming and loading models other than the foundation Transformer: the eMIGM MAE
(its own config class) and modules with non-persistent buffers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unmask.emigm.config import MAEConfig
from unmask.emigm.mae import MAE
from unmask.tracking import NullTracker
from unmask.training import (
    EMA,
    ModelConfigMismatchError,
    NonFiniteLossError,
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    train,
)
from unmask.training.loop import BatchOrder


def _mae(seed: int, **kw) -> MAE:
    torch.manual_seed(seed)
    base = dict(
        vocab_size=7,
        seq_len=8,
        dim=32,
        depth=1,
        heads=2,
        num_classes=3,
        dropout=0.1,
        cond_dropout=0.2,
        buffer_size=2,
        timestep="explicit",
    )
    return MAE(MAEConfig(**{**base, **kw}))


def _cfg(**kw) -> TrainConfig:
    base = dict(
        steps=6,
        batch_size=8,
        lr=1e-2,
        warmup_steps=2,
        lr_schedule="cosine",
        ema_decay=0.9,
        log_every=1,
        ckpt_every=100,
        keep_last=2,
        device="cpu",
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def _run(model, data, cfg, out, **kw):
    tr = NullTracker()
    res = train(model, *data, cfg, out, tracker=tr, progress=False, **kw)
    return res, tr


def test_mae_resumes_bit_identically(tmp_path, data):
    torch.use_deterministic_algorithms(True)
    try:
        cfg = _cfg()
        straight = _mae(0)
        r1, tr1 = _run(straight, data, cfg, tmp_path / "a")
        _run(_mae(0), data, cfg, tmp_path / "b", stop_at=3)
        assert [p.name for p in list_checkpoints(tmp_path / "b" / "checkpoints")] == [
            "ckpt-00000003.pt"
        ]
        resumed = _mae(1)  # another init: the weights must come from the checkpoint
        r2, tr2 = _run(resumed, data, cfg, tmp_path / "b")
    finally:
        torch.use_deterministic_algorithms(False)
    hist = list(tr1.history("loss"))
    assert len(hist) == 6 and list(tr2.history("loss")) == hist[3:]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    for k, v in r1.ema.shadow.items():
        assert torch.equal(v, r2.ema.shadow[k]), k

    # The checkpoint rebuilds an MAE (EMA weights) from the file alone.
    loaded = load_checkpoint(tmp_path / "b" / "checkpoints")
    assert type(loaded.model) is MAE and loaded.model_config == straight.cfg
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, r2.ema.shadow[k]), k


def test_mae_checkpoint_with_another_config_is_refused(tmp_path, data):
    _run(_mae(0), data, _cfg(steps=2), tmp_path)
    with pytest.raises(
        ModelConfigMismatchError,
        match=r"ckpt-00000002\.pt.*dim: checkpoint 32 "
        r"vs given 48",
    ):
        _run(_mae(0, dim=48), data, _cfg(steps=4), tmp_path)


def test_foundation_model_refuses_an_mae_checkpoint(tmp_path, data, make_model, make_cfg):
    _run(_mae(0), data, _cfg(steps=2), tmp_path)
    with pytest.raises(ModelConfigMismatchError, match=r"holds a MAE model, not a Transformer"):
        _run(make_model(0), data, make_cfg(steps=4), tmp_path)
    with pytest.raises(ModelConfigMismatchError, match="MAE model, not a Transformer"):
        load_checkpoint(tmp_path / "checkpoints", make_model(0).cfg)


class _WithBuffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("count", torch.zeros(()))  # persistent: copied
        self.register_buffer("table", torch.arange(4.0), persistent=False)  # not in state_dict


def test_ema_skips_non_persistent_buffers():
    m = _WithBuffers()
    ema = EMA(m, decay=0.5)
    assert set(ema.shadow) == {"lin.weight", "lin.bias", "count"}
    w0 = m.lin.weight.detach().clone()
    with torch.no_grad():
        m.lin.weight.add_(2.0)
        m.count.fill_(7.0)
        m.table.fill_(-1.0)
    ema.update(m)  # used to raise KeyError('table')
    assert torch.equal(ema.shadow["count"], torch.tensor(7.0))
    assert torch.allclose(ema.shadow["lin.weight"], w0 + 1.0)  # ½·w0 + ½·(w0 + 2)
    other = _WithBuffers()
    ema.copy_to(other)
    assert torch.equal(other.table, torch.arange(4.0))  # untouched
    with pytest.raises(KeyError, match="missing"):
        EMA(nn.Linear(2, 3), 0.5).load_state_dict(
            {"decay": 0.5, "num_updates": 0, "shadow": {"weight": torch.zeros(3, 2)}}
        )


def test_nan_error_names_step_batch_and_checkpoint(tmp_path, data):
    class Exploding(MAE):
        calls = 0

        def forward(self, x, t, y=None):
            out = super().forward(x, t, y)
            self.calls += 1
            return out * float("inf") * 0 if self.calls == 4 else out  # the update of step 3

    torch.manual_seed(0)
    model = Exploding(_mae(0).cfg)
    with pytest.raises(NonFiniteLossError) as info:
        _run(model, data, _cfg(steps=6, ckpt_every=2), tmp_path)
    err = info.value
    expected = BatchOrder(len(data[0]), 8, seed=3)(3).tolist()  # independent of the loop
    assert err.step == 3 and err.batch == expected
    assert err.checkpoint == tmp_path / "checkpoints" / "ckpt-00000003.pt"
    msg = str(err)
    assert "step 3" in msg and str(err.checkpoint) in msg
    assert f"[{', '.join(map(str, expected))}]" in msg
    assert load_checkpoint(err.checkpoint).step == 3
