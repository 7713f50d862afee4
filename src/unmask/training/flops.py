"""Model FLOPs and model FLOPs utilisation (MFU) of the :class:`~unmask.models.Transformer`.

Matmul FLOPs of one forward pass, per token (a multiply-add counts 2, PaLM appendix B):

    per block:  2·(3d² + d² + 2·h·d)          qkv, output projection, MLP (hidden h)
              + 4·S·d                         QKᵀ and A·V over the attended span S
    head:       2·d·V
    per sequence (÷ L per token): 2·6d² per block (adaLN), 2·2d² (final adaLN) and, for an
    explicit-timestep model, 2·(256·d + d²) (time MLP)

S = L for full attention; factorised video attention alternates S = L / frames (space) and
S = frames (time). Training costs 3× the forward (backward ≈ 2× forward), which for the
per-token terms is the familiar 6·N + 12·depth·d·S with N the per-token matmul parameters.
Norms, softmax, activations and embedding look-ups are not counted (the MFU convention).

MFU = training FLOPs per token × tokens/s ÷ the device's peak dense FLOP/s.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "PEAK_FLOPS",
    "forward_flops_per_token",
    "training_flops_per_token",
    "peak_flops",
    "mfu",
]

# Dense (no sparsity) peak FLOP/s by device name fragment and precision.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100": {"bf16": 989.4e12, "fp32": 66.9e12},  # SXM; tf32 dense 494.7e12
    "H200": {"bf16": 989.4e12, "fp32": 66.9e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
}


def _spans(cfg: Any) -> list[int]:
    L = cfg.length
    if getattr(cfg, "attention", "full") == "factorized":
        f = cfg.frames
        return [L // f if k % 2 == 0 else f for k in range(cfg.depth)]
    return [L] * cfg.depth


def forward_flops_per_token(cfg: Any) -> float:
    """Matmul FLOPs of one forward pass per token (module docstring) for a ModelConfig."""
    d, L, V = cfg.dim, cfg.length, cfg.vocab_size
    h = int(d * cfg.mlp_ratio)
    per_token = sum(2 * (4 * d * d + 2 * h * d) + 4 * s * d for s in _spans(cfg)) + 2 * d * V
    per_seq = cfg.depth * 2 * 6 * d * d + 2 * 2 * d * d
    if cfg.timestep == "explicit":
        per_seq += 2 * (256 * d + d * d)
    return float(per_token + per_seq / L)


def training_flops_per_token(cfg: Any) -> float:
    """Forward + backward ≈ 3 × forward FLOPs per token."""
    return 3.0 * forward_flops_per_token(cfg)


def peak_flops(device: torch.device | str | None = None, precision: str = "bf16") -> float | None:
    """Peak dense FLOP/s of a CUDA device from :data:`PEAK_FLOPS`, else None (CPU or an
    unknown GPU: no MFU is reported rather than a made-up one)."""
    device = torch.device(device) if device is not None else None
    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_FLOPS.items():
        if key in name:
            return peaks.get(precision)
    return None


def mfu(tokens_per_s: float, cfg: Any, peak: float) -> float:
    """Model FLOPs utilisation of a training run at ``tokens_per_s`` on a ``peak`` FLOP/s device."""
    return training_flops_per_token(cfg) * tokens_per_s / peak
