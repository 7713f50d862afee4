"""The MLP diffusion head of MAR / eMIGM: p_θ(x | z) for one continuous token x ∈ R^C given the
transformer's condition vector z at its position (MAR's "Diffusion Loss", which eMIGM adopts).

Noise schedule — the cosine schedule of improved DDPM (Nichol & Dhariwal 2021, eq. 17), T steps:

    ᾱ(t) = f(t) / f(0),  f(t) = cos²(((t/T) + s) / (1 + s) · π/2),  s = 0.008
    β_t = min(1 − ᾱ(t+1)/ᾱ(t), 0.999),   t = 0..T−1        (diffusers' ``squaredcos_cap_v2``)

Loss (MAR's diffusion loss, the ε-prediction "simple" loss; MAR additionally learns the
variance with the VLB term, which only matters for its DDPM sampler and is not used here):

    L(z, x) = E_{t ~ U{0..T−1}, ε ~ N(0, I)} ‖ε − ε_θ(√ᾱ_t x + √(1−ᾱ_t) ε | t, z)‖² / C

Network — MAR's ``SimpleMLPAdaLN``: x ↦ Linear → ``depth`` residual blocks
h ← h + g ⊙ MLP(LN(h)(1 + s) + b) with (b, s, g) = W(SiLU(emb(t) + W_z z)) → adaLN final layer.
Modulations and the output are zero-initialised, so ε_θ ≡ 0 at initialisation.

Sampling (x_T ~ N(0, τ²I), τ the temperature). Both samplers start at the last step t* whose
half log-SNR λ_t = log(√ᾱ_t/√(1−ᾱ_t)) is ≥ λ_min (default −5.1, diffusers' ``lambda_min_clipped``
advice for this schedule). Why: ε-prediction's data estimate x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t
amplifies the network's error by 1/√ᾱ_t — up to 2·10⁴ at t = T−1 (the 0.999 β cap) — and a
deterministic solver never corrects the resulting off-manifold points. The price of a larger
λ_min is starting from N(0, I) where the true marginal has variance ᾱ_t·Var(x_0) + 1 − ᾱ_t
(e.g. λ_min = −2: √ᾱ_t ≈ 0.13). A small head trained for minutes on a CPU needs λ_min ≈ −2 for
DPM-Solver++ (measured on the 2-D toy of ``tests/emigm``: at −5.1 a few samples run off to
|x| ≈ 60, at −2 none do); DDPM's injected noise tolerates −5.1.

* ``ddpm``: ancestral sampling (DDPM Algorithm 2) on an evenly respaced subset of 0..t* (iDDPM's
  respacing, what MAR's ``num_sampling_steps`` selects) with the fixed posterior variance β̃;
  with ``steps = t* + 1`` it is the exact discretisation the loss trains. The reference.
* ``dpm-solver++``: diffusers' ``DPMSolverMultistepScheduler`` (DPM-Solver++ multistep, Lu et al.
  2022) on the same β's — a deterministic ODE solver; eMIGM samples its head with DPM-Solver in
  a handful of steps.

Classifier-free guidance on the head (MAR / eMIGM): ε = ε_u + (1 + w)(ε_c − ε_u), the package's
convention (unmask.sampling.common: w = 0 is no guidance; MAR's ``cfg`` is 1 + w), with ε_u
computed from the unconditional condition vector z_∅.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from unmask.models.transformer import TimestepEmbedder

__all__ = ["cosine_betas", "respace", "last_timestep", "LAMBDA_MIN", "SimpleMLPAdaLN",
           "DiffusionHead", "HEAD_SAMPLERS"]

HEAD_SAMPLERS = ("dpm-solver++", "ddpm")
LAMBDA_MIN = -5.1


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """β_0..β_{T−1} of the improved-DDPM cosine schedule (float64)."""

    def f(t: float) -> float:
        return math.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f(i + 1) / f(i), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def respace(num_timesteps: int, steps: int) -> Tensor:
    """Evenly spaced timesteps S_0 < … < S_{n−1} of 0..T−1 (iDDPM's ``space_timesteps`` with one
    section: first and last step kept)."""
    t = num_timesteps
    if not 1 <= steps <= t:
        raise ValueError(f"head steps must be in 1..{t}, got {steps}")
    if steps == 1:
        return torch.tensor([t - 1])
    stride = (t - 1) / (steps - 1)
    return torch.tensor(sorted({round(i * stride) for i in range(steps)}))


def last_timestep(alphas_cumprod: Tensor, lambda_min: float) -> int:
    """The largest t whose half log-SNR λ_t = log(√ᾱ_t / √(1 − ᾱ_t)) is ≥ ``lambda_min``."""
    lam = 0.5 * (torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod))
    return int(torch.nonzero(lam >= lambda_min).max())


class _ResBlock(nn.Module):
    """h ← h + g ⊙ MLP(LN(h)(1 + s) + b), (b, s, g) from the conditioning y."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale, gate = self.ada(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.in_ln(x) * (1 + scale) + shift)


