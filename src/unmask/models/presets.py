"""Named model sizes: ``presets.get(name)`` returns a dict of :class:`ModelConfig` fields.

A preset fixes the architecture (and, for the paper presets, the data shape it was sized for);
fields it omits (``vocab_size`` and ``seq_len`` / ``grid`` for the generic sizes) come from the
caller, and any field given explicitly overrides the preset::

    ModelConfig(preset="tiny", vocab_size=512, grid=(7, 7))

Parameter counts (see ``tests/models/test_transformer.py::test_di_546m_param_count``):

* ``di-546m``: Discrete Interpolants' ImageNet-256 model, 546M parameters. Sized here for the
  SD-VQ-F8 codebook (V = 16384) on a 32×32 token grid with 1000 classes: dim 1024, depth 27,
  16 heads, MLP ratio 4 → 548,097,024 parameters (+0.38 % of 546M): 27 adaLN-Zero blocks of
  18·d² + 15·d (510.0M), token embedding (V+1)·d and head d·V + V (33.6M), final adaLN 2d² + 2d,
  time MLP 256·d + d² + 2d, class table 1001·d and row + column positions 64·d.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NAMES", "get"]

_PRESETS: dict[str, dict[str, Any]] = {
    # CPU default: trains in minutes on a laptop.
    "tiny": {"dim": 128, "depth": 4, "heads": 4},
    "small": {"dim": 384, "depth": 8, "heads": 6},
    "di-546m": {
        "vocab_size": 16384,
        "grid": (32, 32),
        "num_classes": 1000,
        "dim": 1024,
        "depth": 27,
        "heads": 16,
        "mlp_ratio": 4.0,
        "pos": "learned2d",
    },
}
NAMES: tuple[str, ...] = tuple(_PRESETS)


def get(name: str) -> dict[str, Any]:
    """The :class:`~unmask.models.ModelConfig` fields of preset ``name`` (a fresh copy)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(NAMES)}")
    return dict(_PRESETS[name])
