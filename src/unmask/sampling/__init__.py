"""Samplers for masked discrete generative models.

``sample(denoiser, ...)`` runs one of

* ``euler``          — DI Algorithm 1 (Euler step of the reverse CTMC, final argmax);
* ``mdm``            — eMIGM eq. 6 (the masked path's exact step marginal, "ancestral");
* ``maskgit``        — confidence-ordered unmasking with annealed Gumbel noise (MaskGIT);
* ``first_hitting``  — exact simulation, one token per network evaluation (``steps`` unused);

all under one interface: temperature and top-p on the logits, classifier-free guidance with a
``constant`` / ``linear`` / ``interval`` schedule, ``x_init`` for conditional generation
(its non-mask positions stay fixed), and optional trajectories for chain figures.

Network evaluations are skipped when they cannot change the result: an ``euler``/``mdm`` step
that selects no token needs no logits (for any model), and an implicit-timestep denoiser
(``time_conditioned = False``) is not re-run on an unchanged state. Samples are bit-identical
to ``cache=False`` with the same generator; ``nfe`` counts the evaluations actually run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unmask.sampling.common import Evaluator, Guidance, GuidanceSchedule, process_logits
from unmask.sampling.first_hitting import first_hitting_step, next_hitting_time
from unmask.sampling.grid import grid_step, unmask_probability
from unmask.sampling.maskgit import maskgit_step
from unmask.schedules import Schedule
from unmask.schedules import get as get_schedule

__all__ = ["METHODS", "SampleResult", "sample", "sample_with_info", "process_logits", "Guidance"]

METHODS = ("euler", "mdm", "maskgit", "first_hitting")


@dataclass
class SampleResult:
    """Output of :func:`sample_with_info`.

    Attributes:
        tokens: (B, L) samples, no mask id left.
        nfe: network evaluations run (an unconditional CFG pass counts as one).
        steps: sampler steps taken.
        guided_steps: steps that used guidance (eMIGM's NFE label: ``nfe_label``).
        idle_steps: (B,) per row, steps in which the row did not change.
        seconds: wall time.
        trajectory: (S+1, B, L) states after each step (with ``return_trajectory``), else None.
        times: (S+1,) the time of each trajectory state (first_hitting: of row 0).
    """

    tokens: Tensor
    nfe: int
    steps: int
    guided_steps: int
    nfe_label: str
    idle_steps: Tensor
    seconds: float
    trajectory: Tensor | None = None
    times: Tensor | None = None

    @property
    def idle_step_ratio(self) -> float:
        """MDM-Prime's idle-step ratio: the fraction of steps that leave a sequence unchanged
        (averaged over the batch)."""
        return float(self.idle_steps.float().mean() / max(self.steps, 1))


def _check_init(x_init: Tensor | None, batch_size: int, seq_len: int, mask_id: int,
                device: torch.device | str | None) -> Tensor:
    if x_init is None:
        return torch.full((batch_size, seq_len), mask_id, dtype=torch.long, device=device)
    if x_init.shape != (batch_size, seq_len):
        raise ValueError(
            f"x_init has shape {tuple(x_init.shape)}, expected (batch_size, seq_len) = "
            f"({batch_size}, {seq_len})"
        )
    if x_init.dtype != torch.long or bool((x_init < 0).any() | (x_init > mask_id).any()):
        raise ValueError(f"x_init must be int64 ids in [0, mask_id={mask_id}]")
    return x_init.clone()


def sample_with_info(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    *,
    batch_size: int,
    seq_len: int,
    mask_id: int,
    method: str = "mdm",
    steps: int = 32,
    schedule: Schedule | str = "linear",
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    x_init: Tensor | None = None,
    cfg_scale: float = 0.0,
    cfg_schedule: GuidanceSchedule = "constant",
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    uncond_denoiser: Callable[[Tensor, Tensor], Tensor] | None = None,
    choice_temperature: float = 4.5,
    final_argmax: bool = True,
    fp64_gumbel: bool = False,
    cache: bool = True,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> SampleResult:
    """Sample (B, L) token sequences; see :func:`sample` for the arguments."""
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; valid methods: {', '.join(METHODS)}")
    if method != "first_hitting" and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    process_logits(torch.zeros(1), temperature, top_p)  # validates temperature and top_p
    if isinstance(schedule, str):
        schedule = get_schedule(schedule)
    if device is None and x_init is not None:
        device = x_init.device
    x = _check_init(x_init, batch_size, seq_len, mask_id, device)
    dev = x.device
    ev = Evaluator(denoiser, Guidance(cfg_scale, cfg_schedule, tuple(cfg_interval)),
                   uncond_denoiser, cache=cache)
    vocab = mask_id

    def logits_at(xx: Tensor, tt: Tensor) -> Tensor:
        out = ev(xx, tt)
        if out.shape != (*xx.shape, vocab):
            raise ValueError(
                f"denoiser returned logits of shape {tuple(out.shape)}, expected "
                f"(B, L, V) = {(*xx.shape, vocab)} (V clean tokens, mask id {mask_id} excluded)"
            )
        return out

    traj = [x.clone()] if return_trajectory else None
    times = [0.0]
    idle = torch.zeros(batch_size, dtype=torch.long, device=dev)
    n_steps = 0
    start = time.perf_counter()

    if method == "first_hitting":
        t = torch.zeros(batch_size, dtype=torch.float64, device=dev)
        total = int((x == mask_id).sum(-1).max())
        for _ in tqdm(range(total), disable=not progress, desc="first_hitting", leave=False):
            masked = x == mask_id
            m = masked.sum(-1)
            if not bool(m.any()):
                break
            t = torch.where(m > 0, next_hitting_time(t, m, schedule, generator), t)
            logits = logits_at(x, t.float())
            x = first_hitting_step(x, masked, logits, temperature=temperature, top_p=top_p,
                                   generator=generator, fp64=fp64_gumbel)
            n_steps += 1
            idle += (m == 0).long()
            if traj is not None:
                traj.append(x.clone())
                times.append(float(t[0]))
    else:
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
        n_init = (x == mask_id).sum(-1)
        for k in tqdm(range(steps), disable=not progress, desc=method, leave=False):
            t, s = grid[k], grid[k + 1]
            masked = x == mask_id
            if not bool(masked.any()):
                idle += 1
                n_steps += 1
                continue
            tt = torch.full((batch_size,), t, device=dev)
            prev = x
            if method == "maskgit":
                x = maskgit_step(
                    x, masked, logits_at(x, tt), k=k, steps=steps, num_initially_masked=n_init,
                    schedule=schedule, mask_id=mask_id, temperature=temperature, top_p=top_p,
                    choice_temperature=choice_temperature, generator=generator,
                    fp64=fp64_gumbel,
                )
            else:
                eager = None if cache else logits_at(x, tt)

                def lazy(xx=x, tt=tt, e=eager):
                    return logits_at(xx, tt) if e is None else e

                x = grid_step(
                    x, masked, lazy,
                    unmask_probability(method, schedule, t, s), mask_id=mask_id,
                    last=k == steps - 1, final_argmax=final_argmax, temperature=temperature,
                    top_p=top_p, generator=generator, fp64=fp64_gumbel,
                )
            idle += (x == prev).all(-1).long()
            n_steps += 1
            if traj is not None:
                traj.append(x.clone())
                times.append(s)

    return SampleResult(
        tokens=x,
        nfe=ev.nfe,
        steps=n_steps,
        guided_steps=ev.guided_steps,
        nfe_label=ev.nfe_label,
        idle_steps=idle,
        seconds=time.perf_counter() - start,
        trajectory=torch.stack(traj) if traj is not None else None,
        times=torch.tensor(times) if traj is not None else None,
    )


def sample(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    *,
    batch_size: int,
    seq_len: int,
    mask_id: int,
    method: str = "mdm",
    steps: int = 32,
    schedule: Schedule | str = "linear",
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    **kwargs,
) -> Tensor | tuple[Tensor, Tensor]:
    """Sample B sequences of L tokens from a denoiser.

    Args:
        denoiser: ``denoiser(x_t (B, L), t (B,)) -> logits (B, L, V)``, V = ``mask_id``.
        batch_size, seq_len: B and L.
        mask_id: the mask token id (= V, the clean vocabulary size).
        method: ``euler`` | ``mdm`` | ``maskgit`` | ``first_hitting``.
        steps: number of time steps N on the uniform grid (unused by ``first_hitting``).
        schedule: κ schedule (object or registry name). For ``maskgit`` it is the mask
            schedule (``cosine`` gives MaskGIT's).
        temperature, top_p: applied to the (guided) logits before every draw.
        generator: torch.Generator for reproducible draws.
        return_trajectory: also return the (S+1, B, L) states after each step.
        **kwargs: ``x_init`` (B, L) with fixed clean positions; ``cfg_scale``, ``cfg_schedule``
            (``constant`` | ``linear`` | ``interval``), ``cfg_interval`` (t_lo, t_hi),
            ``uncond_denoiser``; ``choice_temperature`` (maskgit, default 4.5);
            ``final_argmax`` (euler, default True); ``fp64_gumbel``; ``cache``; ``device``;
            ``progress`` — see :func:`sample_with_info`.

    Returns:
        LongTensor (B, L) with no mask id left, or ``(tokens, trajectory)``.
    """
    res = sample_with_info(
        denoiser, batch_size=batch_size, seq_len=seq_len, mask_id=mask_id, method=method,
        steps=steps, schedule=schedule, temperature=temperature, top_p=top_p,
        generator=generator, return_trajectory=return_trajectory, **kwargs,
    )
    return (res.tokens, res.trajectory) if return_trajectory else res.tokens
