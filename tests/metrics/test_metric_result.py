"""The uniform result type and its MLflow views."""

from __future__ import annotations

import math

import pytest

from unmask.metrics import MetricResult, as_mlflow_metrics, as_mlflow_params


def test_available_result_holds_a_finite_float() -> None:
    r = MetricResult.ok("fid", 12, num_samples=50)
    assert r.available and r.value == 12.0 and isinstance(r.value, float) and r.reason is None
    with pytest.raises(ValueError):
        MetricResult("fid", math.nan, True)
    with pytest.raises(ValueError):
        MetricResult("fid", None, True)


def test_unavailable_result_has_no_value_and_a_reason() -> None:
    r = MetricResult.unavailable("inception_score", "no classifier weights", num_samples=8)
    assert not r.available and r.value is None and r.reason == "no classifier weights"
    with pytest.raises(ValueError):
        MetricResult("fvd", 1.0, False, "x")
    with pytest.raises(ValueError):
        MetricResult("fvd", None, False, "")


def test_mlflow_views_omit_unavailable_values_but_keep_their_reason() -> None:
    results = {
        "fid": MetricResult.ok("fid", 3.5, num_samples=100, reference="fm-test-28x28-abc"),
        "inception_score": MetricResult.unavailable("inception_score", "no weights", n=100),
    }
    assert as_mlflow_metrics(results) == {"fid": 3.5}
    params = as_mlflow_params(results)
    assert params["fid.num_samples"] == "100"
    assert params["fid.reference"] == "fm-test-28x28-abc"
    assert params["inception_score.available"] == "False"
    assert params["inception_score.unavailable_reason"] == "no weights"
    assert "fid.available" not in params
    # a list and a single result work too
    assert as_mlflow_metrics(list(results.values())) == {"fid": 3.5}
    assert as_mlflow_metrics(results["fid"]) == {"fid": 3.5}
    long = MetricResult.unavailable("x", "r" * 2000)
    assert len(as_mlflow_params(long)["x.unavailable_reason"]) <= 500
