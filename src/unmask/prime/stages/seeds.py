"""``python -m unmask.stages prime.seeds --seeds 0,1,2 --ells 1,2,4 --out seeds [--jobs N]``:
train + evaluate every ℓ at each training seed under ``<out>/s<seed>``, then summarise;
``prime.seeds-summary`` (same options, no ``--jobs``) summarises the finished cells only
(:func:`unmask.prime.seeds.study`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from unmask.errors import ConfigError
from unmask.prime.config import PrimeParams, PrimeSection
from unmask.prime.seeds import study
from unmask.stages import stage

__all__ = ["seed_study", "seed_summary"]


def _ints(option: str, text: str) -> list[int]:
    """``"0,1,2"`` or ``"0 1 2"`` → [0, 1, 2]; anything else is a one-line error."""
    words = [w for w in re.split(r"[,\s]+", text.strip()) if w]
    if not words or not all(re.fullmatch(r"-?\d+", w) for w in words):
        raise ConfigError(f"--{option}: expected integers such as 0,1,2 (got {text!r})")
    return [int(w) for w in words]


@stage("prime.seeds", params=PrimeParams)
def seed_study(p: PrimeParams, seeds: str = "0,1,2", ells: str = "1,2,4", out: str = "seeds",
               jobs: int = 1) -> dict[str, Any]:
    """Train + evaluate every ℓ at each training seed under <out>/s<seed>, then summarise."""
    return _seeds(p, seeds, ells, out, jobs=jobs, train=True)


@stage("prime.seeds-summary", params=PrimeParams)
def seed_summary(p: PrimeParams, seeds: str = "0,1,2", ells: str = "1,2,4",
                 out: str = "seeds") -> dict[str, Any]:
    """Summarise the finished cells of a seed study (no training)."""
    return _seeds(p, seeds, ells, out, jobs=1, train=False)


def _seeds(p: PrimeParams, seed_list: str, ell_list: str, out: str, *, jobs: int,
           train: bool) -> dict[str, Any]:
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1 (got {jobs})")
    ells = _ints("ells", ell_list)
    try:
        PrimeSection(ells=ells)  # the cells' prime.ells: the same rule as the params file
    except ValidationError as e:
        raise ConfigError(f"--ells: {e.errors()[0]['msg'].removeprefix('Value error, ')}"
                          ) from None
    return study(p, _ints("seeds", seed_list), ells, out, jobs=jobs, train=train)
