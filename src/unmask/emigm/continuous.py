"""eMIGM on continuous tokens (KL latents): the masked model with a diffusion head.

Tokens x ∈ R^{L×C} (a KL latent grid, row-major). At time t the positions M_t are masked exactly
as for discrete tokens (the foundation's κ_t schedules, independent masking, t_min truncation —
:func:`unmask.training.noise.objective_noise`). The MAE encoder–decoder (:mod:`unmask.emigm.mae`)
maps the visible tokens W_in x_i to one condition vector z_i per position (plus eMIGM's learned
``diffusion_pos``), and the MLP diffusion head (:mod:`unmask.emigm.diffusion_head`) models
p_θ(x_i | z_i) at the masked positions. The unified objective (eMIGM eq. 7 with the masked CE
replaced by the head's denoising loss, as in MAR):

    L = E_t [ w(t) Σ_{i ∈ M_t} ℓ_head(x_i | z_i) ] / N

with w = 1 (eMIGM) or the MDM weight κ̇/(1−κ) (``unmask.losses.loss_weight``) and N the number
of masked tokens in the batch (``normalize="masked"``, MAR / eMIGM) or L per row (``tokens``).
Each masked token's ℓ_head averages ``head.batch_mul`` independent (noise level, ε) draws.

Sampling (:func:`sample_continuous`) is the MDM reverse process over positions (eMIGM eq. 6 —
the foundation's ``unmask_probability("mdm", …)``): on the grid t_k = k/N every masked position
is revealed with probability (κ_{t_{k+1}} − κ_{t_k})/(1 − κ_{t_k}) (all of them at the last step)
and its value drawn from the head given z_i. CFG: the transformer runs on the doubled batch with
the null condition (eMIGM: the mask token) and the head's ε is guided,
ε = ε_u + (1 + w_k)(ε_c − ε_u) (w = eMIGM's scale − 1), on the steps eMIGM's interval selects
and with its ``constant`` / ``linear`` weight (:mod:`unmask.emigm.objective`). A step that
reveals no position runs no network.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from unmask import schedules
from unmask.emigm.config import MAEConfig
from unmask.emigm.diffusion_head import DiffusionHead
from unmask.emigm.mae import MAEBackbone, MAEBase
from unmask.emigm.objective import emigm_cfg_weights, sampler_setup
from unmask.losses import loss_weight
from unmask.sampling.common import Evaluator
from unmask.sampling.grid import unmask_probability
from unmask.training import EMA, TrainConfig, lr_factor, read_checkpoint, save_checkpoint
from unmask.training.loop import BatchOrder
from unmask.training.noise import objective_noise

__all__ = ["ContinuousMAE", "ContinuousTrainResult", "train_continuous", "ContinuousSample",
           "sample_continuous", "load_continuous", "nfe_label"]


class ContinuousMAE(MAEBase):
    """MAE encoder–decoder + diffusion head over continuous tokens (B, L, C).

    ``forward(x, masked, t, y) -> z`` (B, L, D_dec) condition vectors for the head.
    """

    def __init__(self, cfg: MAEConfig | dict) -> None:
        super().__init__()
        self.cfg = cfg = cfg if isinstance(cfg, MAEConfig) else MAEConfig(**cfg)
        if cfg.token_dim is None or cfg.head is None:
            raise ValueError("ContinuousMAE needs 'token_dim' and 'head' (discrete tokens: MAE)")
        self.backbone = MAEBackbone(cfg)
        self.z_proj = nn.Linear(cfg.token_dim, cfg.dim)
        self._init_conditioning()
        self.diffusion_pos = nn.Parameter(torch.zeros(cfg.length, cfg.decoder_dim))
        self._reset([])
        nn.init.normal_(self.diffusion_pos, std=0.02)
        h = cfg.head
        self.head = DiffusionHead(cfg.token_dim, cfg.decoder_dim, h.width, h.depth,
                                  h.num_timesteps)

    def forward(self, x: Tensor, masked: Tensor, t: Tensor | None = None,
                y: Tensor | None = None) -> Tensor:
        """Condition vectors z (B, L, D_dec); x (B, L, C) is never read at masked positions."""
        b = x.shape[0]
        c = self.condition(t, y, b, x.device)
        return self.backbone(self.z_proj(x), masked, c) + self.diffusion_pos

    def loss(self, x0: Tensor, masked: Tensor, t: Tensor, y: Tensor | None, *,
             schedule: schedules.Schedule, weighting: str = "constant",
             normalize: str = "masked", generator: torch.Generator | None = None
             ) -> Tensor:
        """The unified objective (module docstring) for one batch with given t and masks."""
        b = x0.shape[0]
        z = self(x0, masked, t, y)
        n = int(masked.sum())
        if n == 0:
            return z.sum() * 0.0
        mul = self.cfg.head.batch_mul
        tok = self.head.loss(x0[masked].repeat(mul, 1), z[masked].repeat(mul, 1), generator)
        tok = tok.reshape(mul, n).mean(0)
        w = loss_weight(schedule, t, weighting).to(tok)[:, None].expand(b, masked.shape[1])
        weighted = tok * w[masked]
        if normalize == "masked":
            return weighted.sum() / n
        rows = torch.zeros(b, device=x0.device, dtype=tok.dtype).index_add_(
            0, torch.nonzero(masked)[:, 0], weighted)
        return (rows / masked.shape[1]).mean()


def nfe_label(steps: int, guided_steps: int) -> str:
    """eMIGM's NFE notation, formatted by the foundation's :class:`~unmask.sampling.common.
    Evaluator` (steps × (1 + fraction of guided steps), e.g. '16×1.2')."""
    ev = Evaluator(lambda x, t: x)
    ev.steps, ev.guided_steps = steps, guided_steps
    return ev.nfe_label


@dataclass
class ContinuousSample:
    """Output of :func:`sample_continuous`. ``nfe`` counts transformer passes (a guided step
    counts 2), ``head_evals`` the diffusion-head network calls (per revealed token batch)."""

    tokens: Tensor
    nfe: int
    steps: int
    guided_steps: int
    nfe_label: str
    head_evals: int
    seconds: float


@torch.no_grad()
def sample_continuous(
    model: ContinuousMAE,
    y: Tensor | None,
    *,
    batch_size: int | None = None,
    steps: int = 16,
    schedule: schedules.Schedule | str = "exp",
    cfg_scale: float = 0.0,
    cfg_schedule: str = "constant",
    cfg_interval: tuple[float, float] = (0.0, 1.0),
    temperature: float = 1.0,
    head_sampler: str | None = None,
    head_steps: int | None = None,
    lambda_min: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> ContinuousSample:
    """Generate (B, L, C) tokens with the MDM reverse process (module docstring).

    Args:
        y: (B,) labels (None: unconditional, B = ``batch_size``).
        steps: MDM steps N. schedule: the κ schedule (eMIGM: ``exp``).
        cfg_scale, cfg_schedule, cfg_interval: guidance w (package convention, eMIGM's scale
            − 1), ``constant`` | ``linear`` (:func:`~unmask.emigm.objective.emigm_cfg_weights`),
            on the steps whose end lies in eMIGM's mask-time interval (a, b].
        temperature: the head's τ. head_sampler, head_steps, lambda_min: default to
            ``model.cfg.head``.
    """
    cfg, hc = model.cfg, model.cfg.head
    schedule, batch_size, guided_ks = sampler_setup(cfg.num_classes, y, batch_size, schedule,
                                                    steps, cfg_scale, cfg_interval)
    dev = next(model.parameters()).device
    y = y.to(dev) if y is not None else None
    null = torch.full((batch_size,), cfg.num_classes, dtype=torch.long, device=dev)
    x = torch.zeros(batch_size, cfg.length, cfg.token_dim, device=dev)
    masked = torch.ones(batch_size, cfg.length, dtype=torch.bool, device=dev)
    nfe = evals = guided = head_evals = 0
    start = time.perf_counter()
    for k in tqdm(range(steps), disable=not progress, desc="eMIGM sample", leave=False):
        t, s = k / steps, (k + 1) / steps
        prob = 1.0 if k == steps - 1 else unmask_probability("mdm", schedule, t, s)
        u = torch.rand(masked.shape, generator=generator, device=dev)
        jump = masked & (u < prob)
        if not bool(jump.any()):
            continue
        tt = torch.full((batch_size,), t, device=dev)
        w: float | Tensor = 0.0
        if k in guided_ks:
            z2 = model(torch.cat([x, x]), torch.cat([masked, masked]), torch.cat([tt, tt]),
                       torch.cat([y if y is not None else null, null]))
            zc, zu = z2[:batch_size][jump], z2[batch_size:][jump]
            rows = emigm_cfg_weights(cfg_scale, cfg_schedule, masked & ~jump)
            w = rows[:, None].expand_as(jump)[jump][:, None]  # (n, 1): each token its row's w
            nfe, guided = nfe + 2, guided + 1
        else:
            zc, zu = model(x, masked, tt, y)[jump], None
            nfe += 1
        evals += 1
        x[jump] = model.head.sample(
            zc, z_uncond=zu, guidance=w, sampler=head_sampler or hc.sampler,
            steps=head_steps or hc.steps, order=hc.solver_order, temperature=temperature,
            lambda_min=hc.lambda_min if lambda_min is None else lambda_min, generator=generator,
        )
        head_evals += head_steps or hc.steps
        masked = masked & ~jump
    return ContinuousSample(x, nfe, evals, guided, nfe_label(evals, guided), head_evals,
                            time.perf_counter() - start)


# -- training ----------------------------------------------------------------------------------
@dataclass
class ContinuousTrainResult:
    """What :func:`train_continuous` returns (cost fields are what the t_min ablation reports)."""

    step: int
    loss: float
    checkpoint: Path
    elapsed_s: float
    seconds_per_step: float
    visible_tokens: float  # mean encoder tokens per sample (visible, excluding the buffer)
    mask_ratio: float
    history: list[dict[str, float]]


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def train_continuous(
    model: ContinuousMAE,
    tokens: Tensor,
    labels: Tensor | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    tracker: Any = None,
    progress: bool = True,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> ContinuousTrainResult:
    """Train ``model`` on continuous tokens (N, L, C) or (N, C, h, w) with AdamW, warm-up, EMA
    and the foundation's keyed objective noise (t, masks, label dropout; see
    :mod:`unmask.training.noise`). Writes ``out_dir/checkpoints/ckpt-<step>.pt`` (the
    foundation's checkpoint format, ``model_config`` an :class:`MAEConfig`) at ``ckpt_every``
    and at the end. No resume (a fresh run each call)."""
    out_dir = Path(out_dir)
    mcfg = model.cfg
    chw = tokens.dim() == 4  # (N, C, h, w) latents (a KL tokenizer's layout): per batch
    per_row = (tokens.shape[1], math.prod(tokens.shape[2:])) if chw else tuple(tokens.shape[1:])
    if tuple(per_row) != ((mcfg.token_dim, mcfg.length) if chw else (mcfg.length, mcfg.token_dim)):
        raise ValueError(f"tokens {tuple(tokens.shape)} do not match the model's "
                         f"(L, C) = ({mcfg.length}, {mcfg.token_dim})")
    if (labels is None) != (mcfg.num_classes == 0):
        raise ValueError("labels must be given exactly when the model is class-conditional")
    device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available()
                          else "cpu")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    model.to(device).train()
    schedule = schedules.get(cfg.schedule, **cfg.schedule_kwargs)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                                 schedule=cfg.lr_schedule))
    ema = EMA(model, cfg.ema_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    order = BatchOrder(tokens.shape[0], cfg.batch_size, cfg.seed)
    index = torch.arange(cfg.batch_size, device=device)
    history: list[dict[str, float]] = []
    win, n_win, vis_sum, ratio_sum, last = 0.0, 0, 0.0, 0.0, math.nan
    ckpt: Path | None = None

    def snapshot(step: int) -> Path:
        path = out_dir / "checkpoints" / f"ckpt-{step:08d}.pt"
        return save_checkpoint({"step": step, "model_config": mcfg.model_dump(mode="json"),
                                "train_config": cfg.model_dump(mode="json"),
                                "model": model.state_dict(), "ema": ema.state_dict(),
                                "loss_ema": last, "loss_count": step}, path)

    bf16 = device.type == "cuda" and (cfg.precision == "bf16" or (
        cfg.precision == "auto" and torch.cuda.is_bf16_supported()))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train eMIGM (continuous)", disable=not progress)
    for step in bar:
        idx = order(step)
        x0 = tokens[idx].to(device, torch.float32)
        if chw:
            x0 = x0.flatten(2).transpose(1, 2)
        y = labels[idx].to(device).long() if labels is not None else None
        noise = objective_noise(
            seed=cfg.seed, step=step, index=index, global_batch=cfg.batch_size,
            length=mcfg.length, schedule=schedule, t_min=cfg.t_min, t_max=cfg.t_max,
            stratified=cfg.stratified, masking=cfg.masking, keep_ratio=0.0,
            cond_dropout=mcfg.cond_dropout, device=device)
        if y is not None:
            y = torch.where(noise.drop_label, torch.full_like(y, mcfg.num_classes), y)
        with autocast:
            loss = model.loss(x0, noise.masked, noise.t, y, schedule=schedule,
                              weighting=cfg.weighting, normalize=cfg.normalize, generator=gen)
        last = float(loss.detach())
        if not math.isfinite(last):
            raise FloatingPointError(f"loss is {last} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        ema.update(model)
        vis_sum += float((~noise.masked).sum(-1).float().mean())
        ratio_sum += float(noise.masked.float().mean())
        win, n_win = win + last, n_win + 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            entry = {"step": done, "loss": win / n_win, "lr": sched.get_last_lr()[0]}
            history.append(entry)
            if tracker is not None:
                tracker.log_metrics({"loss": entry["loss"], "lr": entry["lr"]}, step=done)
            if on_log is not None:
                on_log(done, entry)
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
            win, n_win = 0.0, 0
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            ckpt = snapshot(done)
    elapsed = time.perf_counter() - start
    assert ckpt is not None
    return ContinuousTrainResult(
        step=cfg.steps, loss=history[-1]["loss"], checkpoint=ckpt, elapsed_s=elapsed,
        seconds_per_step=elapsed / cfg.steps, visible_tokens=vis_sum / cfg.steps,
        mask_ratio=ratio_sum / cfg.steps, history=history)


def load_continuous(path: str | Path, *, ema: bool = True) -> ContinuousMAE:
    """Rebuild a :class:`ContinuousMAE` from a checkpoint written by :func:`train_continuous`."""
    state = read_checkpoint(path)
    model = ContinuousMAE(MAEConfig(**state["model_config"]))
    weights = state["ema"]["shadow"] if ema and state.get("ema") else state["model"]
    model.load_state_dict(weights)
    return model.eval()
