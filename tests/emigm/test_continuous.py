"""eMIGM on continuous tokens: the masked model + diffusion head, its loss, training loop and
MDM sampler; the tiny KL autoencoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask import schedules
from unmask.emigm import ContinuousMAE, MAEConfig, sample_continuous
from unmask.emigm.continuous import load_continuous, train_continuous
from unmask.emigm.kl_ae import KLAETokenizer, train_kl_ae
from unmask.emigm.objective import emigm_guided_steps, emigm_train_config


def tiny(**kw) -> ContinuousMAE:
    torch.manual_seed(0)
    cfg = dict(token_dim=2, seq_len=4, num_classes=2, dim=32, depth=1, heads=4, buffer_size=2,
               head={"width": 64, "depth": 2, "batch_mul": 2, "steps": 10, "lambda_min": -2.0})
    return ContinuousMAE(MAEConfig(**{**cfg, **kw}))


def sign_data(n: int, seed: int = 0) -> torch.Tensor:
    """Every token of a sample is s·(1, 1) + 0.1 ε with one shared random sign s: the tokens
    are perfectly correlated, each marginal is a symmetric two-blob mixture."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, 2, (n, 1, 1), generator=g) * 2.0 - 1.0
    return s * torch.ones(n, 4, 2) + 0.1 * torch.randn(n, 4, 2, generator=g)


def test_condition_vectors_ignore_masked_token_values():
    model = tiny().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, 2, generator=g)
    masked = torch.rand(5, 4, generator=g) < 0.5
    y = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        z = model(x, masked, None, y)
        x2 = torch.where(masked[..., None], 50 * torch.randn(x.shape, generator=g), x)
        assert torch.equal(model(x2, masked, None, y), z)
        x3 = torch.where(masked[..., None], x, x + 1.0)
        assert not torch.allclose(model(x3, masked, None, y), z)
    assert z.shape == (5, 4, 32)


def test_loss_weighting_and_normalisation():
    model = tiny()
    x0 = sign_data(8)
    t = torch.full((8,), 0.3)
    masked = torch.zeros(8, 4, dtype=torch.bool)
    sched = schedules.get("exp")
    assert float(model.loss(x0, masked, t, None, schedule=sched).detach()) == 0.0  # none masked
    masked[:, :2] = True
    kw = dict(schedule=sched, generator=None)
    torch.manual_seed(1)
    a = model.loss(x0, masked, t, None, normalize="masked", **kw)
    torch.manual_seed(1)
    b = model.loss(x0, masked, t, None, normalize="tokens", **kw)
    assert torch.allclose(b, a * 2 / 4)  # Σ/N_masked vs per-row Σ/L: 2 of 4 masked per row
    torch.manual_seed(1)
    w = model.loss(x0, masked, t, None, weighting="elbo", **kw)
    assert torch.allclose(w, a * sched.elbo_weight(torch.tensor(0.3)), rtol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = tiny(num_classes=0)
    cfg = emigm_train_config(schedule="exp", t_min=0.0, steps=300, batch_size=64, lr=3e-3,
                             warmup_steps=20, lr_schedule="cosine", ema_decay=0.0,
                             log_every=100, ckpt_every=300, weighting="constant")
    out = tmp_path_factory.mktemp("cont")
    res = train_continuous(model, sign_data(2048), None, cfg, out, progress=False)
    return model.eval(), res


def test_training_learns_the_joint_structure(trained):
    """After a short training the MDM sampler reproduces the shared sign: tokens revealed later
    follow the visible ones (independent tokens would agree in 1/8 of the samples)."""
    model, res = trained
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.checkpoint.is_file() and res.seconds_per_step > 0
    # Many small steps: tokens are revealed one at a time (few-step MDM draws tokens revealed in
    # the same step independently, which this check would count against the model).
    out = sample_continuous(model, None, batch_size=200, steps=128, schedule="linear",
                            generator=torch.Generator().manual_seed(0))
    signs = torch.sign(out.tokens.mean(-1))
    agree = (signs == signs[:, :1]).all(-1).float().mean()
    assert agree > 0.8, float(agree)  # measured 0.94; independent tokens: 0.125
    frac_pos = float((signs[:, 0] > 0).float().mean())
    assert 0.3 < frac_pos < 0.7  # both modes
    assert torch.allclose(out.tokens.abs().mean(), torch.tensor(1.0), atol=0.15)


def test_checkpoint_roundtrip(trained):
    model, res = trained
    loaded = load_continuous(res.checkpoint, ema=False)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k


def test_sampler_nfe_with_cfg_interval():
    model = tiny().eval()
    y = torch.tensor([0, 1, 0, 1])
    out = sample_continuous(model, y, steps=8, schedule="linear", cfg_scale=2.0,
                            cfg_interval=(0.1, 0.6), head_steps=3,
                            generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (4, 4, 2) and torch.isfinite(out.tokens).all()
    assert out.nfe == out.steps + out.guided_steps
    # eMIGM guides the steps ending in (0.1, 0.6]: k = 3..6 (those that reveal a position)
    assert out.guided_steps <= len(emigm_guided_steps(0.1, 0.6, 8)) == 4 and out.steps <= 8
    assert out.head_evals == 3 * out.steps
    with pytest.raises(ValueError, match="class-conditional"):
        sample_continuous(tiny(num_classes=0), None, batch_size=2, cfg_scale=1.0)


def test_tiny_kl_autoencoder_roundtrip(tmp_path):
    g = np.random.default_rng(0)
    images = (g.random((64, 28, 28)) * 255).astype(np.uint8)
    tok = train_kl_ae(images, {"steps": 3, "batch_size": 8}, progress=False)
    z = tok.encode(images[:5])
    assert z.shape == (5, 4, 7, 7)
    rec = tok.decode(z)
    assert rec.shape == (5, 28, 28) and rec.dtype == np.uint8
    path = tok.save(tmp_path / "kl.pt")
    again = KLAETokenizer.load(path)
    assert torch.equal(again.encode(images[:5]), z) and again.hash == tok.hash
    with pytest.raises(ValueError, match="unknown KL autoencoder keys"):
        train_kl_ae(images, {"stepz": 3})
