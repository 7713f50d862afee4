"""eMIGM's sampler: the MDM reverse process with CFG on eMIGM's time interval (eMIGM eq. 6, §5.3).

:func:`sample_discrete` samples token ids from an :class:`~unmask.emigm.mae.MAE` and
:func:`sample_emigm` samples either branch (discrete, or continuous through
:func:`unmask.emigm.continuous.sample_continuous`) and decodes to images.

The discrete loop is built from the foundation's grid-sampler steps (π_k of ``mdm``, the jump
draw, the categorical draw: :mod:`unmask.sampling.grid`) rather than
:func:`unmask.sampling.sample_with_info`, because eMIGM's ``linear`` CFG weight depends on the
tokens unmasked *after* the step, per row, which the foundation's time-only guidance schedules
cannot express (:func:`unmask.emigm.objective.emigm_cfg_weights`). Guidance is the package's
convention, (1 + w)·cond − w·uncond with w = eMIGM's scale − 1, using the mask token as the
null condition (eMIGM's "CFG with mask").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from unmask import schedules
from unmask.emigm.continuous import ContinuousMAE, nfe_label, sample_continuous
from unmask.emigm.mae import MAE
from unmask.emigm.objective import emigm_cfg_weights, sampler_setup
from unmask.emigm.params import EMIGMParams
from unmask.models import ConditionedDenoiser
from unmask.sampling.grid import grid_step, jump_sets, unmask_probabilities

__all__ = ["DiscreteSample", "sample_discrete", "Samples", "sample_emigm"]


@dataclass
class DiscreteSample:
    """Output of :func:`sample_discrete`: ``tokens`` (B, L); ``nfe`` counts network passes (a
    guided step 2), ``steps`` the steps that ran the network, ``guided_steps`` those guided."""

    tokens: Tensor
    nfe: int
    steps: int
    guided_steps: int
    nfe_label: str


@torch.no_grad()
def sample_discrete(
    model: MAE,
    y: Tensor | None,
    *,
    batch_size: int | None = None,
    steps: int = 16,
    schedule: schedules.Schedule | str = "exp",
    cfg_scale: float = 0.0,
    cfg_schedule: str = "constant",
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> DiscreteSample:
    """(B, L) token ids by eMIGM's MDM sampler on the grid t_k = k/N.

    Args:
        y: (B,) labels (None: unconditional, B = ``batch_size``).
        cfg_scale: w (package convention; eMIGM's scale − 1). cfg_schedule: ``constant`` |
            ``linear``. cfg_interval: eMIGM's mask-time interval (a, b] of guided step ends.
    """
    cfg = model.cfg
    schedule, batch_size, guided_ks = sampler_setup(cfg.num_classes, y, batch_size, schedule,
                                                    steps, cfg_scale, cfg_interval)
    dev = next(model.parameters()).device
    den = ConditionedDenoiser(model, y.to(dev) if y is not None else None)
    x = torch.full((batch_size, cfg.length), cfg.mask_id, dtype=torch.long, device=dev)
    probs = unmask_probabilities("mdm", schedule, steps)  # π = 1 at the last step
    tt = torch.empty(batch_size, device=dev)
    nfe = evals = guided = 0
    for k in tqdm(range(steps), disable=not progress, desc="eMIGM sample", leave=False):
        masked = x == cfg.mask_id
        jump, _, rows = jump_sets(masked, probs[k], last_argmax=False, generator=generator)
        if not bool(rows.any()):
            continue  # no token changes: no network call
        tt.fill_(k / steps)
        if k in guided_ks:
            cond, uncond = den.cond_and_uncond(x, tt)
            w = emigm_cfg_weights(cfg_scale, cfg_schedule, masked & ~jump)[:, None, None]
            logits = cond + w * (cond - uncond)
            nfe, guided = nfe + 2, guided + 1
        else:
            logits = den(x, tt)
            nfe += 1
        evals += 1
        grid_step(x, jump, None, logits, temperature=temperature, top_p=1.0, generator=generator)
    return DiscreteSample(x, nfe, evals, guided, nfe_label(evals, guided))


@dataclass
class Samples:
    """Decoded samples of :func:`sample_emigm` with their cost (``nfe`` summed over batches,
    ``nfe_label`` eMIGM's per-batch notation, e.g. 16×1.5)."""

    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray
    seconds: float
    seconds_per_image: float
    nfe: int
    nfe_label: str


def sample_emigm(
    model: MAE | ContinuousMAE,
    decode: Any,
    labels: torch.Tensor,
    params: EMIGMParams,
    *,
    batch_size: int = 250,
    progress: bool = False,
) -> Samples:
    """Class-conditional samples (``labels``) decoded by ``decode`` (token ids (N, h, w) or
    latents (N, C, h, w) → uint8 images), with the ``sample`` section's sampler and CFG."""
    s, cfg = params.sample, model.cfg
    section = params.discrete if isinstance(model, MAE) else params.continuous
    schedule = schedules.get(section.train_config(params.objective).schedule)
    guide = dict(cfg_scale=s.cfg_scale, cfg_schedule=s.cfg_schedule, cfg_interval=s.cfg_interval)
    gen = torch.Generator().manual_seed(s.seed)
    h, wd = cfg.grid
    images, nfe, steps, guided = [], 0, 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            y = labels[i : i + batch_size]
            if isinstance(model, MAE):
                res = sample_discrete(model, y, steps=s.steps, schedule=schedule,
                                      temperature=s.temperature, generator=gen,
                                      progress=progress, **guide)
                images.append(decode(res.tokens.reshape(-1, h, wd)))
            else:
                res = sample_continuous(
                    model, y, steps=s.steps, schedule=schedule, temperature=s.temperature,
                    head_sampler=s.head_sampler, head_steps=s.head_steps, generator=gen,
                    progress=progress, **guide)
                images.append(decode(res.tokens.reshape(len(y), h, wd, -1).permute(0, 3, 1, 2)))
            nfe, steps, guided = nfe + res.nfe, steps + res.steps, guided + res.guided_steps
    seconds = time.perf_counter() - start
    n_batches = -(-len(labels) // batch_size)
    label = nfe_label(round(steps / n_batches), round(guided / n_batches))
    return Samples(np.concatenate(images), labels.numpy(), seconds, seconds / len(labels), nfe,
                   label)
