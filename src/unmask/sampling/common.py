"""Helpers shared by every sampler: logit processing, categorical draws, and the guided,
cached denoiser evaluation that counts network function evaluations (NFE).

Classifier-free guidance (DI §3.5, eq. 5; eMIGM §4 "CFG with Mask"):

    logits = (1 + w_t) · cond − w_t · uncond,

where the unconditional pass uses a learned null class or the mask token as the condition,
and w_t follows a guidance schedule:

* ``constant``: w_t = w;
* ``linear``:   w_t = w · t (guidance grows as tokens are revealed, 0 at t = 0, w at t = 1);
* ``interval``: w_t = w for t ∈ [t_lo, t_hi] and 0 elsewhere (eMIGM's CFG time interval,
  written in this package's time: eMIGM's interval [a, b] in mask time is [1 − b, 1 − a] here).

Outside the guidance interval the unconditional pass is skipped entirely; inside it the
conditional and unconditional passes run as ONE batched forward (``cond_and_uncond``).

Idle-step caching (per row). An implicit-timestep (ITM) denoiser's output depends on x_t only,
so a row whose state did not change since its last evaluation needs no new evaluation (the
MDLM cache, made per row): each call gathers the rows that changed (and that the sampler
needs) into a sub-batch, runs the network on it and scatters the logits back. Explicit-
timestep (ETM) models are re-evaluated at every call (their output depends on t), but only on
the rows the sampler needs. Row subsets need a *row-independent* denoiser (see
:func:`row_subset`); other denoisers are evaluated on the whole batch, cached only when no
row changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor

from unmask.schedules import Schedule
from unmask.schedules import get as get_schedule

__all__ = [
    "Denoiser",
    "GuidanceSchedule",
    "Guidance",
    "process_logits",
    "sample_categorical",
    "sample_categorical_with_logprob",
    "row_subset",
    "Evaluator",
]

GuidanceSchedule = Literal["constant", "linear", "interval"]


class Denoiser(Protocol):
    """``denoiser(x_t, t) -> logits`` over the V clean tokens.

    Optional attributes a sampler uses when present:
      * ``time_conditioned: bool`` — False for implicit-timestep models (output depends on x_t
        only), which lets samplers skip the network on rows whose state did not change;
      * ``cond_and_uncond(x_t, t) -> (cond, uncond)`` — one batched forward for CFG;
      * ``select_rows(idx) -> denoiser`` — the same denoiser restricted to batch rows ``idx``
        (e.g. with its per-row labels indexed), or ``row_independent = True`` when row i of the
        output depends on row i of the input only: both enable per-row sub-batching.
    """

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance settings (see the module docstring)."""

    scale: float = 0.0
    schedule: GuidanceSchedule = "constant"
    interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "linear", "interval"):
            raise ValueError(
                f"unknown cfg schedule {self.schedule!r}; valid: constant, linear, interval"
            )
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"cfg interval must satisfy 0 <= lo <= hi <= 1, got {self.interval}")

    def weight(self, t: float) -> float:
        """w_t at (scalar) time t."""
        if self.scale == 0.0:
            return 0.0
        if self.schedule == "constant":
            return self.scale
        if self.schedule == "linear":
            return self.scale * t
        lo, hi = self.interval
        return self.scale if lo <= t <= hi else 0.0


def check_sampler_args(
    method: str,
    methods: tuple[str, ...],
    steps: int,
    temperature: float,
    top_p: float,
    schedule: Schedule | str,
    *,
    kind: str = "sampling",
) -> Schedule:
    """One-line ``ValueError`` for an unknown ``method`` / non-positive ``steps`` / bad
    ``temperature`` or ``top_p`` (shared by every sampler family); returns the κ schedule."""
    if method not in methods:
        raise ValueError(f"unknown {kind} method {method!r}; valid methods: {', '.join(methods)}")
    if method != "first_hitting" and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    process_logits(torch.zeros(1), temperature, top_p)  # validates temperature and top_p
    return get_schedule(schedule) if isinstance(schedule, str) else schedule


