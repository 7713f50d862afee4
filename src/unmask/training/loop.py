"""The training loop: deterministic data order, AdamW + warm-up, EMA, exact resume.

Each step draws a batch x_1 (and labels y), drops labels to the null class with probability
``cond_dropout`` (CFG), and minimises one Monte-Carlo sample of the unified objective
(:func:`unmask.losses.diffusion_loss`):

    L(θ) = E_t E_{x_t ~ p_t(·|x_1)} [ w(t) Σ_{i masked} −log p_θ(x_1^i | x_t, y) ]

Determinism: the batch at step s is a pure function of (seed, s) — epoch e = s // (N // B)
uses ``randperm(N)`` from a generator seeded with seed + e — and every random draw of the
objective (t, masks, kept positions, label dropout) is keyed by (seed, step, global sample
index) (:mod:`unmask.training.noise`); the global torch / CUDA / python / numpy states (model
dropout) are checkpointed. Resuming from a checkpoint therefore reproduces the uninterrupted run
bit for bit (on the same device).

Data parallel: when ``torch.distributed`` is initialised (``torchrun``, Ray Train's
``TorchTrainer``: gloo on CPU, nccl on GPU) with W > 1 processes, rank r takes rows
[r·B/W, (r+1)·B/W) of every global batch of B = ``batch_size`` rows, the model is wrapped in
``DistributedDataParallel`` and each rank's loss is scaled so that the averaged gradient is the
gradient of the *global* batch objective (for both normalisations). Because the noise is keyed by
the global sample index, W workers follow the same loss curve as one process with the same
global batch, up to float summation order (model dropout draws from each rank's own RNG: use
``dropout = 0`` where exact agreement matters). Rank 0 logs, shows the progress bar and writes
checkpoints; ``on_checkpoint`` is called on every rank at every checkpoint step.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from unmask import schedules
from unmask.errors import UserError
from unmask.losses import loss_weight, masked_cross_entropy
from unmask.training.checkpoint import (
    check_model_config,
    checkpoint_path,
    config_dict,
    latest_checkpoint,
    list_checkpoints,
    model_class_name,
    prune_checkpoints,
    save_checkpoint,
)
from unmask.training.config import TrainConfig
from unmask.training.ema import EMA
from unmask.training.noise import objective_noise

__all__ = ["train", "TrainResult", "NonFiniteLossError", "lr_factor", "BatchOrder", "DistInfo",
           "dist_info"]

# Config fields that may change between a run and its resumption without changing the result.
_RESUME_SAFE = {"steps", "log_every", "ckpt_every", "keep_last", "num_workers", "device", "compile"}
_LOSS_EMA_BETA = 0.95


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss (or gradient norm) became NaN / inf.

    Attributes:
        step: the 0-based index of the update that failed.
        batch: the global sample indices of that step's batch.
        checkpoint: the last good checkpoint (the weights before this step), written if needed.
    """

    def __init__(self, message: str, step: int = -1, batch: list[int] | None = None,
                 checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.step, self.batch, self.checkpoint = step, batch or [], checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns. ``loss`` is a bias-corrected EMA of the per-step loss."""

    step: int
    loss: float | None
    checkpoint: Path | None
    checkpoints: list[Path]
    out_dir: Path
    tokens_per_s: float
    elapsed_s: float
    ema: EMA | None = field(default=None, repr=False)


def lr_factor(step: int, *, warmup_steps: int, steps: int, schedule: str) -> float:
    """Multiplier of the base lr for the update with 0-based index ``step``:
    (step + 1) / warmup during warm-up, then 1 (``constant``) or ½(1 + cos(π p)) with
    p = (step − warmup) / (steps − warmup) (``cosine``)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    p = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * p))


class BatchOrder:
    """Batch indices as a pure function of (seed, step); the last partial batch of an epoch
    is dropped so every batch has ``batch_size`` rows."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise ValueError(f"dataset has {n} samples, fewer than batch_size={batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel group (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1


def dist_info() -> DistInfo:
    """Rank and world size of the initialised ``torch.distributed`` group, if any."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


class _StepBatches(Dataset):
    """Map-style dataset whose item ``step`` is this rank's share of that step's global batch
    (for DataLoader workers; the order stays a function of the step)."""

    def __init__(self, tokens: Tensor, labels: Tensor | None, order: BatchOrder,
                 rows: slice = slice(None)) -> None:
        self.tokens, self.labels, self.order, self.rows = tokens, labels, order, rows

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor]:
        idx = self.order(step)[self.rows]
        y = self.labels[idx] if self.labels is not None else torch.empty(0, dtype=torch.long)
        return self.tokens[idx], y


