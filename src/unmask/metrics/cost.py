"""Sampling cost: NFE, idle-step ratio, seconds per sample, samples per second, peak memory.

Use around a sampling run::

    with measure_cost(batch_size=64, device=dev) as cost:
        x = sampler(...)                     # draws num_samples samples
        cost.add_samples(x.shape[0])
        cost.set(nfe=sampler_nfe, isr=idle_step_ratio)
    mlflow.log_metrics(as_mlflow_metrics(cost.results()))

- ``seconds_per_sample`` = wall seconds / samples, ``samples_per_second`` = its inverse, both at
  the run's ``batch_size`` (logged as a param: throughput depends on it). CUDA work is
  synchronised before the clock stops.
- ``peak_memory_mb``: on CUDA ``torch.cuda.max_memory_allocated`` since the block started (the
  counter is reset on entry); on CPU the process's peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), a lifetime high-water mark, not just this block
  (logged as the ``memory_kind`` param).
- ``nfe`` (network function evaluations per sample) and ``isr`` (MDM-Prime's idle-step ratio:
  the fraction of sampling steps that change no token) are the sampler's own counts, passed in;
  if not passed they are reported unavailable.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from unmask.metrics import MetricResult

__all__ = ["COST_METRICS", "CostMeter", "measure_cost", "peak_rss_mb"]

COST_METRICS = ("nfe", "isr", "seconds_per_sample", "samples_per_second", "peak_memory_mb")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``: KiB on Linux, B on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


class CostMeter:
    """Measures one sampling run; see the module docstring. Use via :func:`measure_cost`."""

    def __init__(
        self,
        *,
        batch_size: int,
        device: str | torch.device | None = None,
        num_samples: int = 0,
        nfe: float | None = None,
        isr: float | None = None,
    ) -> None:
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.num_samples = int(num_samples)
        self.nfe, self.isr = nfe, isr
        self.seconds: float | None = None
        self.peak_memory_mb: float | None = None
        self._t0: float | None = None

    @property
    def _cuda(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_available()

    def start(self) -> None:
        if self._cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self._t0 is None:
            raise RuntimeError("CostMeter.stop() before start()")
        if self._cuda:
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._t0
        if self._cuda:
            self.peak_memory_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_memory_mb = peak_rss_mb()

    def add_samples(self, n: int) -> None:
        self.num_samples += int(n)

    def set(self, *, nfe: float | None = None, isr: float | None = None) -> None:
        if nfe is not None:
            self.nfe = float(nfe)
        if isr is not None:
            if not 0.0 <= float(isr) <= 1.0:
                raise ValueError(f"idle-step ratio must lie in [0, 1], got {isr}")
            self.isr = float(isr)

    def params(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "num_samples": self.num_samples,
            "device": str(self.device),
            "memory_kind": "cuda_max_allocated" if self._cuda else "process_peak_rss",
        }

    def results(self) -> dict[str, MetricResult]:
        """``{nfe, isr, seconds_per_sample, samples_per_second, peak_memory_mb}``."""
        p = self.params()
        out: dict[str, MetricResult] = {}
        for name, v in (("nfe", self.nfe), ("isr", self.isr)):
            out[name] = (
                MetricResult.ok(name, v, **p) if v is not None
                else MetricResult.unavailable(name, f"{name} was not reported by the sampler", **p)
            )
        if self.seconds is None:
            why = "the timed block has not finished"
            for name in COST_METRICS[2:]:
                out[name] = MetricResult.unavailable(name, why, **p)
            return out
        if self.num_samples > 0 and self.seconds > 0:
            out["seconds_per_sample"] = MetricResult.ok(
                "seconds_per_sample", self.seconds / self.num_samples, **p
            )
            out["samples_per_second"] = MetricResult.ok(
                "samples_per_second", self.num_samples / self.seconds, **p
            )
        else:
            for name in ("seconds_per_sample", "samples_per_second"):
                out[name] = MetricResult.unavailable(name, "no samples were counted", **p)
        assert self.peak_memory_mb is not None
        out["peak_memory_mb"] = MetricResult.ok("peak_memory_mb", self.peak_memory_mb, **p)
        return out

    def as_dict(self) -> dict[str, float | None]:
        """``{metric name: value or None}``."""
        return {k: r.value for k, r in self.results().items()}


@contextmanager
def measure_cost(
    *,
    batch_size: int,
    device: str | torch.device | None = None,
    num_samples: int = 0,
    nfe: float | None = None,
    isr: float | None = None,
) -> Iterator[CostMeter]:
    """Context manager timing a block; yields the :class:`CostMeter` (stopped on exit)."""
    meter = CostMeter(
        batch_size=batch_size, device=device, num_samples=num_samples, nfe=nfe, isr=isr
    )
    meter.start()
    try:
        yield meter
    finally:
        meter.stop()
