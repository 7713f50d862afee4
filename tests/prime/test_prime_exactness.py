"""MDM-Prime against an exact analytic sub-token denoiser (C = 5, ℓ = 2, b = 3, L = 3).

* the partial-unmasking samplers reproduce the target (TV inside the sampling-noise band), a
  one-step sampler does not;
* the sub-token NELBO equals −log p(x) in expectation (z-scores on the MC error), and a wrong
  denoiser is detected;
* ℓ = 1 reduces to plain MDM: the same NELBO draws as :mod:`unmask.likelihood` and the same
  samples as :mod:`unmask.sampling` for the same generator.
"""

import math

import pytest
import torch

from unmask.exact import total_variation as tv
from unmask.likelihood import nelbo
from unmask.prime.exact import make_exact
from unmask.prime.likelihood import SubTokenMarginals, prime_nelbo
from unmask.prime.sampling import sample_prime
from unmask.prime.subtokens import SubTokenCodec
from unmask.sampling import sample

N = 10_000


@pytest.mark.parametrize(
    "method,steps,schedule",
    [("mdm", 128, "linear"), ("mdm", 256, "cosine"), ("euler", 512, "linear"),
     ("first_hitting", 1, "linear")],
)
def test_prime_sampler_matches_target(prime_tiny, prime_tv_band, method, steps, schedule):
    g = torch.Generator().manual_seed(11)
    res = sample_prime(prime_tiny.joint, codec=prime_tiny.codec, batch_size=N, seq_len=3,
                       method=method, steps=steps, schedule=schedule, generator=g)
    assert (res.subtokens != prime_tiny.codec.mask_id).all()
    assert int(res.tokens.max()) < 5  # no invalid id (≥ C) is ever produced
    assert tv(prime_tiny, res.tokens) < prime_tv_band(N)


def test_one_step_prime_sampler_is_rejected(prime_tiny, prime_tv_band):
    g = torch.Generator().manual_seed(12)
    res = sample_prime(prime_tiny.joint, codec=prime_tiny.codec, batch_size=N, seq_len=3,
                       method="mdm", steps=1, generator=g)
    assert tv(prime_tiny, res.tokens) > 5 * prime_tv_band(N)


def test_conditional_prime_sampling_keeps_observed_digits(prime_tiny, prime_tv_band):
    """Observe digit 0 of position 0 (= 1, i.e. token ∈ {3, 4}) and all of position 2 (= 0):
    samples keep them (carry-over) and follow the conditional distribution."""
    codec = prime_tiny.codec
    y0 = torch.full((N, 3, 2), codec.mask_id)
    y0[:, 0, 0] = 1
    y0[:, 2] = torch.tensor([0, 0])
    g = torch.Generator().manual_seed(13)
    res = sample_prime(prime_tiny.joint, codec=codec, batch_size=N, seq_len=3, steps=128,
                       generator=g, y_init=y0)
    assert (res.subtokens[:, 0, 0] == 1).all() and (res.tokens[:, 2] == 0).all()
    st = prime_tiny.states
    keep = ((st[:, 0] == 3) | (st[:, 0] == 4)) & (st[:, 2] == 0)
    cond = st[keep]
    p = prime_tiny.probs[prime_tiny.index(cond)]
    p = p / p.sum()
    emp = torch.stack([(res.tokens == c).all(-1).double().mean() for c in cond])
    assert 0.5 * float((emp - p).abs().sum()) < prime_tv_band(N)


def _z_scores(est_nelbo, est_stderr, logp):
    return (est_nelbo + logp) / est_stderr.clamp_min(1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_prime_nelbo_equals_neg_log_likelihood(prime_tiny, schedule):
    g = torch.Generator().manual_seed(21)
    x = prime_tiny.states  # every one of the 125 sequences
    den = prime_tiny.marginals
    est = prime_nelbo(den, x, codec=prime_tiny.codec, schedule=schedule, num_samples=256,
                      generator=g, max_batch=125 * 64)
    logp = prime_tiny.log_prob(x)
    z = _z_scores(est.nelbo, est.stderr, logp)
    assert est.num_tokens == 3
    # per sequence: no outlier beyond what 125 normal draws give; overall: mean z ≈ 0
    assert float(z.abs().max()) < 4.5, z
    assert abs(float(z.mean()) * math.sqrt(len(z))) < 4.0
    # the check has power: another distribution's exact denoiser gives, averaged under p,
    # NELBO − (−log p) ≥ KL(p ‖ other) > 0, far outside the MC error
    other = make_exact(5, 3, 2, seed=999)
    bad = prime_nelbo(other.marginals, x, codec=prime_tiny.codec, schedule=schedule,
                      num_samples=256, generator=g, max_batch=125 * 64)
    p = logp.exp()
    gap = float((p * (bad.nelbo + logp)).sum())
    se = float((p**2 * bad.stderr**2).sum().sqrt())
    assert gap / se > 20.0


def test_ell_1_nelbo_is_plain_mdm_nelbo(prime_tiny):
    """Same denoiser, same generator: the ℓ = 1 sub-token NELBO equals unmask.likelihood's."""
    tok = make_exact(5, 3, 1, seed=4321)  # the same distribution, ℓ = 1
    codec = SubTokenCodec(5, 1)
    x = tok.states
    a = prime_nelbo(SubTokenMarginals(tok.joint, codec), x, codec=codec, schedule="cosine",
                    num_samples=8, generator=torch.Generator().manual_seed(5))
    b = nelbo(tok, x, mask_id=5, schedule="cosine", num_samples=8,
              generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.nelbo, b.double(), atol=1e-6, rtol=1e-6)


def test_ell_1_sampler_is_plain_mdm_sampler():
    """ℓ = 1, fp64 Gumbel, same generator: bit-identical samples to unmask.sampling's mdm."""
    tok = make_exact(4, 4, 1, seed=3)
    codec = SubTokenCodec(4, 1)
    a = sample_prime(tok.joint, codec=codec, batch_size=500, seq_len=4, steps=16,
                     generator=torch.Generator().manual_seed(8), fp64_gumbel=True)
    b = sample(tok, batch_size=500, seq_len=4, mask_id=4, method="mdm", steps=16,
               generator=torch.Generator().manual_seed(8), fp64_gumbel=True)
    assert torch.equal(a.tokens, b)


@pytest.mark.parametrize("c,length,ell", [(16, 2, 2), (16, 2, 4), (8, 3, 3)])
def test_prime_nelbo_exact_when_digits_fill_the_vocabulary(c, length, ell):
    """The pixel case (C = b^ℓ, e.g. 256 = 16²): no invalid digit combination, so the filter
    removes nothing; the sub-token NELBO of the exact denoiser still equals −log p(x)."""
    tiny = make_exact(c, length, ell, seed=31)
    assert tiny.codec.base**ell == c
    x = tiny.states
    est = prime_nelbo(tiny.marginals, x, codec=tiny.codec, schedule="linear", num_samples=128,
                      generator=torch.Generator().manual_seed(3), max_batch=len(x) * 64)
    z = _z_scores(est.nelbo, est.stderr, tiny.log_prob(x))
    assert float(z.abs().max()) < 5.0, z
    assert abs(float(z.mean()) * math.sqrt(len(z))) < 4.0