class SimpleMLPAdaLN(nn.Module):
    """ε_θ(x_t | t, z): MAR's residual AdaLN MLP (see the module docstring).

    Args:
        in_channels: C, the token dimension. cond_dim: dimension of z.
        width, depth: hidden width and number of residual blocks.
        num_timesteps: T (the integer step t is embedded as the sinusoid of t, like MAR's).
    """

    def __init__(self, in_channels: int, cond_dim: int, width: int, depth: int,
                 num_timesteps: int = 1000) -> None:
        super().__init__()
        self.num_timesteps = num_timesteps
        self.time_embed = TimestepEmbedder(width)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.input_proj = nn.Linear(in_channels, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.final = nn.Linear(width, in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAR's initialisation: Xavier linears, N(0, 0.02) time MLP, zero adaLN and output."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.time_embed.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for lin in [b.ada[-1] for b in self.blocks] + [self.final_ada[-1], self.final]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """ε̂ (N, C) for noisy tokens x (N, C) at integer steps t (N,) under conditions z."""
        # TimestepEmbedder embeds 1000·τ: τ = t / 1000 gives MAR's sinusoid of the integer t.
        y = self.time_embed(t.float() / 1000.0) + self.cond_embed(z)
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, y)
        shift, scale = self.final_ada(y).chunk(2, dim=-1)
        return self.final(self.final_norm(h) * (1 + scale) + shift)


class DiffusionHead(nn.Module):
    """Denoising loss and samplers of p_θ(x | z) (see the module docstring).

    Args:
        token_dim: C. cond_dim: dimension of the condition vectors z.
        width, depth: the MLP. num_timesteps: T of the cosine schedule.
    """

    def __init__(self, token_dim: int, cond_dim: int, width: int = 1024, depth: int = 3,
                 num_timesteps: int = 1000) -> None:
        super().__init__()
        self.token_dim, self.num_timesteps = token_dim, num_timesteps
        self.net = SimpleMLPAdaLN(token_dim, cond_dim, width, depth, num_timesteps)
        # Plain float64 CPU tensors, not buffers: a function of num_timesteps, never trained or
        # checkpointed (and the foundation's EMA copies every named buffer).
        self.betas = cosine_betas(num_timesteps)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0)

    # -- training --------------------------------------------------------------------------------
    def loss(self, x0: Tensor, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Per-token loss (N,): ‖ε − ε_θ(x_t | t, z)‖² / C at one random (t, ε) per token."""
        n = x0.shape[0]
        t = torch.randint(0, self.num_timesteps, (n,), generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        ab = self.alphas_cumprod.to(x0.device, x0.dtype)[t][:, None]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        return (eps - self.net(x_t, t, z)).pow(2).mean(-1)

    # -- sampling --------------------------------------------------------------------------------
    def eps(self, x: Tensor, t: int | Tensor, z: Tensor, z_uncond: Tensor | None = None,
            guidance: float | Tensor = 0.0) -> Tensor:
        """ε̂ at step t, guided: ε_u + (1 + w)(ε_c − ε_u) when ``z_uncond`` is given and w ≠ 0
        (``guidance``: a float, or (N, 1) per token, e.g. eMIGM's linear CFG schedule)."""
        tt = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        if z_uncond is None or (not isinstance(guidance, Tensor) and guidance == 0.0):
            return self.net(x, tt, z)
        out = self.net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([z, z_uncond]))
        e_c, e_u = out.chunk(2)
        return e_u + (1.0 + guidance) * (e_c - e_u)

    def t_start(self, lambda_min: float = LAMBDA_MIN) -> int:
        """t*: the first (noisiest) step both samplers take (see the module docstring)."""
        return last_timestep(self.alphas_cumprod.double().cpu(), lambda_min)

    @torch.no_grad()
    def sample(
        self,
        z: Tensor,
        *,
        z_uncond: Tensor | None = None,
        guidance: float | Tensor = 0.0,
        sampler: str = "dpm-solver++",
        steps: int = 8,
        order: int = 2,
        temperature: float = 1.0,
        lambda_min: float = LAMBDA_MIN,
        generator: torch.Generator | None = None,
        x_T: Tensor | None = None,
    ) -> Tensor:
        """Draw one token (N, C) per condition vector in ``z`` (N, D).

        Args:
            z_uncond, guidance: CFG (see :meth:`eps`).
            sampler: ``dpm-solver++`` or ``ddpm``; steps: solver / respaced DDPM steps.
            order: DPM-Solver++ order. temperature: τ (scales x_T; for ``ddpm`` also each
                step's noise, as MAR does).
            lambda_min: the half log-SNR of the first step (see the module docstring).
            x_T: optional initial noise (N, C) (before the temperature), e.g. to compare
                solvers on the same draws.
        """
        if sampler not in HEAD_SAMPLERS:
            raise ValueError(f"unknown head sampler {sampler!r}; valid: {', '.join(HEAD_SAMPLERS)}")
        n, dev = z.shape[0], z.device
        if x_T is None:
            x_T = torch.randn((n, self.token_dim), generator=generator, device=dev)
        x = x_T.to(dev, torch.float32) * temperature
        if sampler == "ddpm":
            return self._ddpm(x, z, z_uncond, guidance, steps, temperature, lambda_min,
                              generator)
        return self._dpm_solver(x, z, z_uncond, guidance, steps, order, lambda_min)

    def _ddpm(self, x: Tensor, z: Tensor, zu: Tensor | None, w: float | Tensor, steps: int,
              temperature: float, lambda_min: float, generator: torch.Generator | None
              ) -> Tensor:
        ab_all = self.alphas_cumprod.double().cpu()
        ts = respace(self.t_start(lambda_min) + 1, steps)
        ab = ab_all[ts]
        ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
        beta = 1 - ab / ab_prev
        var = beta * (1 - ab_prev) / (1 - ab)  # β̃, the fixed-small posterior variance
        c0 = beta * ab_prev.sqrt() / (1 - ab)  # posterior mean = c0 x̂_0 + ct x_t
        ct = (1 - ab_prev) * (1 - beta).sqrt() / (1 - ab)
        for i in range(len(ts) - 1, -1, -1):
            e = self.eps(x, int(ts[i]), z, zu, w)
            x0 = (x - float((1 - ab[i]).sqrt()) * e) / float(ab[i].sqrt())
            x = float(c0[i]) * x0 + float(ct[i]) * x
            if i > 0:
                noise = torch.randn(x.shape, generator=generator, device=x.device)
                x = x + float(var[i].sqrt()) * temperature * noise
        return x

    def _dpm_solver(self, x: Tensor, z: Tensor, zu: Tensor | None, w: float | Tensor, steps: int,
                    order: int, lambda_min: float) -> Tensor:
        from diffusers import DPMSolverMultistepScheduler

        sched = DPMSolverMultistepScheduler(
            num_train_timesteps=self.num_timesteps,
            trained_betas=np.asarray(self.betas.double().cpu()),
            solver_order=order, prediction_type="epsilon", algorithm_type="dpmsolver++",
            lower_order_final=True, final_sigmas_type="zero", lambda_min_clipped=lambda_min,
        )
        sched.set_timesteps(steps, device=x.device)
        for t in sched.timesteps:
            e = self.eps(x, int(t), z, zu, w)
            x = sched.step(e, t, x).prev_sample
        return x
