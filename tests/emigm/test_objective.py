"""eMIGM's objective and sampling recipe through the foundation: schedule / weight mapping,
t_min truncation, the CFG time interval and its NFE accounting."""

from __future__ import annotations

import math

import pytest
import torch

from unmask import schedules
from unmask.emigm import MAE, MAEConfig
from unmask.emigm.continuous import nfe_label
from unmask.emigm.objective import (
    EMIGM_SCHEDULES,
    emigm_cfg_interval,
    emigm_guided_steps,
    emigm_train_config,
    expected_nfe,
)
from unmask.losses import diffusion_loss, loss_weight
from unmask.models import ConditionedDenoiser
from unmask.sampling import sample_with_info

E5 = math.exp(5.0)
# eMIGM's code (models/emigm.py, models/diffloss.py), in its mask time s: γ_s and γ'_s/γ_s.
EMIGM_GAMMA = {
    "linear": lambda s: s,
    "cosine": lambda s: torch.cos(math.pi / 2 * (1 - s)),
    "exp": lambda s: 1 - torch.exp(-5 * s),
    "log": lambda s: torch.log(1 + (E5 - 1) * s) / 5,
}
EMIGM_WEIGHT = {
    "linear": lambda s: 1 / s,
    "cosine": lambda s: (math.pi / 2) * torch.tan((math.pi / 2) * (1 - s)),
    "exp": lambda s: 5 * torch.exp(-5 * s) / (1 - torch.exp(-5 * s)),
    "log": lambda s: (E5 - 1) / ((1 + (E5 - 1) * s) * torch.log(1 + (E5 - 1) * s)),
}


@pytest.mark.parametrize("name", sorted(EMIGM_GAMMA))
def test_schedules_and_mdm_weight_match_emigm(name):
    """κ_t = 1 − γ_{1−t} and the foundation's ELBO weight κ̇/(1−κ) is eMIGM's γ'/γ."""
    sched = schedules.get(EMIGM_SCHEDULES[name])
    s = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
    t = 1 - s
    assert torch.allclose(sched.kappa(t), 1 - EMIGM_GAMMA[name](s), atol=1e-9)
    assert torch.allclose(loss_weight(sched, t, "elbo").double(), EMIGM_WEIGHT[name](s),
                          rtol=1e-4)
    assert torch.equal(loss_weight(sched, t, "constant"), torch.ones_like(t, dtype=torch.float32))


def test_train_config_maps_t_min_to_our_time():
    cfg = emigm_train_config(schedule="log", weighting="elbo", t_min=0.2, steps=5)
    assert (cfg.schedule, cfg.weighting, cfg.steps) == ("logexp", "elbo", 5)
    assert (cfg.t_min, cfg.t_max) == (0.0, pytest.approx(0.8))
    assert emigm_train_config(t_min=0.0).t_max == pytest.approx(0.999)  # eMIGM's ε = 1e-3
    with pytest.raises(ValueError):
        emigm_train_config(t_max=0.5)


