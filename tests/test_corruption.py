"""Forward corruption: masking frequencies, exact counts, coupling, time sampling."""

import math

import pytest
import torch
from scipy import stats

from unmask import corruption, schedules


def test_independent_mask_rate_is_one_minus_kappa():
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(4000, 64, dtype=torch.long)
    kappa = torch.tensor([0.1, 0.5, 0.9, 1.0]).repeat_interleave(1000)
    x_t, masked = corruption.mask_independent(x0, kappa, mask_id=7, generator=g)
    assert torch.equal(x_t == 7, masked)
    for i, k in enumerate([0.1, 0.5, 0.9, 1.0]):
        n_masked = int(masked[i * 1000:(i + 1) * 1000].sum())
        n = 64_000
        # two-sided binomial test of P(masked) = 1 − κ
        if k == 1.0:
            assert n_masked == 0
        else:
            assert stats.binomtest(n_masked, n, 1 - k).pvalue > 1e-3


def test_mask_exact_count_is_ceil():
    g = torch.Generator().manual_seed(0)
    x0 = torch.arange(10).repeat(5, 1)
    kappa = torch.tensor([0.0, 0.25, 0.5, 0.95, 1.0])
    x_t, masked = corruption.mask_exact_count(x0, kappa, mask_id=10, generator=g)
    expected = [math.ceil(10 * (1 - k)) for k in kappa.tolist()]
    assert masked.sum(-1).tolist() == expected
    assert torch.equal(x_t[~masked], x0[~masked])


def test_mask_exact_count_positions_uniform():
    g = torch.Generator().manual_seed(1)
    x0 = torch.zeros(20000, 5, dtype=torch.long)
    _, masked = corruption.mask_exact_count(x0, 0.6, mask_id=1, generator=g)  # ⌈5·0.4⌉ = 2
    assert (masked.sum(-1) == 2).all()
    counts = masked.sum(0).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3


def test_keep_clean_positions_never_masked_or_counted():
    g = torch.Generator().manual_seed(2)
    keep = corruption.keep_clean((8, 20), 0.25, generator=g)
    assert (keep.sum(-1) == 5).all()
    x0 = torch.zeros(8, 20, dtype=torch.long)
    for fn in (corruption.mask_independent, corruption.mask_exact_count):
        _, masked = fn(x0, 0.0, 3, generator=g, keep=keep)
        assert not (masked & keep).any()
        assert (masked | keep).all()  # κ = 0: everything else masked


def test_sample_time_uniform_and_stratified():
    g = torch.Generator().manual_seed(3)
    for strat in (False, True):
        t = corruption.sample_time(5000, t_min=0.2, t_max=0.7, stratified=strat, generator=g)
        assert float(t.min()) >= 0.2 and float(t.max()) <= 0.7
        assert stats.kstest(t.numpy(), stats.uniform(0.2, 0.5).cdf).pvalue > 1e-3
    t = corruption.sample_time(10, stratified=True, generator=g)
    # one point per stratum of [t_min, t_max]
    lo, hi = corruption.DEFAULT_T_MIN, corruption.DEFAULT_T_MAX
    strata = ((t - lo) / (hi - lo) * 10).floor().long().sort().values
    assert strata.tolist() == list(range(10))
    with pytest.raises(ValueError, match="t_min"):
        corruption.sample_time(3, t_min=0.5, t_max=0.5)


def test_emigm_truncation_maps_to_clean_time():
    # eMIGM samples its mask time t ∈ [t_min, 1]; the fraction masked is γ_t ≥ γ_{t_min}.
    lo, hi = corruption.emigm_time_range(0.2)
    assert (lo, hi) == (0.0, 0.8)
    s = schedules.get("exp")
    # the least-masked point of the truncated range equals eMIGM's γ at its t_min
    gamma_tmin = 1 - math.exp(-5 * 0.2)
    assert 1 - float(s.kappa(torch.tensor(hi, dtype=torch.float64))) == pytest.approx(gamma_tmin)


def test_corrupt_dispatch():
    g = torch.Generator().manual_seed(4)
    x0 = torch.ones(3, 6, dtype=torch.long)
    t = torch.tensor([0.0, 0.5, 1.0])
    _, m = corruption.corrupt(x0, t, schedules.get("linear"), 2, masking="maskgit", generator=g)
    assert m.sum(-1).tolist() == [6, 3, 0]
    with pytest.raises(ValueError, match="masking"):
        corruption.corrupt(x0, t, schedules.get("linear"), 2, masking="bogus")