def _device(name: str, ddp: DistInfo = DistInfo()) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if name == "cuda" and ddp.active:
        # One GPU per rank: the launcher's choice (Ray Train's get_device(), or torchrun's
        # LOCAL_RANK), made current with torch.cuda.set_device.
        local = os.environ.get("LOCAL_RANK")
        if local is not None and int(local) < torch.cuda.device_count():
            return torch.device("cuda", int(local))
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def _all_sum(x: Tensor, ddp: DistInfo) -> Tensor:
    """Sum of a (detached) tensor over the ranks."""
    if ddp.active:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def _objective(fwd: Callable[..., Tensor], model: nn.Module, x0: Tensor, y: Tensor | None,
               step: int, index: Tensor, cfg: TrainConfig, schedule: schedules.Schedule,
               ddp: DistInfo) -> tuple[Tensor, Tensor]:
    """(loss to back-propagate on this rank, global batch loss) of one step.

    The global loss is num / den with num = Σ over the global batch of each row's weighted CE
    (divided by its scored count for ``tokens``), den = B (``tokens``) or the global number of
    masked tokens (``masked``). This rank back-propagates W·num_r / den, so DDP's gradient
    average (÷ W) is the gradient of the global loss.
    """
    b, mcfg = x0.shape[0], model.cfg
    noise = objective_noise(
        seed=cfg.seed, step=step, index=index, global_batch=cfg.batch_size, length=mcfg.length,
        schedule=schedule, t_min=cfg.t_min, t_max=cfg.t_max, stratified=cfg.stratified,
        masking=cfg.masking, keep_ratio=cfg.keep_ratio, cond_dropout=mcfg.cond_dropout,
        device=x0.device,
    )
    masked = noise.masked.reshape(x0.shape)
    x_t = torch.where(masked, torch.full_like(x0, mcfg.vocab_size), x0)
    if y is not None and mcfg.num_classes > 0:
        y = torch.where(noise.drop_label, torch.full_like(y, mcfg.num_classes), y)
    logits = fwd(x_t, noise.t, y)
    scored = (~noise.keep).sum(-1) if noise.keep is not None else None
    _, per_row = masked_cross_entropy(
        logits, x0, masked, loss_weight(schedule, noise.t, cfg.weighting), normalize="tokens",
        scored=scored,
    )
    if cfg.normalize == "tokens":
        num = per_row.sum()
        den = torch.tensor(float(cfg.batch_size), device=x0.device)
    else:  # "masked": Σ weighted CE / Σ masked, both over the global batch
        n = scored if scored is not None else torch.full((b,), mcfg.length, device=x0.device)
        num = (per_row * n.clamp_min(1)).sum()
        den = _all_sum(masked.sum().to(torch.float32), ddp).clamp_min(1)
    total = _all_sum(num.detach().float(), ddp) / den
    return num * (ddp.world / den), total


def _use_bf16(precision: str, device: torch.device) -> bool:
    if device.type != "cuda":
        if precision == "bf16":
            warnings.warn("precision 'bf16' needs CUDA; training in fp32", stacklevel=3)
        return False
    return precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported())


def _optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # nanoGPT: decay matrices and embeddings, not biases (or other vectors).
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda")


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": gen.get_state(),
        "python": random.getstate(),
        "numpy": {**np_state, "state": {"key": torch.from_numpy(np_state["state"]["key"].astype(
            np.int64)), "pos": int(np_state["state"]["pos"])}},
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["generator"])
    random.setstate(state["python"])
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": state["numpy"]["state"]["key"].numpy().astype(np.uint32),
                         "pos": state["numpy"]["state"]["pos"]}
    np.random.set_state(np_state)


def _check_data(model: nn.Module, tokens: Tensor, labels: Tensor | None) -> None:
    cfg = model.cfg
    if tokens.is_floating_point():
        raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
    if tokens[0].numel() != cfg.length:
        raise ValueError(f"each sample has {tokens[0].numel()} tokens; the model expects "
                         f"{cfg.length} ({tuple(tokens.shape[1:])} vs the model config)")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= cfg.vocab_size:
        raise ValueError(f"token ids must be clean ids in [0, {cfg.vocab_size}), got [{lo}, {hi}]")
    if cfg.num_classes > 0 and labels is None:
        raise ValueError(f"the model has num_classes={cfg.num_classes} but no labels were given")
    if labels is not None:
        if cfg.num_classes == 0:
            raise ValueError("labels were given but the model is unconditional (num_classes=0)")
        if labels.shape != (tokens.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} != ({tokens.shape[0]},)")
        if int(labels.min()) < 0 or int(labels.max()) >= cfg.num_classes:
            raise ValueError(f"labels must lie in [0, {cfg.num_classes})")


