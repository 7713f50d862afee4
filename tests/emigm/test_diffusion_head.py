"""The MLP diffusion head: schedule, samplers against an exact denoiser, and a trained head on a
known 2-D mixture of Gaussians (moments + energy-distance permutation tests)."""

from __future__ import annotations

import math

import pytest
import torch
from emigm_stats import energy_test
from torch import nn

from unmask.emigm.diffusion_head import DiffusionHead, cosine_betas, last_timestep, respace

# -- a conditional 2-D mixture: condition 0 = four corners, condition 1 = two side blobs -------
CENTERS = {0: torch.tensor([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]]),
           1: torch.tensor([[-1.5, 0.0], [1.5, 0.0]])}
SIGMA = 0.3
COND_DIM = 4


def mog(c: int, n: int, g: torch.Generator) -> torch.Tensor:
    centers = CENTERS[c]
    comp = torch.randint(0, len(centers), (n,), generator=g)
    return centers[comp] + SIGMA * torch.randn(n, 2, generator=g)


def cond(c: int, n: int) -> torch.Tensor:
    z = torch.zeros(n, COND_DIM)
    z[:, c] = 1.0
    return z


def mog_moments(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    centers = CENTERS[c]
    mean = centers.mean(0)
    cov = ((centers - mean).T @ (centers - mean)) / len(centers) + SIGMA**2 * torch.eye(2)
    return mean, cov


@pytest.fixture(scope="module")
def trained_head() -> DiffusionHead:
    """Head trained on both conditions (~10 s on one thread)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    head = DiffusionHead(2, COND_DIM, width=64, depth=2)
    steps, batch = 1600, 256
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    for _ in range(steps):
        x = torch.cat([mog(0, batch // 2, g), mog(1, batch // 2, g)])
        z = torch.cat([cond(0, batch // 2), cond(1, batch // 2)])
        loss = head.loss(x, z, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return head.eval()


class _ExactGaussianEps(nn.Module):
    """ε*(x_t, t) = E[ε | x_t] for data N(μ, s²I): (x_t − √ᾱ μ)√(1−ᾱ) / (ᾱ s² + 1 − ᾱ)."""

    def __init__(self, alphas_cumprod: torch.Tensor, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.ab, self.mu, self.s = alphas_cumprod.float(), mu, s

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ab = self.ab[t][:, None]
        return (x - ab.sqrt() * self.mu) * (1 - ab).sqrt() / (ab * self.s**2 + 1 - ab)


def test_cosine_betas_match_diffusers_squaredcos():
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas.double()
    assert torch.allclose(cosine_betas(1000), ref, atol=1e-7)


def test_respace_keeps_ends_and_count():
    ts = respace(995, 50)
    assert len(ts) == 50 and int(ts[0]) == 0 and int(ts[-1]) == 994
    assert bool((ts[1:] > ts[:-1]).all())
    ab = torch.cumprod(1 - cosine_betas(1000), 0)
    t = last_timestep(ab, -5.1)
    lam = 0.5 * torch.log(ab / (1 - ab))
    assert lam[t] >= -5.1 > lam[t + 1]


@pytest.mark.parametrize(("sampler", "steps"), [("ddpm", 200), ("dpm-solver++", 10)])
def test_samplers_with_exact_denoiser_hit_the_gaussian(sampler, steps):
    head = DiffusionHead(2, 1, width=8, depth=1)
    mu, s = torch.tensor([1.0, -2.0]), 0.5
    head.net = _ExactGaussianEps(head.alphas_cumprod, mu, s)
    g = torch.Generator().manual_seed(0)
    x = head.sample(torch.zeros(6000, 1), sampler=sampler, steps=steps, generator=g)
    assert torch.allclose(x.mean(0), mu, atol=0.04)
    assert torch.allclose(x.std(0), torch.full((2,), s), atol=0.04)


def test_guidance_extrapolates_between_conditions():
    """ε_u + (1 + w)(ε_c − ε_u) with exact Gaussian denoisers: mean moves past μ_c for w > 0."""
    head = DiffusionHead(1, 1, width=8, depth=1)
    ab = head.alphas_cumprod
    e_c = _ExactGaussianEps(ab, torch.tensor([1.0]), 0.3)
    e_u = _ExactGaussianEps(ab, torch.tensor([0.0]), 0.3)

    class Both(nn.Module):
        def forward(self, x, t, z):
            return torch.where(z > 0, e_c(x, t, z), e_u(x, t, z))

    head.net = Both()
    g = torch.Generator().manual_seed(0)
    n = 3000
    plain = head.sample(torch.ones(n, 1), steps=10, generator=g)
    guided = head.sample(torch.ones(n, 1), z_uncond=torch.zeros(n, 1), guidance=1.0, steps=10,
                         generator=g)
    assert abs(float(plain.mean()) - 1.0) < 0.03
    assert float(guided.mean()) > 1.5


def test_untrained_head_predicts_zero_noise():
    head = DiffusionHead(3, 5, width=16, depth=2)
    out = head.net(torch.randn(4, 3), torch.tensor([0, 10, 500, 999]), torch.randn(4, 5))
    assert torch.equal(out, torch.zeros(4, 3))  # MAR's zero init of adaLN and output


@pytest.mark.parametrize("c", [0, 1])
def test_trained_head_samples_the_mixture(trained_head, c):
    g = torch.Generator().manual_seed(10 + c)
    n = 400
    target = mog(c, n, g)
    mean, cov = mog_moments(c)
    for sampler, steps, lam in (("ddpm", 250, -5.1), ("dpm-solver++", 10, -2.0)):
        x = trained_head.sample(cond(c, n), sampler=sampler, steps=steps, lambda_min=lam,
                                generator=g)
        assert torch.allclose(x.mean(0), mean, atol=0.2), (sampler, x.mean(0))
        assert torch.allclose(torch.cov(x.T), cov, atol=0.35), (sampler, torch.cov(x.T))
        _, p = energy_test(x, target)
        assert p > 0.01, (sampler, p)


def test_energy_test_rejects_wrong_samples(trained_head):
    """The two-sample test has power: the other condition's samples and an untrained head's
    samples are rejected."""
    g = torch.Generator().manual_seed(3)
    n = 400
    target = mog(0, n, g)
    other = trained_head.sample(cond(1, n), steps=10, lambda_min=-2.0, generator=g)
    assert energy_test(other, target)[1] < 0.01
    fresh = DiffusionHead(2, COND_DIM, width=64, depth=2)
    assert energy_test(fresh.sample(cond(0, n), steps=10, generator=g), target)[1] < 0.01


def test_few_step_dpm_solver_approaches_many_step_ddpm(trained_head):
    g = torch.Generator().manual_seed(4)
    n = 400
    z = cond(0, n)
    ddpm = trained_head.sample(z, sampler="ddpm", steps=500, lambda_min=-2.0, generator=g)
    x_T = torch.randn(n, 2, generator=g)
    ode = {k: trained_head.sample(z, steps=k, lambda_min=-2.0, x_T=x_T) for k in (2, 10, 40)}
    # Same law as the stochastic many-step reference ...
    _, p = energy_test(ode[10], ddpm)
    assert p > 0.01
    # ... and the few-step ODE solution converges: 10 steps is far closer to 40 than 2 steps is.
    err10 = (ode[10] - ode[40]).norm(dim=-1).mean()
    err2 = (ode[2] - ode[40]).norm(dim=-1).mean()
    assert err10 < 0.1 and err10 < 0.3 * err2, (float(err10), float(err2))
