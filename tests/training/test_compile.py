"""``train.compile: true`` (torch.compile of the forward, inductor on the CPU here): the same
loss curve as eager to float tolerance, and checkpoints an eager model loads (no
``_orig_mod.`` keys)."""

import shutil

import pytest
import torch

from unmask.tracking import NullTracker
from unmask.training import read_checkpoint, train

pytestmark = [
    pytest.mark.slow,  # inductor compiles C++ kernels: ~1 min on two cores
    pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                       reason="torch.compile on the CPU needs a C++ compiler (.ci/setup "
                              "installs g++)"),
]


def _losses(model, data, cfg, out):
    tr = NullTracker()
    res = train(model, *data, cfg, out, tracker=tr, progress=False)
    return [m["loss"] for _, m in tr.metrics], res


def test_compiled_training_matches_eager(tmp_path, data, make_model, make_cfg):
    torch._dynamo.reset()
    eager, _ = _losses(make_model(0, dropout=0.0), data, make_cfg(steps=4, ckpt_every=4),
                       tmp_path / "eager")
    compiled, res = _losses(make_model(0, dropout=0.0),
                            data, make_cfg(steps=4, ckpt_every=4, compile=True),
                            tmp_path / "compiled")
    assert len(compiled) == len(eager) == 4
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4,
                               atol=1e-5)
    state = read_checkpoint(res.checkpoint)
    fresh = make_model(1, dropout=0.0)
    assert not any(k.startswith("_orig_mod.") for k in state["model"])
    fresh.load_state_dict(state["model"])  # strict: same keys as the eager model
