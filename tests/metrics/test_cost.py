"""Cost metrics of a sampling run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from unmask.metrics import as_mlflow_metrics
from unmask.metrics.cost import COST_METRICS, measure_cost


def vm_hwm_mb() -> float | None:
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return None


def test_timing_throughput_memory_and_passed_counts() -> None:
    with measure_cost(batch_size=5, nfe=16, isr=0.25) as cost:
        t0 = time.perf_counter()
        block = np.ones((64, 1024, 1024), np.uint8)  # 64 MiB touched inside the block
        block[::4096] = 2
        time.sleep(0.1)
        cost.add_samples(10)
        elapsed = time.perf_counter() - t0
    res = cost.results()
    assert set(res) == set(COST_METRICS)
    assert res["nfe"].value == 16 and res["isr"].value == 0.25
    sps = res["seconds_per_sample"].value
    assert elapsed / 10 <= sps < elapsed / 10 + 0.05
    assert res["samples_per_second"].value == pytest.approx(1.0 / sps)
    assert res["seconds_per_sample"].params["batch_size"] == 5
    peak = res["peak_memory_mb"].value
    assert peak >= 64
    hwm = vm_hwm_mb()
    if hwm is not None:
        assert peak == pytest.approx(hwm, rel=0.05)
    assert set(as_mlflow_metrics(res)) == set(COST_METRICS)
    assert cost.as_dict()["nfe"] == 16
    del block


def test_missing_counts_are_unavailable_not_zero() -> None:
    with measure_cost(batch_size=1) as cost:
        pass
    res = cost.results()
    assert not res["nfe"].available and not res["isr"].available
    assert not res["seconds_per_sample"].available  # no samples counted
    assert "nfe" not in as_mlflow_metrics(res)
    with pytest.raises(ValueError):
        cost.set(isr=1.5)
