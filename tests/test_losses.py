"""Masked CE against an element-by-element reference computation."""

import math

import pytest
import torch

from unmask import losses, schedules


def _reference(logits, x0, masked, w, scored):
    rows = []
    for b in range(x0.shape[0]):
        s = 0.0
        for i in range(x0.shape[1]):
            if masked[b, i]:
                z = logits[b, i].double()
                s += float(torch.logsumexp(z, 0) - z[x0[b, i]])
        rows.append(w[b] * s / scored[b])
    return torch.tensor(rows, dtype=torch.float64)


def test_masked_ce_matches_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 5, generator=g)
    x0 = torch.randint(0, 5, (4, 7), generator=g)
    masked = torch.rand(4, 7, generator=g) < 0.5
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    loss, per_row = losses.masked_cross_entropy(logits, x0, masked, w)
    ref = _reference(logits, x0, masked, w.tolist(), [7] * 4)
    torch.testing.assert_close(per_row.double(), ref, atol=1e-5, rtol=1e-5)
    assert float(loss) == pytest.approx(float(ref.mean()), rel=1e-5)
    loss_m, _ = losses.masked_cross_entropy(logits, x0, masked, w, normalize="masked")
    assert float(loss_m) == pytest.approx(float((ref * 7).sum() / masked.sum()), rel=1e-5)


def test_loss_weights():
    s = schedules.get("linear")
    t = torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(losses.loss_weight(s, t, "elbo"), 1 / (1 - t))
    torch.testing.assert_close(losses.loss_weight(s, t, "constant"), torch.ones(3))
    with pytest.raises(ValueError, match="weighting"):
        losses.loss_weight(s, t, "mdm")


def test_uniform_denoiser_elbo_loss_is_log_v():
    # A denoiser that predicts uniform logits pays log V per masked token; with ELBO weights the
    # expected per-token loss is log V · ∫ κ̇ dt = log V (any schedule with κ_0 = 0, κ_1 = 1).
    g = torch.Generator().manual_seed(1)
    V = 6
    x0 = torch.randint(0, V, (4096, 16), generator=g)

    def uniform(x_t, t):
        return torch.zeros(*x_t.shape, V)

    for name in ("linear", "cosine", "arccos"):
        out = losses.diffusion_loss(uniform, x0, schedule=schedules.get(name), mask_id=V,
                                    weighting="elbo", t_min=1e-4, t_max=1 - 1e-4, generator=g)
        assert float(out.loss) == pytest.approx(math.log(V), rel=0.03)


def test_keep_ratio_positions_not_scored():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, 4, (8, 10), generator=g)
    seen = {}

    def den(x_t, t):
        seen["x_t"] = x_t
        return torch.zeros(*x_t.shape, 4)

    keep = torch.zeros(8, 10, dtype=torch.bool)
    keep[:, :4] = True
    out = losses.diffusion_loss(den, x0, schedule=schedules.get("linear"), mask_id=4,
                                keep=keep, t_min=0.0, t_max=1e-6, generator=g)
    assert torch.equal(seen["x_t"][:, :4], x0[:, :4])
    assert (seen["x_t"][:, 4:] == 4).all()
    # everything scorable masked, uniform logits: per-row loss = log 4 over the 6 scored positions
    torch.testing.assert_close(out.per_row, torch.full((8,), math.log(4)))