@pytest.mark.parametrize("masking", ["maskgit", "independent"])
def test_t_min_truncation_draws_only_high_mask_ratios(masking):
    """Through the foundation's loss: with eMIGM's t_min = 0.2 and the exp schedule every mask
    is drawn at a ratio 1 − κ_t ≥ γ(0.2) = 1 − e^{−1} (exactly, for MaskGIT-style counts)."""
    cfg = emigm_train_config(schedule="exp", t_min=0.2)
    sched = schedules.get(cfg.schedule)
    gamma_min = 1 - math.exp(-5 * 0.2)
    seen_t, seen_ratio = [], []

    def spy(x_t, t):
        seen_t.append(t.clone())
        seen_ratio.append((x_t == 8).float().mean(-1))
        return torch.zeros(*x_t.shape, 8)

    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 8, (512, 64), generator=g)
    for _ in range(4):
        diffusion_loss(spy, x0, schedule=sched, mask_id=8, t_min=cfg.t_min, t_max=cfg.t_max,
                       masking=masking, generator=g)
    t, ratio = torch.cat(seen_t), torch.cat(seen_ratio)
    assert float(t.max()) <= 0.8 + 1e-6
    assert bool((1 - sched.kappa(t) >= gamma_min - 1e-6).all())
    if masking == "maskgit":
        assert float(ratio.min()) >= gamma_min - 1e-6
    else:
        assert float(ratio.mean()) > gamma_min
    # control: without truncation the same draws reach low mask ratios
    seen_ratio.clear()
    full = emigm_train_config(schedule="exp", t_min=0.0)
    diffusion_loss(spy, x0, schedule=sched, mask_id=8, t_min=full.t_min, t_max=full.t_max,
                   masking="maskgit", generator=g)
    assert float(torch.cat(seen_ratio).min()) < gamma_min - 0.2


def test_emigm_16_step_interval_is_16x1_2():
    """eMIGM's ImageNet setting: 16 steps, cfg interval (0.1, 0.3] → 3 guided steps: 16×1.2."""
    ks = emigm_guided_steps(0.1, 0.3, 16)
    assert ks == [11, 12, 13]
    assert nfe_label(16, len(ks)) == "16×1.2" and expected_nfe(16, 3) == 19


@pytest.mark.parametrize(("a", "b", "n"), [(0.1, 0.3, 16), (0.18, 0.6, 128), (0.05, 0.4, 128),
                                          (0.2, 0.4, 16), (0.0, 1.0, 8), (0.5, 0.52, 10),
                                          (0.25, 0.5, 8)])
def test_interval_in_our_time_guides_exactly_emigm_steps(a, b, n):
    """The foundation's guidance on our grid t_k = k/N, with the converted interval, is on at
    exactly the steps eMIGM guides."""
    from unmask.sampling.common import Guidance

    lo, hi = emigm_cfg_interval(a, b, n)
    guide = Guidance(1.0, "interval", (lo, hi))
    # the sampler evaluates the weight at float32 times
    ours = [k for k in range(n) if guide.weight(float(torch.tensor(k / n))) != 0.0]
    assert ours == emigm_guided_steps(a, b, n)


def test_sampler_nfe_accounting_with_mask_token_cfg():
    """A real run: an MAE with CFG (mask-token null) on eMIGM's interval. NFE = steps + guided
    steps, the label is eMIGM's, guided logits differ from unguided ones."""
    torch.manual_seed(0)
    model = MAE(MAEConfig(vocab_size=8, seq_len=64, num_classes=4, dim=32, depth=1, heads=4,
                          buffer_size=2)).eval()
    for p in model.parameters():  # a non-trivial (random) network
        torch.nn.init.normal_(p, std=0.3)
    for p in (model.class_emb.weight, model.backbone.mask_token):  # ... with a strong condition
        torch.nn.init.normal_(p, std=3.0)
    y = torch.arange(8) % 4
    lo, hi = emigm_cfg_interval(0.1, 0.3, 16)
    common = dict(batch_size=8, seq_len=64, mask_id=8, method="mdm", steps=16,
                  schedule="linear")
    with torch.no_grad():
        res = sample_with_info(ConditionedDenoiser(model, y), cfg_scale=10.0,
                               cfg_schedule="interval", cfg_interval=(lo, hi),
                               generator=torch.Generator().manual_seed(1), **common)
        plain = sample_with_info(ConditionedDenoiser(model, y),
                                 generator=torch.Generator().manual_seed(1), **common)
    assert res.steps == 16 and res.guided_steps == 3
    assert res.nfe == expected_nfe(16, 3) and res.nfe_label == "16×1.2"
    assert plain.nfe == 16 and plain.nfe_label == "16"
    assert not torch.equal(res.tokens, plain.tokens)
    assert (res.tokens < 8).all()
