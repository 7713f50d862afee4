"""Numerics: a NaN / inf loss stops training with an error naming the step, the batch's sample
indices and the last good checkpoint, which is saved (finite weights) and resumable; from the
command line it is one ``error:`` line, exit status 2."""

from __future__ import annotations

import pytest
import torch

from unmask.errors import user_errors
from unmask.models import ModelConfig, Transformer
from unmask.training import NonFiniteLossError, TrainConfig, read_checkpoint, train
from unmask.training.loop import BatchOrder


def _setup():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=5, seq_len=6, dim=16, depth=1, heads=2))
    tokens = torch.randint(0, 5, (24, 6), generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(steps=8, batch_size=8, ckpt_every=2, log_every=1, device="cpu", seed=4)
    return model, tokens, cfg


def test_inf_weights_stop_training_naming_step_batch_and_checkpoint(tmp_path, capsys):
    model, tokens, cfg = _setup()

    def poison(path, step, metrics):
        if step == 4:  # after checkpoint 4 is written, a weight blows up
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))

    with pytest.raises(NonFiniteLossError) as info:
        train(model, tokens, None, cfg, tmp_path, progress=False, on_checkpoint=poison)
    err = info.value
    ckpt = tmp_path / "checkpoints" / "ckpt-00000004.pt"
    batch = BatchOrder(24, 8, seed=4)(4).tolist()  # epoch 1, batch 1: independent order
    assert (err.step, err.batch, err.checkpoint) == (4, batch, ckpt)
    assert "at step 4" in str(err) and str(ckpt) in str(err) and str(batch[:3])[1:-1] in str(err)
    state = read_checkpoint(ckpt)
    assert all(torch.isfinite(v).all() for v in state["model"].values())

    # Resuming from it (after fixing the cause) continues at step 4.
    fresh, _, _ = _setup()
    res = train(fresh, tokens, None, cfg.model_copy(update={"steps": 6}), tmp_path, progress=False)
    assert res.step == 6

    # Through the commands' error handler: one line, exit status 2.
    with pytest.raises(SystemExit) as code, user_errors():
        raise err
    assert code.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: loss is nan at step 4")
