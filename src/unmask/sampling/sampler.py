"""The sampler behind :func:`unmask.sampling.sample`: one loop for every method in
:data:`unmask.sampling.METHODS`, with per-row evaluation caching (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unmask.sampling import METHODS
from unmask.sampling.common import (
    Evaluator,
    Guidance,
    GuidanceSchedule,
    check_sampler_args,
)
from unmask.sampling.first_hitting import first_hitting_step, next_hitting_time
from unmask.sampling.grid import grid_step, jump_sets, unmask_probabilities
from unmask.sampling.maskgit import maskgit_keep_masked, maskgit_step
from unmask.schedules import Schedule

__all__ = ["SampleResult", "sample", "sample_with_info"]


@dataclass
class SampleResult:
    """Output of :func:`sample_with_info`.

    Attributes:
        tokens: (B, L) samples, no mask id left.
        nfe: network evaluations per sequence, the max over rows (an unconditional CFG pass
            counts as one); with per-row caching rows need different numbers.
        nfe_mean: the batch mean of the per-row evaluations.
        forward_calls: batched network calls (sub-batches included).
        rows_evaluated: rows those calls processed (CFG doubling and padding included).
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
    nfe_mean: float = 0.0
    forward_calls: int = 0
    rows_evaluated: int = 0

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
    schedule = check_sampler_args(method, METHODS, steps, temperature, top_p, schedule)
    if device is None and x_init is not None:
        device = x_init.device
    x = _check_init(x_init, batch_size, seq_len, mask_id, device)
    dev = x.device
    ev = Evaluator(denoiser, Guidance(cfg_scale, cfg_schedule, tuple(cfg_interval)),
                   uncond_denoiser, cache=cache)
    vocab = mask_id

    def logits_at(xx: Tensor, tt: Tensor, rows: Tensor | None = None,
                  t_scalar: float | None = None) -> Tensor:
        out = ev(xx, tt, rows, t_scalar)
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
            logits = logits_at(x, t.float(), (m > 0) if cache else None)
            x = first_hitting_step(x, masked, logits, temperature=temperature, top_p=top_p,
                                   generator=generator, fp64=fp64_gumbel)
            n_steps += 1
            idle += (m == 0).long()
            if traj is not None:
                traj.append(x.clone())
                times.append(float(t[0]))
    else:
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64).tolist()
        if method == "maskgit":
            keep = maskgit_keep_masked(schedule, steps)
        else:
            probs = unmask_probabilities(method, schedule, steps)
        n_init = (x == mask_id).sum(-1)
        tt = torch.empty(batch_size, device=dev)
        for k in tqdm(range(steps), disable=not progress, desc=method, leave=False):
            masked = x == mask_id
            eager = not cache and bool(masked.any())
            if method == "maskgit":
                rows, jump, leftover = masked.any(-1), None, None
            else:
                last_argmax = method == "euler" and final_argmax and k == steps - 1
                jump, leftover, rows = jump_sets(masked, probs[k], last_argmax=last_argmax,
                                                 generator=generator)
            prev = x.clone() if method == "maskgit" else None
            if not cache:  # the reference run: every row, every step with a masked token
                logits = logits_at(x, tt.fill_(grid[k]), None, grid[k]) if eager else None
            if bool(rows.any()):  # else: no token can change, no logits needed
                if cache:
                    logits = logits_at(x, tt.fill_(grid[k]), rows, grid[k])
                if method == "maskgit":
                    maskgit_step(
                        x, masked, logits, k=k, steps=steps, num_initially_masked=n_init,
                        keep_masked=keep[k], mask_id=mask_id, temperature=temperature,
                        top_p=top_p, choice_temperature=choice_temperature,
                        generator=generator, fp64=fp64_gumbel,
                    )
                else:
                    grid_step(x, jump, leftover, logits, temperature=temperature, top_p=top_p,
                              generator=generator, fp64=fp64_gumbel)
            idle += ~rows if prev is None else (x == prev).all(-1)
            n_steps += 1
            if traj is not None:
                traj.append(x.clone())
                times.append(grid[k + 1])

    return SampleResult(
        tokens=x,
        nfe=ev.nfe,
        nfe_mean=ev.nfe_mean,
        forward_calls=ev.forward_calls,
        rows_evaluated=ev.rows_evaluated,
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
            ``final_argmax`` (euler, default True); ``fp64_gumbel`` (draws in float64);
            ``cache`` (default True: per-row idle-step cache for ITM models and evaluation of
            only the rows that change; False: every row at every step, the reference run);
            ``device``; ``progress`` — see :func:`sample_with_info`.

    Returns:
        LongTensor (B, L) with no mask id left, or ``(tokens, trajectory)``.
    """
    res = sample_with_info(
        denoiser, batch_size=batch_size, seq_len=seq_len, mask_id=mask_id, method=method,
        steps=steps, schedule=schedule, temperature=temperature, top_p=top_p,
        generator=generator, return_trajectory=return_trajectory, **kwargs,
    )
    return (res.tokens, res.trajectory) if return_trajectory else res.tokens
