"""eMIGM's sampler (unmask.emigm.sample, continuous.sample_continuous): guidance on eMIGM's time
interval with its constant / linear weight, checked against eMIGM's code
(models/emigm.py ``sample_tokens``: cfg_iter = 1 + (cfg − 1)·(L − #masked after the step)/L),
recomputed here from the sampler's states rather than from its own bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from unmask.emigm import MAE, MAEConfig
from unmask.emigm import sample as emigm_sample
from unmask.emigm.continuous import sample_continuous
from unmask.emigm.objective import emigm_cfg_weights, emigm_guided_steps
from unmask.emigm.sample import sample_discrete

V, L, CLASSES = 2, 32, 3


class Stub(nn.Module):
    """Logits 0 for both tokens when conditional; token 1 at −1 for the null class. Guided
    logits (1 + w)·c − w·u then put exactly w on token 1, so the weight of each row can be
    read off the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(length=L, mask_id=V, num_classes=CLASSES, grid=(4, 8))
        self.null_class = CLASSES
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        out = torch.zeros(*x.shape, V)
        out[..., 1] = torch.where(y == self.null_class, -1.0, 0.0)[:, None]
        return out


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_discrete_guidance_weight_per_step_matches_emigm(schedule, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = emigm_sample.grid_step

    def spy(x, jump, leftover, logits, **kw):
        w_rows = logits[:, 0, 1].clone()  # token-1 logit = the row's guidance weight
        out = real(x, jump, leftover, logits, **kw)
        seen.append((w_rows, x.clone()))
        return out

    monkeypatch.setattr(emigm_sample, "grid_step", spy)
    model, n, w, interval = Stub(), 8, 2.5, (0.1, 0.6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    res = sample_discrete(model, y, steps=n, schedule="linear", cfg_scale=w,
                          cfg_schedule=schedule, cfg_interval=interval,
                          generator=torch.Generator().manual_seed(0))
    guided = emigm_guided_steps(*interval, n)
    assert guided == [3, 4, 5, 6]  # eMIGM guides steps ending at s ∈ (0.1, 0.6]
    # 32 tokens, π_k = 1/(N − k) under the linear schedule: every step reveals a token
    assert len(seen) == n and res.steps == n and res.guided_steps == len(guided)
    assert res.nfe == n + len(guided) and model.batches == [12 if k in guided else 6
                                                           for k in range(n)]
    for k, (w_rows, x_after) in enumerate(seen):
        # eMIGM: r = (L − mask.sum)/L read after the mask update; its scale cfg is w + 1
        unmasked_after = (x_after != V).double().mean(-1)
        cfg_iter = 1 + ((w + 1) - 1) * (unmasked_after if schedule == "linear" else 1.0)
        want = (cfg_iter - 1) if k in guided else 0.0
        want = want * torch.ones(len(y), dtype=torch.float64)
        assert torch.allclose(w_rows.double(), want, atol=1e-6), k
    assert (res.tokens < V).all()


def test_linear_weights_grow_with_revealed_tokens():
    masked_after = torch.tensor([[True, True, False, False], [False, False, False, False]])
    assert torch.equal(emigm_cfg_weights(3.0, "linear", masked_after), torch.tensor([1.5, 3.0]))
    assert torch.equal(emigm_cfg_weights(3.0, "constant", masked_after), torch.tensor([3.0, 3.0]))
    with pytest.raises(ValueError, match="cfg schedule 'cubic'"):
        emigm_cfg_weights(3.0, "cubic", masked_after)


def test_discrete_sampler_on_a_real_mae_counts_emigm_nfe():
    """eMIGM's ImageNet setting (16 steps, interval (0.1, 0.3]) on a random MAE: 16×1.2."""
    torch.manual_seed(0)
    model = MAE(MAEConfig(vocab_size=8, seq_len=64, num_classes=4, dim=32, depth=1, heads=4,
                          buffer_size=2)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    y = torch.arange(8) % 4
    kw = dict(steps=16, schedule="linear", generator=torch.Generator().manual_seed(1))
    res = sample_discrete(model, y, cfg_scale=3.0, cfg_interval=(0.1, 0.3), **kw)
    kw["generator"] = torch.Generator().manual_seed(1)
    plain = sample_discrete(model, y, **kw)
    assert (res.nfe, res.nfe_label, plain.nfe, plain.nfe_label) == (19, "16×1.2", 16, "16")
    assert not torch.equal(res.tokens, plain.tokens) and (res.tokens < 8).all()
    with pytest.raises(ValueError, match="class-conditional"):
        sample_discrete(model, None, batch_size=2, cfg_scale=1.0)


def test_continuous_linear_guidance_uses_the_fraction_unmasked_after_the_step():
    """One row: the head's per-token weight at a guided step is w·(tokens revealed up to and
    including this step)/L — counted here from the head's calls."""
    cfg = MAEConfig(token_dim=2, seq_len=16, num_classes=2, dim=32, depth=1, heads=4,
                    buffer_size=2, head={"width": 32, "depth": 1})
    from unmask.emigm.continuous import ContinuousMAE

    model = ContinuousMAE(cfg).eval()
    calls: list[tuple[int, torch.Tensor | float]] = []

    def head_sample(z, *, z_uncond=None, guidance=0.0, **kw):
        calls.append((z.shape[0], guidance))
        return torch.ones(z.shape[0], 2)

    model.head.sample = head_sample  # type: ignore[method-assign]
    w, n, interval = 2.0, 8, (0.0, 0.7)
    res = sample_continuous(model, torch.tensor([1]), steps=n, schedule="linear", cfg_scale=w,
                            cfg_schedule="linear", cfg_interval=interval,
                            generator=torch.Generator().manual_seed(3))
    revealed = 0
    guided_seen = 0
    for count, g in calls:
        revealed += count
        if isinstance(g, torch.Tensor):
            guided_seen += 1
            assert g.shape == (count, 1)
            assert torch.allclose(g, torch.full((count, 1), w * revealed / 16))
        else:
            assert g == 0.0
    assert revealed == 16 and guided_seen == res.guided_steps > 0
    assert bool((res.tokens == 1).all())
