"""Idle-step ratio: measured while sampling vs its closed form.

For the ``mdm`` sampler from an all-masked start a unit (token, or sub-token) is revealed in
step k with probability p_k (= Δκ_k), independently of the others, so a row is idle in step k
with probability (1 − p_k)^n and E[ISR] = 1/N Σ_k (1 − p_k)^n: n = L for plain MDM, L·ℓ for
MDM-Prime (linear κ: (1 − 1/N)^n). The measured per-row ISRs are averaged over B rows and
compared with a z-score on their standard error.
"""

import math

import pytest
import torch

from unmask.prime.exact import make_exact
from unmask.prime.sampling import expected_isr, expected_isr_token, sample_prime
from unmask.sampling import sample_with_info

B = 4000


def _z(idle_steps: torch.Tensor, steps: int, expected: float) -> float:
    r = idle_steps.double() / steps
    return (float(r.mean()) - expected) / (float(r.std()) / math.sqrt(len(r)))


def test_closed_form_linear_is_power_of_one_minus_one_over_n():
    for n_steps, n in [(16, 4), (128, 128), (64, 256)]:
        assert expected_isr("linear", n_steps, n) == pytest.approx((1 - 1 / n_steps) ** n,
                                                                    rel=1e-9)
    # MDM-Prime's figure: N = L gives ≈ e^{-1} ≈ 37 % idle steps for plain MDM
    assert expected_isr("linear", 1024, 1024) == pytest.approx(math.exp(-1), abs=2e-4)


@pytest.mark.parametrize("schedule,steps", [("linear", 16), ("cosine", 24), ("linear", 48)])
def test_plain_mdm_isr_matches_closed_form(tiny, schedule, steps):
    """Foundation sampler (unmask.sampling, mdm) on L = 4 tokens: measured vs closed form."""
    res = sample_with_info(tiny, batch_size=B, seq_len=4, mask_id=3, method="mdm", steps=steps,
                           schedule=schedule, generator=torch.Generator().manual_seed(steps))
    expected = expected_isr(schedule, steps, 4)
    assert abs(_z(res.idle_steps, res.steps, expected)) < 4.0
    assert res.idle_step_ratio == pytest.approx(float(res.idle_steps.double().mean()) / steps)
    # power: the closed form of a different unit count is rejected
    assert abs(_z(res.idle_steps, res.steps, expected_isr(schedule, steps, 6))) > 8.0


@pytest.mark.parametrize("ell,schedule", [(1, "linear"), (2, "linear"), (2, "cosine")])
def test_prime_isr_matches_closed_form(ell, schedule):
    """Prime sampler, C = 5, L = 3: ISR over L·ℓ sub-tokens, token-level ISR via F_k^ℓ."""
    den = make_exact(5, 3, ell, seed=4321)
    steps = 16
    res = sample_prime(den.joint, codec=den.codec, batch_size=B, seq_len=3, steps=steps,
                       schedule=schedule, generator=torch.Generator().manual_seed(ell))
    assert res.steps == steps
    assert abs(_z(res.idle_steps, steps, expected_isr(schedule, steps, 3 * ell))) < 4.0
    assert abs(_z(res.idle_steps_token, steps,
                  expected_isr_token(schedule, steps, 3, ell))) < 4.0
    if ell == 1:
        assert torch.equal(res.idle_steps, res.idle_steps_token)
    else:
        # partial masking lowers the ISR of the network input below plain MDM's
        assert res.idle_step_ratio < expected_isr(schedule, steps, 3) - 0.05
        assert abs(_z(res.idle_steps, steps, expected_isr(schedule, steps, 3))) > 8.0


def test_first_hitting_has_no_idle_steps():
    den = make_exact(5, 2, 2, seed=1)
    res = sample_prime(den.joint, codec=den.codec, batch_size=64, seq_len=2,
                       method="first_hitting", generator=torch.Generator().manual_seed(0))
    assert res.steps == 4 and res.idle_step_ratio == 0.0