def train(
    model: nn.Module,
    tokens: Tensor,
    labels: Tensor | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    tracker: Any = None,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    on_checkpoint: Callable[[Path | None, int, dict[str, float]], None] | None = None,
    schedule: Any = None,
) -> TrainResult:
    """Train ``model`` (a :class:`~unmask.models.Transformer` or anything with ``.cfg``,
    ``drop_labels`` and ``forward(x, t, y)``) on ``tokens`` (N, L) or (N, h, w).

    Args:
        model: the network; moved to the training device, updated in place (raw weights).
        tokens: clean token ids (any integer dtype), kept on the CPU and batched per step.
        labels: (N,) class ids for a class-conditional model, else None.
        cfg: the :class:`TrainConfig`.
        out_dir: run folder; checkpoints go to ``out_dir/checkpoints``.
        tracker: an object with ``log_metrics(dict, step)`` (see :mod:`unmask.tracking`).
        resume: continue from the newest valid checkpoint in ``out_dir/checkpoints``.
        progress: show a tqdm bar.
        stop_at: stop after this step (an interruption: lr schedule and data order still
            follow ``cfg.steps``); a checkpoint is written there.
        on_checkpoint: ``f(path, step, metrics)`` called on every rank after each checkpoint
            (``path`` None on ranks other than 0), e.g. to report it to Ray Train.
        schedule: overrides ``cfg.schedule``: a :class:`~unmask.schedules.Schedule`, or a
            per-position one whose ``kappa`` / ``elbo_weight`` map t (B,) to (B, L), such as
            :class:`unmask.joint.ModalitySchedules` (per-modality κ; independent masking only).

    Under an initialised ``torch.distributed`` group with W > 1 processes the step is
    data-parallel (see the module docstring); ``cfg.batch_size`` is the global batch and must
    be divisible by W. Only rank 0 logs to ``tracker`` and writes checkpoints.

    The global torch / python / numpy RNGs are seeded with ``cfg.seed`` (they drive dropout);
    initialise the model before calling.

    Raises:
        NonFiniteLossError: on a NaN/inf loss or gradient norm, after saving a checkpoint of
            the last good state; the message names the step and that checkpoint.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ddp = dist_info()
    device = _device(cfg.device, ddp)
    bf16 = _use_bf16(cfg.precision, device)
    _check_data(model, tokens, labels)
    if cfg.batch_size % ddp.world:
        raise ValueError(f"batch_size={cfg.batch_size} (the global batch) is not divisible by "
                         f"the {ddp.world} data-parallel workers")
    local_b = cfg.batch_size // ddp.world
    rows = slice(ddp.rank * local_b, (ddp.rank + 1) * local_b)
    lead = ddp.rank == 0
    if not lead:
        tracker, progress = None, False
    if schedule is None:
        schedule = schedules.get(cfg.schedule, **cfg.schedule_kwargs)
    else:
        k = schedule.kappa(torch.full((1,), 0.5))
        if k.dim() >= 2 and (k.shape[-1] != model.cfg.length or cfg.masking != "independent"):
            raise ValueError(f"a per-position schedule needs kappa(t) of shape (B, "
                             f"{model.cfg.length}) and masking 'independent'; got "
                             f"{tuple(k.shape)} and masking {cfg.masking!r}")
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    model.to(device)
    opt = _optimizer(model, cfg, device)
    factor = partial(lr_factor, warmup_steps=cfg.warmup_steps, steps=cfg.steps,
                     schedule=cfg.lr_schedule)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ema = EMA(model, cfg.ema_decay)
    # Kept in the checkpoint format; the objective draws keyed noise (unmask.training.noise).
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    start, loss_ema, n_loss = 0, 0.0, 0
    window = (0.0, 0)  # (Σ loss, steps) logged at the next log_every boundary
    last_ckpt: Path | None = None

    found = latest_checkpoint(ckpt_dir) if resume else None
    if found is not None:
        last_ckpt, state = found
        check_model_config(state["model_config"], model.cfg, last_ckpt,
                           state.get("model_class"), model_class_name(model))
        changed = {k: v for k, v in cfg.changed(state["train_config"]).items()
                   if k not in _RESUME_SAFE}
        if changed:
            warnings.warn(f"resuming {last_ckpt} with changed training config "
                          f"{ {k: f'{a} -> {b}' for k, (a, b) in changed.items()} }: "
                          "the run will not match an uninterrupted one", stacklevel=2)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        ema.load_state_dict(state["ema"])
        _set_rng_state(state["rng"], gen)
        start, loss_ema, n_loss = int(state["step"]), state["loss_ema"], state["loss_count"]
        # a checkpoint between two log steps: the resumed run logs the same window mean
        window = tuple(state.get("log_window", window))

    def snapshot(step: int) -> Path:
        if not lead:
            return checkpoint_path(ckpt_dir, step)
        path = save_checkpoint(
            {
                "step": step,
                "model_config": config_dict(model.cfg),
                "model_class": model_class_name(model),
                "train_config": cfg.model_dump(mode="json"),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "ema": ema.state_dict(),
                "rng": _rng_state(gen),
                "loss_ema": loss_ema,
                "loss_count": n_loss,
                "log_window": [win_loss, win_steps],
            },
            checkpoint_path(ckpt_dir, step),
        )
        prune_checkpoints(ckpt_dir, cfg.keep_last)
        return path

    def smoothed() -> float | None:
        return loss_ema / (1 - _LOSS_EMA_BETA**n_loss) if n_loss else None

    fwd: Callable[..., Tensor] = model
    if ddp.active:
        fwd = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None)
    fwd = torch.compile(fwd) if cfg.compile else fwd
    order = BatchOrder(tokens.shape[0], cfg.batch_size, cfg.seed)
    # A private generator: DataLoader would otherwise draw its base seed from the global RNG
    # and shift the dropout stream of a resumed run.
    loader = DataLoader(
        _StepBatches(tokens, labels, order, rows), sampler=range(start, end), batch_size=None,
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda" and not tokens.is_cuda,
        generator=torch.Generator(),
        # fork() of a process that already runs Ray / Prefect / MLflow threads can kill the
        # worker before it reports anything; a fresh interpreter per worker is safe.
        multiprocessing_context="spawn" if cfg.num_workers > 0 else None,
    )
    tokens_per_step = cfg.batch_size * model.cfg.length
    index = torch.arange(rows.start, rows.stop, device=device)
    was_training = model.training
    model.train()
    bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=not progress,
               dynamic_ncols=True)
    t_run = t_win = time.perf_counter()
    (win_loss, win_steps), step = (float(window[0]), int(window[1])), start
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
    try:
        for step, (x0, y) in enumerate(loader, start=start):
            x0 = x0.to(device, non_blocking=True).long()
            y = y.to(device, non_blocking=True).long() if labels is not None else None
            with autocast:
                local, total = _objective(fwd, model, x0, y, step, index, cfg, schedule, ddp)
            loss = total.item()
            if not math.isfinite(loss):
                raise _nonfinite(f"loss is {loss}", step, order(step), ckpt_dir, snapshot)
            opt.zero_grad(set_to_none=True)
            local.backward()
            clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            if not math.isfinite(grad_norm):
                raise _nonfinite(f"gradient norm is {grad_norm}", step, order(step), ckpt_dir,
                                 snapshot)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            ema.update(model)

            done = step + 1
            loss_ema = _LOSS_EMA_BETA * loss_ema + (1 - _LOSS_EMA_BETA) * loss
            n_loss += 1
            win_loss, win_steps = win_loss + loss, win_steps + 1
            bar.update(1)
            if done % cfg.log_every == 0 or done == end:
                now = time.perf_counter()
                tok_s = tokens_per_step * win_steps / max(now - t_win, 1e-9)
                metrics = {"loss": win_loss / win_steps, "lr": lr, "grad_norm": grad_norm,
                           "tokens_per_s": tok_s}
                if tracker is not None:
                    tracker.log_metrics(metrics, step=done)
                bar.set_postfix(loss=f"{smoothed():.4f}", tok_s=f"{tok_s:.3g}")
                t_win, win_loss, win_steps = now, 0.0, 0
            if done % cfg.ckpt_every == 0 or done == end:
                last_ckpt = snapshot(done)
                if on_checkpoint is not None:
                    on_checkpoint(last_ckpt if lead else None, done,
                                  {"loss": loss, "loss_smoothed": smoothed() or loss})
            step = done
    finally:
        bar.close()
        model.train(was_training)

    elapsed = time.perf_counter() - t_run
    return TrainResult(
        step=step,
        loss=smoothed(),
        checkpoint=last_ckpt,
        checkpoints=list_checkpoints(ckpt_dir),
        out_dir=out_dir,
        tokens_per_s=tokens_per_step * (step - start) / max(elapsed, 1e-9),
        elapsed_s=elapsed,
        ema=ema,
    )


def _nonfinite(what: str, step: int, batch: Tensor, ckpt_dir: Path,
               snapshot) -> NonFiniteLossError:
    # The weights are still those before this step: keep them as the last good checkpoint.
    path = checkpoint_path(ckpt_dir, step)
    if not path.exists():
        path = snapshot(step)
    idx = batch.tolist()
    shown = ", ".join(map(str, idx[:16])) + (f", … ({len(idx)} in all)" if len(idx) > 16 else "")
    return NonFiniteLossError(
        f"{what} at step {step} (0-based update index) on the batch of sample indices "
        f"[{shown}]; last good checkpoint: {path}", step, idx, path,
    )
