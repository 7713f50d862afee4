"""Per-modality κ schedules for the joint model (unmask.joint.schedules): masking rates per
modality, identity with the single-schedule path, per-token ELBO weights, and a training run."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import binomtest

from unmask import schedules
from unmask.corruption import corrupt, mask_exact_count, mask_independent
from unmask.joint import JointLayout, JointTrainConfig, ModalitySchedules, train_schedule
from unmask.losses import loss_weight, masked_cross_entropy
from unmask.models import ModelConfig, Transformer
from unmask.tracking import NullTracker
from unmask.training import TrainConfig, train
from unmask.training.noise import objective_noise

torch.set_num_threads(1)
LAY = JointLayout(image_shape=(2, 3), image_vocab=5, mask_shape=(2, 2), num_classes=3)
BIG = JointLayout(image_shape=(10, 20), image_vocab=16, mask_shape=(10, 10), num_classes=4)


def _two(layout: JointLayout, image: str = "linear", mask: str = "cosine") -> ModalitySchedules:
    return ModalitySchedules.from_modalities(
        layout.modalities(), {"image": schedules.get(image), "mask": schedules.get(mask)}
    )


# -- (a) empirical masking rate per modality -----------------------------------------------------
@pytest.mark.parametrize("t0", [0.3, 0.7])
def test_masking_rate_per_modality_matches_each_schedule(t0):
    ms = _two(BIG)
    b, li = 100, BIG.image_len
    # closed forms, independent of unmask.schedules: linear κ = t, cosine κ = 1 − cos(πt/2)
    expect = {"image": t0, "mask": 1.0 - math.cos(math.pi * t0 / 2)}
    assert abs(expect["image"] - expect["mask"]) > 0.05  # the two schedules differ here
    x0 = torch.zeros(b, BIG.seq_len, dtype=torch.long)
    t = torch.full((b,), t0)
    g = torch.Generator().manual_seed(0)
    _, via_corrupt = corrupt(x0, t, ms, BIG.mask_id, generator=g)
    # the training loop's keyed noise (t_max − t_min tiny: t ≈ t0 for every row)
    noise = objective_noise(
        seed=3,
        step=5,
        index=torch.arange(b),
        global_batch=b,
        length=BIG.seq_len,
        schedule=ms,
        t_min=t0,
        t_max=t0 + 1e-7,
        stratified=False,
        masking="independent",
        keep_ratio=0.0,
        cond_dropout=0.0,
    )
    for masked in (via_corrupt, noise.masked):
        for name, part in (("image", masked[:, :li]), ("mask", masked[:, li:])):
            k, n = int(part.sum()), part.numel()
            p = binomtest(k, n, 1.0 - expect[name]).pvalue
            assert p > 1e-4, (name, k / n, 1.0 - expect[name], p)


# -- (b) one schedule for both modalities = the single-schedule path, bit for bit ----------------
def test_same_schedule_on_both_modalities_is_bit_identical():
    ms = _two(BIG, "cosine", "cosine")
    single = schedules.get("cosine")
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, BIG.vocab_size, (64, BIG.seq_len), generator=g)
    t = torch.rand(64, generator=g)
    outs = []
    for s in (ms, single):
        gen = torch.Generator().manual_seed(7)
        outs.append(corrupt(x0, t, s, BIG.mask_id, generator=gen))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    kw = dict(
        seed=0,
        step=3,
        index=torch.arange(64),
        global_batch=64,
        length=BIG.seq_len,
        t_min=1e-3,
        t_max=1 - 1e-3,
        stratified=True,
        masking="independent",
        keep_ratio=0.25,
        cond_dropout=0.0,
    )
    a, b = objective_noise(schedule=ms, **kw), objective_noise(schedule=single, **kw)
    assert torch.equal(a.t, b.t) and torch.equal(a.masked, b.masked)
    assert torch.equal(a.keep, b.keep)


def test_same_schedule_training_is_bit_identical(tmp_path):
    g = torch.Generator().manual_seed(2)
    x = LAY.combine(
        torch.randint(0, 5, (32, 2, 3), generator=g), torch.randint(0, 3, (32, 2, 2), generator=g)
    )
    cfg = TrainConfig(
        steps=4,
        batch_size=8,
        warmup_steps=1,
        device="cpu",
        ckpt_every=4,
        schedule="cosine",
        ema_decay=0.0,
    )
    states = []
    for i, s in enumerate((None, _two(LAY, "cosine", "cosine"))):
        torch.manual_seed(0)
        model = Transformer(
            ModelConfig(
                vocab_size=8, seq_len=10, dim=32, depth=1, heads=4, modalities=LAY.modalities()
            )
        )
        train(model, x, None, cfg, tmp_path / str(i), progress=False, schedule=s)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    # and the params path picks the plain loop when nothing differs from train.schedule
    jc = JointTrainConfig(schedule="cosine", schedules={"image": "cosine"})
    assert train_schedule(jc, LAY.modalities()) is None
    assert train_schedule(TrainConfig(), LAY.modalities()) is None


# -- (c) per-token ELBO weights ------------------------------------------------------------------
def test_elbo_weight_per_token_is_each_modality_own():
    ms = _two(LAY, "linear", "cosine")
    t = torch.tensor([0.1, 0.45, 0.8], dtype=torch.float64)
    w = loss_weight(ms, t, "elbo").double()  # computed in float32 (as in training)
    assert w.shape == (3, LAY.seq_len)
    h = 1e-6
    for name, sl in (("linear", slice(0, LAY.image_len)), ("cosine", slice(LAY.image_len, None))):
        s = schedules.get(name)
        fd = (s.kappa(t + h) - s.kappa(t - h)) / (2 * h)  # finite-difference κ̇
        ref = fd / (1 - s.kappa(t))
        torch.testing.assert_close(w[:, sl], ref[:, None].expand_as(w[:, sl]), rtol=1e-5, atol=0)
    # closed form of the linear part: 1 / (1 − t)
    torch.testing.assert_close(w[:, 0], 1 / (1 - t), rtol=1e-6, atol=0)
    # constant weighting is unchanged: one 1 per row
    assert torch.equal(loss_weight(ms, t.float(), "constant"), torch.ones(3))


def test_masked_cross_entropy_with_per_token_weights():
    g = torch.Generator().manual_seed(4)
    b, length, v = 3, LAY.seq_len, LAY.vocab_size
    logits = torch.randn(b, length, v, generator=g)
    x0 = torch.randint(0, v, (b, length), generator=g)
    masked = torch.rand(b, length, generator=g) < 0.5
    w = torch.rand(b, length, generator=g) * 3
    loss, per_row = masked_cross_entropy(logits, x0, masked, w)
    logp = logits.log_softmax(-1).gather(-1, x0[..., None])[..., 0]
    ref_rows = [
        sum(-float(logp[r, i]) * float(w[r, i]) for i in range(length) if masked[r, i]) / length
        for r in range(b)
    ]
    torch.testing.assert_close(per_row, torch.tensor(ref_rows))
    torch.testing.assert_close(loss, torch.tensor(sum(ref_rows) / b))
    # a per-row weight broadcast to every position gives the per-row path's result
    wr = torch.rand(b, generator=g)
    a, _ = masked_cross_entropy(logits, x0, masked, wr)
    c, _ = masked_cross_entropy(logits, x0, masked, wr[:, None].expand(b, length))
    torch.testing.assert_close(a, c)


# -- errors --------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(tmp_path):
    ms = _two(LAY)
    k = ms.kappa(torch.rand(2))
    with pytest.raises(ValueError, match="independent masking only"):
        mask_exact_count(torch.zeros(2, 10, dtype=torch.long), k, 8)
    with pytest.raises(ValueError, match="no schedule for modality 'mask'"):
        ModalitySchedules.from_modalities(LAY.modalities(), {"image": schedules.get("linear")})
    with pytest.raises(ValueError, match="schedules.depth"):
        JointTrainConfig(schedules={"depth": "linear"})
    with pytest.raises(ValueError, match="schedules.mask"):
        JointTrainConfig(schedules={"mask": "no-such-schedule"})
    with pytest.raises(ValueError, match="masking 'independent'"):
        JointTrainConfig(schedules={"mask": "linear"}, masking="maskgit")
    model = Transformer(
        ModelConfig(vocab_size=8, seq_len=10, dim=32, depth=1, heads=4, modalities=LAY.modalities())
    )
    x = torch.zeros(16, 10, dtype=torch.long)
    with pytest.raises(ValueError, match="per-position schedule"):
        train(
            model,
            x,
            None,
            TrainConfig(steps=1, batch_size=8, device="cpu"),
            tmp_path,
            progress=False,
            schedule=_two(BIG),
        )
    with pytest.raises(NotImplementedError, match="one schedule"):
        ms.inverse(torch.tensor([0.5]))
    # independent masking accepts (B, L) κ for x0 shaped (B, h, w) too
    _, m = mask_independent(torch.zeros(2, 2, 5, dtype=torch.long), torch.zeros(2, 10), 8)
    assert m.all()


# -- (d) a short training run with two schedules --------------------------------------------------
@pytest.mark.parametrize("weighting", ["constant", "elbo"])
def test_two_schedule_training_loss_decreases(tmp_path, weighting):
    # a learnable toy: 4 fixed (image, mask) pairs, the mask a function of the image
    imgs = torch.tensor(
        [[0, 1, 2, 3, 4, 0], [4, 3, 2, 1, 0, 4], [1, 1, 1, 2, 2, 2], [3, 0, 3, 0, 3, 0]]
    )
    masks = torch.tensor([[0, 1, 2, 0], [2, 1, 0, 2], [1, 1, 2, 2], [0, 0, 1, 1]])
    x = LAY.combine(imgs.repeat(16, 1).reshape(64, 2, 3), masks.repeat(16, 1).reshape(64, 2, 2))
    cfg = JointTrainConfig(
        steps=200,
        batch_size=16,
        lr=3e-3,
        warmup_steps=5,
        device="cpu",
        ckpt_every=1000,
        log_every=10,
        weighting=weighting,
        schedule="cosine",
        schedules={"image": "linear"},
    )
    sched = train_schedule(cfg, LAY.modalities())
    assert isinstance(sched, ModalitySchedules)
    assert [s.name for _, _, s in sched.segments] == ["linear", "cosine"]
    torch.manual_seed(0)
    model = Transformer(
        ModelConfig(
            vocab_size=8,
            seq_len=10,
            dim=32,
            depth=2,
            heads=4,
            dropout=0.0,
            modalities=LAY.modalities(),
        )
    )
    tr = NullTracker()
    res = train(model, x, None, cfg, tmp_path, tracker=tr, progress=False, schedule=sched)
    losses = [v for _, v in tr.history("loss")]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:2]) / 2, sum(losses[-4:]) / 4
    assert last < 0.5 * first, (first, last)
    assert res.step == 200


def test_train_stage_reads_train_schedules(tmp_path, monkeypatch):
    # the joint pipeline's train stage with `train.schedules` on a tiny token set
    import json

    import numpy as np

    from unmask import pretokenized_train
    from unmask.joint.params import JointParams
    from unmask.joint.stages.train import run_train

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tokens").mkdir()
    g = np.random.default_rng(0)
    meta = {
        "image_shape": [2, 3],
        "image_vocab": 5,
        "mask_shape": [2, 2],
        "num_classes": 3,
        "tokenizer": {"kind": "pixel", "levels": 5},
    }
    (tmp_path / "tokens" / "meta.json").write_text(json.dumps(meta))
    np.savez(
        tmp_path / "tokens" / "tokens.npz",
        train_image=g.integers(0, 5, (32, 2, 3)),
        train_mask=g.integers(0, 3, (32, 2, 2)),
    )
    seen = []
    real = pretokenized_train.train

    def spy(*a, **kw):
        seen.append(kw["schedule"])
        return real(*a, **kw)

    monkeypatch.setattr(pretokenized_train, "train", spy)
    p = JointParams.model_validate(
        {
            "model": {"dim": 32, "depth": 1, "heads": 4},
            "train": {
                "steps": 2,
                "batch_size": 8,
                "warmup_steps": 1,
                "device": "cpu",
                "schedule": "cosine",
                "weighting": "elbo",
                "schedules": {"image": "linear", "mask": "cosine"},
            },
            "tracking": {"enabled": False},
        }
    )
    out = run_train(p)
    assert out["step"] == 2 and math.isfinite(out["loss"])
    (ms,) = seen
    assert [(m, n, s.name) for m, n, s in ms.segments] == [
        ("image", 6, "linear"),
        ("mask", 4, "cosine"),
    ]
    assert (tmp_path / "models" / "model.pt").is_file()