def process_logits(logits: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """Temperature then nucleus (top-p) filtering; filtered entries become −inf.

    Top-p keeps the smallest set of most likely tokens whose probability mass reaches p
    (Holtzman et al. 2020); the most likely token is always kept.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature != 1.0:
        logits = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass strictly before it already reaches p.
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _inverse_cdf(
    logits: Tensor, generator: torch.Generator | None, fp64: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw by inversion: i = min{i : C_i > u·C_V}, C the running sum of exp(ℓ − max ℓ).

    Returns the index, log p of the drawn index (its shifted logit minus the log
    normaliser) and the log normaliser. One uniform per row and one exp + cumsum over V:
    ~3–6× cheaper on a CPU than Gumbel-max (V uniforms, 2V logs). The exp and the cumsum run
    in place on the one (…, V) buffer the shift allocates (the same values as out-of-place
    ops, one large allocation instead of three).
    """
    dtype = torch.float64 if fp64 else torch.float32
    lg = logits.to(dtype)
    top = lg.amax(-1, keepdim=True).clamp_min(torch.finfo(dtype).min)
    cdf = (lg - top).exp_().cumsum_(-1)  # a new tensor: the caller's logits are untouched
    total = cdf[..., -1:].contiguous()
    u = torch.rand(total.shape, generator=generator, device=lg.device, dtype=dtype)
    idx = torch.searchsorted(cdf, u * total, right=True)
    # u·C_V rounding up to C_V would give V: the last token of positive mass is the bound.
    idx = torch.minimum(idx, torch.searchsorted(cdf, total))
    log_z = total.log()
    return idx, lg.gather(-1, idx) - top - log_z, log_z


def sample_categorical(
    logits: Tensor, generator: torch.Generator | None = None, *, fp64: bool = False
) -> Tensor:
    """Draw one index per row of ``logits`` (..., V) from softmax(logits).

    Inverse-CDF sampling: with C_i = Σ_{j≤i} exp(ℓ_j − max ℓ) and u ~ U[0, 1), the index
    min{i : C_i > u · C_V} has probability exp(ℓ_i)/Σ_j exp(ℓ_j); −inf entries (top-p) have
    zero width and are never drawn. ``fp64=True`` runs the draw in float64: in float32, tokens
    with probability below ~1e-7 of the total get a width lost to rounding, which biases
    samples of large vocabularies (noted by MDM-Prime / Zheng et al. 2024 for Gumbel noise).
    """
    return _inverse_cdf(logits, generator, fp64)[0][..., 0]


def sample_categorical_with_logprob(
    logits: Tensor, generator: torch.Generator | None = None, *, fp64: bool = False
) -> tuple[Tensor, Tensor]:
    """:func:`sample_categorical` and log softmax(logits) at the drawn index, from one pass."""
    idx, logp, _ = _inverse_cdf(logits, generator, fp64)
    return idx[..., 0], logp[..., 0]


def row_subset(denoiser: Callable | None) -> Callable[[Tensor], Callable] | None:
    """``idx -> denoiser on rows idx`` when the denoiser supports it, else None.

    A denoiser with ``select_rows(idx)`` restricts itself (e.g. indexes its per-row labels);
    one with ``row_independent = True`` is used as it is. ``None`` (no denoiser) is trivially
    subsettable.
    """
    if denoiser is None:
        return lambda idx: None
    select = getattr(denoiser, "select_rows", None)
    if callable(select):
        return select
    if getattr(denoiser, "row_independent", False):
        return lambda idx: denoiser
    return None


@dataclass
class Evaluator:
    """Evaluates a (guided) denoiser with per-row idle-step caching, counting NFE per row.

    ``ev(x, t, need)`` returns logits (B, L, V) valid on the rows in ``need`` (all rows when
    None); the returned tensor is a buffer the next call may overwrite.

    * ITM (``time_conditioned = False``) with ``cache``: a row is re-evaluated only when its
      state differs from the state of its last evaluation (or when guidance needs an
      unconditional pass the row does not have yet). Samples are bit-identical to an uncached
      run for a row-independent denoiser (every row's logits depend on that row only).
    * ETM: every needed row is evaluated at every call.
    * Sub-batches smaller than ``min_rows`` are padded by repeating a row (its extra outputs
      dropped): BLAS libraries pick other kernels for GEMMs with very few rows (on this
      CPU, MKL's results for 1–3 rows differ from the batched ones in the last bit), which
      would break bit-identity with the uncached run.
    * Rows are gathered into a sub-batch only when the denoiser (and ``uncond_denoiser``)
      support row subsets (:func:`row_subset`); otherwise the whole batch is evaluated,
      and an ITM batch is skipped only when no needed row changed.

    NFE: ``row_evals[i]`` counts the evaluations of row i (an unconditional CFG pass counting
    one more); ``nfe`` is their maximum over the batch (what a single sequence needed; for
    a batch that moves in lockstep it is the number of batched forwards), ``nfe_mean`` their
    batch mean, ``forward_calls`` the number of batched network calls and ``rows_evaluated``
    the rows they processed (the compute actually spent).
    """

    denoiser: Callable[[Tensor, Tensor], Tensor]
    guidance: Guidance = field(default_factory=Guidance)
    uncond_denoiser: Callable[[Tensor, Tensor], Tensor] | None = None
    cache: bool = True
    steps: int = 0  # calls (sampler steps)
    guided_steps: int = 0  # steps whose logits used guidance
    forward_calls: int = 0  # batched network calls (a cond_and_uncond call counting one)
    rows_evaluated: int = 0  # rows passed to the network, padding and CFG doubling included
    row_evals: Tensor | None = None  # (B,) evaluations per row
    min_rows: int = 4  # smallest sub-batch (padded by repeating a row), see the class doc
    _x: Tensor | None = None
    _cond: Tensor | None = None
    _uncond: Tensor | None = None
    _has_uncond: Tensor | None = None
    _owned: bool = False  # whether _cond/_uncond are our copies (safe to update in place)
    _mix: Tensor | None = None  # guided-logits buffers reused across calls (see _combine)
    _mix_u: Tensor | None = None

    def __post_init__(self) -> None:
        self.cache = self.cache and not getattr(self.denoiser, "time_conditioned", True)
        if self.guidance.scale != 0.0 and self.uncond_denoiser is None and not hasattr(
            self.denoiser, "cond_and_uncond"
        ):
            raise ValueError(
                "cfg_scale != 0 needs a denoiser with cond_and_uncond() (e.g. "
                "unmask.models.denoiser.ConditionedDenoiser) or an uncond_denoiser"
            )
        sub, sub_u = row_subset(self.denoiser), row_subset(self.uncond_denoiser)
        self._select = (lambda idx: (sub(idx), sub_u(idx))) if sub and sub_u else None

    @property
    def nfe(self) -> int:
        """Max over rows of the per-row evaluations (see the class docstring)."""
        return 0 if self.row_evals is None else int(self.row_evals.max())

    @property
    def nfe_mean(self) -> float:
        """Batch mean of the per-row evaluations."""
        return 0.0 if self.row_evals is None else float(self.row_evals.double().mean())

    def _forward(self, den, uden, x: Tensor, t: Tensor, guided: bool):
        self.forward_calls += 1
        self.rows_evaluated += x.shape[0] * (2 if guided else 1)
        if not guided:
            return den(x, t), None
        if uden is None and hasattr(den, "cond_and_uncond"):
            return den.cond_and_uncond(x, t)
        self.forward_calls += 1
        return den(x, t), uden(x, t)

    def __call__(
        self, x: Tensor, t: Tensor, need: Tensor | None = None, t_scalar: float | None = None
    ) -> Tensor:
        """Guided logits (float) at state x (B, L, ...) and per-row time t (B,).

        Args:
            need: (B,) bool, the rows whose logits the caller uses (None: all).
            t_scalar: the time deciding the guidance weight (default: ``t[0]``).
        """
        self.steps += 1
        if self.guidance.scale:
            w = self.guidance.weight(float(t.reshape(-1)[0]) if t_scalar is None else t_scalar)
        else:
            w = 0.0
        b = x.shape[0]
        fresh = self._cond is None or self._x is None or self._x.shape != x.shape
        if fresh:
            self.row_evals = torch.zeros(b, dtype=torch.long, device=x.device)
            todo = None  # every row
        else:
            if self.cache:
                todo = (self._x != x).flatten(1).any(-1)
                if w != 0.0:
                    todo |= ~self._has_uncond
                if need is not None:
                    todo &= need
            else:
                todo = need  # ETM: every needed row, every call
            if todo is not None:
                n_todo = int(todo.sum())  # one host sync per call
                if n_todo == 0:
                    return self._combine(w)
                if self._select is None or n_todo == b:
                    todo = None  # whole batch
        guided = w != 0.0
        if todo is None:
            self._cond, self._uncond = self._forward(
                self.denoiser, self.uncond_denoiser, x, t, guided
            )
            self._owned = False
            if fresh:
                self._x = x.clone()
                self._has_uncond = torch.full((b,), guided, dtype=torch.bool, device=x.device)
            else:
                self._x.copy_(x)
                self._has_uncond.fill_(guided)
            self.row_evals += 2 if guided else 1
        else:
            idx = todo.nonzero()[:, 0]
            n = idx.numel()
            run = idx
            if n < min(self.min_rows, b):  # pad with a repeated row, outputs dropped
                run = torch.cat([idx, idx[:1].expand(min(self.min_rows, b) - n)])
            den, uden = self._select(run)
            x_run = x[run]
            cond, uncond = self._forward(den, uden, x_run, t[run], guided)
            cond, uncond = cond[:n], (None if uncond is None else uncond[:n])
            if not self._owned:  # never write into a tensor the denoiser returned
                self._cond = self._cond.clone()
                self._uncond = None if self._uncond is None else self._uncond.clone()
                self._owned = True
            self._cond.index_copy_(0, idx, cond.to(self._cond.dtype))
            if guided:
                if self._uncond is None:
                    self._uncond = torch.zeros_like(self._cond)
                self._uncond.index_copy_(0, idx, uncond.to(self._uncond.dtype))
            self._x.index_copy_(0, idx, x_run[:n])
            self._has_uncond.index_fill_(0, idx, guided)
            self.row_evals[idx] += 2 if guided else 1
        return self._combine(w)

    def _combine(self, w: float) -> Tensor:
        if w == 0.0:
            return self._cond
        self.guided_steps += 1
        # (1 + w)·cond − w·uncond into two reused buffers: the same three roundings as the
        # out-of-place expression (bit-identical), without three (B, L, V) allocations a step.
        c = self._cond
        if self._mix is None or self._mix.shape != c.shape or self._mix.dtype != c.dtype:
            self._mix, self._mix_u = torch.empty_like(c), torch.empty_like(c)
        torch.mul(c, 1.0 + w, out=self._mix)
        torch.mul(self._uncond, w, out=self._mix_u)
        return self._mix.sub_(self._mix_u)

    @property
    def nfe_label(self) -> str:
        """eMIGM's NFE notation: steps × (1 + fraction of steps with guidance), e.g. '16×1.2'."""
        frac = self.guided_steps / max(self.steps, 1)
        return f"{self.steps}×{1 + frac:.2g}" if frac else f"{self.steps}"
