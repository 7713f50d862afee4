"""Sampler interface: guidance, temperature/top-p, trajectories, caching, errors."""

import pytest
import torch

from unmask.sampling import METHODS, sample, sample_with_info
from unmask.sampling.common import Guidance, process_logits


class Affine:
    """A time-dependent toy denoiser that records its calls."""

    time_conditioned = True

    def __init__(self, V=4):
        self.V, self.calls = V, []

    def __call__(self, x, t):
        self.calls.append(("c", t[0].item()))
        return torch.log_softmax(torch.arange(self.V, dtype=torch.float) * t[:, None, None]
                                 + 0 * x[..., None], -1)

    def cond_and_uncond(self, x, t):
        self.calls.append(("cu", t[0].item()))
        c = self(x, t)
        self.calls.pop()
        return c, torch.zeros_like(c)


def test_guidance_weights_and_formula():
    assert Guidance(2.0, "constant").weight(0.3) == 2.0
    assert Guidance(2.0, "linear").weight(0.25) == 0.5
    g = Guidance(2.0, "interval", (0.2, 0.6))
    assert [g.weight(t) for t in (0.1, 0.2, 0.5, 0.6, 0.7)] == [0, 2.0, 2.0, 2.0, 0]
    with pytest.raises(ValueError, match="cfg schedule"):
        Guidance(1.0, "cosine")

    # logits = (1 + w) cond − w uncond, checked on a one-step sampler with argmax draws
    den = Affine()
    captured = {}

    def spy(x, t):
        return den(x, t)

    from unmask.sampling.common import Evaluator

    ev = Evaluator(den, Guidance(1.5, "constant"))
    x = torch.full((2, 3), 4)
    out = ev(x, torch.full((2,), 0.5))
    cond = den(x, torch.full((2,), 0.5))
    torch.testing.assert_close(out, 2.5 * cond - 1.5 * torch.zeros_like(cond))
    del captured, spy


def test_interval_guidance_skips_uncond_passes():
    den = Affine()
    r = sample_with_info(den, batch_size=2, seq_len=64, mask_id=4, method="maskgit", steps=10,
                         cfg_scale=1.0, cfg_schedule="interval", cfg_interval=(0.0, 0.35),
                         generator=torch.Generator().manual_seed(0))
    guided = [c for c in den.calls if c[0] == "cu"]
    assert len(guided) == 4 and all(t <= 0.35 for _, t in guided)  # t = 0, .1, .2, .3
    assert r.nfe == 10 + 4 and r.guided_steps == 4
    assert r.nfe_label == "10×1.4"


def test_cfg_needs_an_unconditional_path():
    def plain(x, t):
        return torch.zeros(*x.shape, 3)

    with pytest.raises(ValueError, match="cond_and_uncond"):
        sample(plain, batch_size=1, seq_len=2, mask_id=3, cfg_scale=1.0)
    # an explicit uncond_denoiser works
    x = sample(plain, batch_size=1, seq_len=2, mask_id=3, cfg_scale=1.0, uncond_denoiser=plain)
    assert x.shape == (1, 2)


def test_top_p_against_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 9, generator=g)
    for p in (0.3, 0.75, 0.95):
        got = process_logits(logits, 1.0, p)
        for row, out in zip(logits, got, strict=True):
            probs = row.softmax(-1).tolist()
            order = sorted(range(9), key=lambda i: -probs[i])
            keep, mass = set(), 0.0
            for i in order:  # the smallest prefix reaching mass p
                keep.add(i)
                mass += probs[i]
                if mass >= p:
                    break
            assert {i for i in range(9) if out[i] > -float("inf")} == keep
    torch.testing.assert_close(process_logits(logits, 2.0), logits / 2.0)
    with pytest.raises(ValueError, match="temperature"):
        process_logits(logits, 0.0)
    with pytest.raises(ValueError, match="top_p"):
        process_logits(logits, 1.0, 1.5)


