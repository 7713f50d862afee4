"""Schedules against independent numpy formulas and numerical derivatives."""

import math

import numpy as np
import pytest
import torch

from unmask import schedules

T = np.linspace(0.02, 0.98, 49)
E5 = math.exp(5)
REFERENCE = {  # κ_t written independently, in numpy
    "linear": lambda t: t,
    "root": np.sqrt,
    "cosine": lambda t: 1 - np.cos(np.pi * t / 2),
    "arccos": lambda t: 1 - 2 * np.arccos(t) / np.pi,
    "quadratic": lambda t: t**2,
    "cubic": lambda t: -2 * t**3 + 3 * t**2,
    "exp": lambda t: np.exp(-5 * (1 - t)),
    "logexp": lambda t: 1 - np.log(1 + (E5 - 1) * (1 - t)) / 5,
}


@pytest.mark.parametrize("name", schedules.NAMES)
def test_kappa_matches_formula(name):
    s = schedules.get(name)
    got = s.kappa(torch.tensor(T, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, REFERENCE[name](T), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", schedules.NAMES)
def test_dkappa_is_derivative(name):
    s = schedules.get(name)
    h = 1e-6
    fd = (REFERENCE[name](T + h) - REFERENCE[name](T - h)) / (2 * h)
    got = s.dkappa(torch.tensor(T, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", schedules.NAMES)
def test_endpoints_monotone_inverse(name):
    s = schedules.get(name)
    ends = s.kappa(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
    expected0 = math.exp(-5) if name == "exp" else 0.0  # eMIGM's exp has γ_1 = 1 − e^{-5}
    assert ends == pytest.approx([expected0, 1.0], abs=1e-12)
    t = torch.tensor(T, dtype=torch.float64)
    k = s.kappa(t)
    assert bool((k.diff() > 0).all())
    torch.testing.assert_close(s.inverse(k), t, atol=1e-9, rtol=0)


def test_cubic_slopes_and_rejects_non_monotone():
    a, b = 0.5, 2.0
    s = schedules.get("cubic", a=a, b=b)
    d = s.dkappa(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
    assert d == pytest.approx([a, b])
    assert s.params == {"a": a, "b": b}
    # inverse by bisection agrees with κ
    t = torch.tensor(T, dtype=torch.float64)
    torch.testing.assert_close(s.inverse(s.kappa(t)), t, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="non-monotone"):
        schedules.get("cubic", a=8.0, b=8.0)


def test_elbo_weight():
    s = schedules.get("cosine")
    t = torch.tensor(T, dtype=torch.float64)
    ref = (np.pi / 2 * np.sin(np.pi * T / 2)) / np.cos(np.pi * T / 2)
    np.testing.assert_allclose(s.elbo_weight(t).numpy(), ref, rtol=1e-10)


def test_emigm_gamma_relation():
    # κ_t = 1 − γ_{1−t} with eMIGM's γ_s = 1 − e^{−5s}
    s = schedules.get("exp")
    t = torch.tensor(T, dtype=torch.float64)
    gamma = 1 - np.exp(-5 * (1 - T))
    np.testing.assert_allclose(s.kappa(t).numpy(), 1 - gamma, rtol=1e-12)


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError) as e:
        schedules.get("cosin")
    for n in schedules.NAMES:
        assert n in str(e.value)
    with pytest.raises(ValueError, match="invalid arguments"):
        schedules.get("linear", a=1.0)
