"""NELBO against exact log-likelihoods on an enumerable distribution."""

import math

import pytest
import torch

from unmask import likelihood


@pytest.mark.parametrize("schedule", ["linear", "cosine", "arccos", "logexp"])
def test_exact_denoiser_nelbo_equals_neg_log_prob(tiny, schedule):
    g = torch.Generator().manual_seed(0)
    x = tiny.sample(6, g)
    est = likelihood.nelbo_with_stderr(tiny, x, mask_id=3, schedule=schedule, num_samples=1500,
                                       generator=g)
    target = -tiny.log_prob(x)
    z = (est.nelbo - target) / est.stderr
    assert float(z.abs().max()) < 4.5, (est.nelbo, target, est.stderr)
    # the mean over sequences, with its combined standard error
    zm = float((est.nelbo - target).sum() / est.stderr.pow(2).sum().sqrt())
    assert abs(zm) < 4.0


def test_nelbo_api_shape_and_uniform_denoiser():
    """A uniform denoiser pays log V per masked token: NELBO = L log V for every schedule."""
    V, L = 5, 12
    x = torch.randint(0, V, (4, L), generator=torch.Generator().manual_seed(1))

    def uniform(x_t, t):
        return torch.zeros(*x_t.shape, V)

    est = likelihood.nelbo_with_stderr(uniform, x, mask_id=V, schedule="cosine",
                                       num_samples=2000, generator=torch.Generator().manual_seed(2))
    assert est.nelbo.shape == (4,)
    z = (est.nelbo - L * math.log(V)) / est.stderr
    assert float(z.abs().max()) < 4.5
    assert float(est.stderr.max()) < 0.03 * L * math.log(V)  # finite, shrinking variance
    out = likelihood.nelbo(uniform, x, mask_id=V, schedule="linear", num_samples=8)
    assert out.shape == (4,) and out.dtype == torch.float64


def test_elbo_is_a_bound_for_a_wrong_denoiser(tiny):
    """Any denoiser's NELBO upper-bounds −log p: averaged over the data, the cross-entropy."""
    g = torch.Generator().manual_seed(3)

    def blurred(x_t, t):  # mix the exact conditionals with uniform
        p = tiny(x_t, t).exp()
        return (0.5 * p + 0.5 / 3).log()

    x = tiny.sample(400, g)
    est = likelihood.nelbo(blurred, x, mask_id=3, schedule="linear", num_samples=20, generator=g)
    assert float(est.mean()) > float(-tiny.log_prob(x).mean()) + 0.1


def test_perplexity_and_bits():
    nats = torch.tensor([10.0, 14.0])
    assert likelihood.perplexity(nats, 4) == pytest.approx(math.exp(3.0))
    assert likelihood.bits_per_token(nats, 4) == pytest.approx(3.0 / math.log(2))
