import math

import pytest
import torch

from unmask.models import Transformer
from unmask.tracking import NullTracker
from unmask.training import (
    BatchOrder,
    NonFiniteLossError,
    list_checkpoints,
    lr_factor,
    read_checkpoint,
    train,
)


def run(model, data, cfg, out, **kw):
    tr = NullTracker()
    res = train(model, *data, cfg, out, tracker=tr, progress=False, **kw)
    return res, tr


def test_exact_resume(tmp_path, data, make_model, make_cfg):
    cfg = make_cfg()  # dropout, label dropout, cosine lr, epoch boundary at step 5
    straight = make_model(0)
    r1, tr1 = run(straight, data, cfg, tmp_path / "a")

    run(make_model(0), data, cfg, tmp_path / "b", stop_at=4)
    names = [p.name for p in list_checkpoints(tmp_path / "b" / "checkpoints")]
    assert names == ["ckpt-00000004.pt"]
    resumed = make_model(1)  # a different init: everything must come from the checkpoint
    r2, tr2 = run(resumed, data, cfg, tmp_path / "b")

    hist1 = list(tr1.history("loss"))
    assert [s for s, _ in hist1] == list(range(1, 9))
    assert list(tr2.history("loss")) == hist1[4:]  # bitwise-equal losses for steps 5..8
    assert list(tr2.history("grad_norm")) == list(tr1.history("grad_norm"))[4:]
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    for k, v in r1.ema.shadow.items():
        assert torch.equal(v, r2.ema.shadow[k]), k
    assert r1.step == r2.step == 8 and r2.loss == pytest.approx(r1.loss, abs=0)
    # Nothing left to do: a further call returns at once.
    r3, tr3 = run(resumed, data, cfg, tmp_path / "b")
    assert r3.step == 8 and tr3.metrics == []


def test_loss_decreases_on_learnable_toy(tmp_path, make_model, make_cfg):
    tokens = torch.arange(8).repeat(32, 1)  # every sample is 0 1 2 ... 7
    model = make_model(0, vocab_size=8, num_classes=0, dropout=0.0, timestep="implicit")
    cfg = make_cfg(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, lr_schedule="constant",
                   ckpt_every=1000)
    res, tr = run(model, (tokens, None), cfg, tmp_path)
    losses = [v for _, v in tr.history("loss")]
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    # Initial loss ≈ E[1 − κ_t] log 8 ≈ 1.04 nats/token (uniform logits from adaLN-Zero).
    assert abs(first - 0.5 * math.log(8)) < 0.3
    assert last < 0.1 * first, (first, last)
    assert res.tokens_per_s > 0 and res.step == 60


def test_corrupt_checkpoint_falls_back(tmp_path, data, make_model, make_cfg):
    cfg = make_cfg(steps=6, ckpt_every=2, lr_schedule="constant")
    run(make_model(0), data, cfg, tmp_path / "x")
    ckpts = list_checkpoints(tmp_path / "x" / "checkpoints")
    assert [p.name for p in ckpts] == ["ckpt-00000004.pt", "ckpt-00000006.pt"]  # keep_last=2
    blob = ckpts[-1].read_bytes()
    ckpts[-1].write_bytes(blob[: len(blob) // 2])  # a truncated write

    resumed = make_model(1)
    with pytest.warns(UserWarning, match="ckpt-00000006.pt.*falling back to ckpt-00000004.pt"):
        res, tr = run(resumed, data, cfg.model_copy(update={"steps": 8}), tmp_path / "x")
    assert [s for s, _ in tr.history("loss")] == [5, 6, 7, 8]  # continued from step 4
    reference = make_model(0)
    run(reference, data, cfg.model_copy(update={"steps": 8}), tmp_path / "ref")
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_warmup_and_cosine_lr(tmp_path, data, make_model, make_cfg):
    cfg = make_cfg(steps=10, warmup_steps=4, lr=0.01, lr_schedule="cosine", ckpt_every=1000)
    _, tr = run(make_model(0), data, cfg, tmp_path)
    lrs = [v for _, v in tr.history("lr")]
    expected = [0.0025, 0.005, 0.0075, 0.01] + [
        0.005 * (1 + math.cos(math.pi * k / 6)) for k in range(6)
    ]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lr_factor(7, warmup_steps=0, steps=10, schedule="constant") == 1.0


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path, data, make_model, make_cfg):
    class Exploding(Transformer):
        calls = 0

        def forward(self, x, t, y=None):
            out = super().forward(x, t, y)
            self.calls += 1
            return out * float("nan") if self.calls == 6 else out  # the update of step 5

    model = make_model(cls=Exploding)
    cfg = make_cfg(steps=10, ckpt_every=3)
    with pytest.raises(NonFiniteLossError, match=r"step 5 .*ckpt-00000005\.pt"):
        run(model, data, cfg, tmp_path)
    state = read_checkpoint(tmp_path / "checkpoints" / "ckpt-00000005.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["model"][k])


def test_batch_order_is_a_function_of_seed_and_step():
    order = BatchOrder(10, 3, seed=5)
    epoch0 = torch.cat([order(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # disjoint batches, tail of 1 dropped
    assert torch.equal(epoch0, torch.randperm(10, generator=torch.Generator().manual_seed(5))[:9])
    epoch1 = torch.randperm(10, generator=torch.Generator().manual_seed(6))
    assert torch.equal(BatchOrder(10, 3, seed=5)(4), epoch1[3:6])  # fresh instance, mid-run
    assert torch.equal(order(1), BatchOrder(10, 3, seed=5)(1))
    with pytest.raises(ValueError, match="fewer than batch_size"):
        BatchOrder(2, 3, seed=0)


def test_data_validation(tmp_path, data, make_model, make_cfg):
    tokens, labels = data
    with pytest.raises(ValueError, match="no labels"):
        train(make_model(), tokens, None, make_cfg(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="clean ids"):
        train(make_model(), tokens + 1, labels, make_cfg(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="expects 8"):
        train(make_model(), tokens[:, :5], labels, make_cfg(), tmp_path, progress=False)


def test_workers_and_2d_grid_give_the_same_batches(tmp_path, make_model, make_cfg):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 5, (30, 2, 4), generator=g).to(torch.int16)  # compact storage
    losses = []
    for workers in (0, 1):
        model = make_model(0, vocab_size=5, seq_len=None, grid=(2, 4), pos="learned2d",
                           num_classes=0)
        cfg = make_cfg(steps=5, masking="maskgit", keep_ratio=0.25, weighting="elbo",
                       num_workers=workers)
        _, tr = run(model, (tokens, None), cfg, tmp_path / str(workers))
        losses.append([v for _, v in tr.history("loss")])
    assert len(losses[0]) == 5 and losses[0] == losses[1]