def test_low_temperature_gives_argmax(tiny):
    """One step unmasks everything from the marginals given all-[MASK]: at temperature → 0 every
    sample is the per-position argmax; at temperature 1 the samples spread out."""
    g = torch.Generator().manual_seed(1)
    argmax = tiny(torch.full((1, 4), 3), torch.zeros(1)).argmax(-1)
    x_cold = sample(tiny, batch_size=500, seq_len=4, mask_id=3, method="mdm", steps=1,
                    temperature=1e-3, generator=g)
    assert (x_cold == argmax).all()
    x_warm = sample(tiny, batch_size=500, seq_len=4, mask_id=3, method="mdm", steps=1,
                    temperature=1.0, generator=g)
    assert torch.unique(x_warm, dim=0).shape[0] > 10


@pytest.mark.parametrize("method", METHODS)
def test_trajectory_monotone_and_init_fixed(tiny, method):
    g = torch.Generator().manual_seed(2)
    x_init = torch.full((16, 4), 3)
    x_init[:, 3] = 1
    x, traj = sample(tiny, batch_size=16, seq_len=4, mask_id=3, method=method, steps=8,
                     generator=g, x_init=x_init, return_trajectory=True)
    assert traj.shape[1:] == (16, 4) and torch.equal(traj[0], x_init) and torch.equal(traj[-1], x)
    assert (traj[:, :, 3] == 1).all()
    masked = traj == 3
    assert not (masked[1:] & ~masked[:-1]).any()  # no clean token is ever re-masked
    assert not (x == 3).any()


def test_idle_step_caching_is_exact(tiny):
    """An ITM denoiser is evaluated only on changed states; samples are bit-identical."""
    for method in ("euler", "mdm"):
        calls = []

        def counted(x, t, calls=calls):
            calls.append(1)
            return tiny(x, t)

        counted.time_conditioned = False
        res = []
        for cache in (True, False):
            calls.clear()
            r = sample_with_info(counted, batch_size=1, seq_len=4, mask_id=3, method=method,
                                 steps=200, generator=torch.Generator().manual_seed(5),
                                 cache=cache)
            res.append((r.tokens, len(calls), r.nfe))
        assert torch.equal(res[0][0], res[1][0])
        assert res[0][1] == res[0][2] <= 4  # ≤ L distinct states, one evaluation each
        # uncached: one evaluation per step until the last token is unmasked
        assert res[1][1] == res[1][2] > 50


def test_isr_closed_form_plain_mdm(tiny):
    """ISR of plain MDM (linear κ, L tokens, N steps): a step idles when no token unmasks.
    With linear κ, the unmasking times are iid uniform, so step k idles with probability
    (1 − 1/N)^L: E[ISR] = (1 − 1/N)^L."""
    L, N, B = 4, 16, 4000
    r = sample_with_info(tiny, batch_size=B, seq_len=L, mask_id=3, method="mdm", steps=N,
                         schedule="linear", generator=torch.Generator().manual_seed(3))
    expected = (1 - 1 / N) ** L
    assert r.idle_step_ratio == pytest.approx(expected, abs=0.01)


def test_bad_arguments():
    def den(x, t):
        return torch.zeros(*x.shape, 3)

    with pytest.raises(ValueError, match="sampling method"):
        sample(den, batch_size=1, seq_len=2, mask_id=3, method="ddim")
    with pytest.raises(ValueError, match="steps"):
        sample(den, batch_size=1, seq_len=2, mask_id=3, steps=0)
    with pytest.raises(ValueError, match="x_init has shape"):
        sample(den, batch_size=2, seq_len=2, mask_id=3, x_init=torch.zeros(2, 3).long())

    def wrong(x, t):
        return torch.zeros(*x.shape, 4)

    with pytest.raises(ValueError, match="expected"):
        sample(wrong, batch_size=1, seq_len=2, mask_id=3)
