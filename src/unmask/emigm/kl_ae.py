"""A tiny convolutional KL autoencoder trained here: the continuous tokenizer of the default
eMIGM pipeline (Fashion-MNIST 28×28 → a 7×7 grid of C-dim latents), standing in for MAR's KL-16.

Model (a VAE, Kingma & Welling 2014, as LDM's "KL-f" autoencoders without the GAN/perceptual
terms): a conv encoder gives the posterior q(z | x) = N(μ(x), diag σ²(x)) on a (C, H/4, W/4)
grid, a mirrored decoder reconstructs. Loss per image:

    ‖x − D(z)‖² / (HW) + β · KL(q(z|x) ‖ N(0, I)) / (HW),     z = μ + σ ⊙ ε

Tokens are the posterior means times ``scale_factor`` = 1 / std(μ) over the training images
(LDM's latent scaling), so the diffusion head sees unit-scale targets; ``decode`` divides it out.
The file format is its own (``unmask.emigm.kl_ae/1``): real KL-16 checkpoints load through
:class:`unmask.tokenizers.kl.KLTokenizer` instead.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from unmask.dicts import dataclass_from_dict
from unmask.tokenizers.vq import sha256_state_dict

__all__ = ["KLAEConfig", "TinyKLAE", "KLAETokenizer", "train_kl_ae"]

FORMAT = "unmask.emigm.kl_ae/1"


@dataclass
class KLAEConfig:
    """Architecture (``latent_channels``, ``hidden``) and training settings."""

    latent_channels: int = 4
    hidden: int = 16
    kl_weight: float = 1e-3
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KLAEConfig:
        return dataclass_from_dict(cls, d, "KL autoencoder")


class TinyKLAE(nn.Module):
    """Conv VAE, 1×28×28 ↔ C×7×7 (two stride-2 stages). Images in [−1, 1]."""

    def __init__(self, cfg: KLAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, c = cfg.hidden, cfg.latent_channels
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(1, h, 3, padding=1), act(), nn.Conv2d(h, 2 * h, 4, 2, 1), act(),
            nn.Conv2d(2 * h, 2 * h, 3, padding=1), act(), nn.Conv2d(2 * h, 2 * h, 4, 2, 1), act(),
            nn.Conv2d(2 * h, 2 * c, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(c, 2 * h, 3, padding=1), act(), nn.ConvTranspose2d(2 * h, 2 * h, 4, 2, 1),
            act(), nn.Conv2d(2 * h, h, 3, padding=1), act(), nn.ConvTranspose2d(h, h, 4, 2, 1),
            act(), nn.Conv2d(h, 1, 3, padding=1))

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance (N, C, 7, 7) of images x (N, 1, 28, 28)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


def _to_tensor(images: np.ndarray | Tensor) -> Tensor:
    x = torch.as_tensor(np.asarray(images))
    if x.dim() != 3:
        raise ValueError(f"expected grayscale uint8 images [N, H, W], got {tuple(x.shape)}")
    return x.float().div(127.5).sub(1.0)[:, None]


def train_kl_ae(images: np.ndarray | Tensor, cfg: KLAEConfig | dict | None = None, *,
                progress: bool = True) -> KLAETokenizer:
    """Train the autoencoder on uint8 images [N, 28, 28]; returns the tokenizer (scale fitted)."""
    cfg = cfg if isinstance(cfg, KLAEConfig) else KLAEConfig.from_dict(dict(cfg or {}))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = _to_tensor(images)
    model = TinyKLAE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.steps, 1))
    history: list[dict[str, float]] = []
    bar = tqdm(range(cfg.steps), desc="train KL-AE", disable=not progress)
    for step in bar:
        x = data[torch.randint(0, len(data), (cfg.batch_size,), generator=gen)]
        mean, logvar = model.moments(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        rec = F.mse_loss(model.decode(z), x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum((1, 2, 3)).mean()
        loss = rec + cfg.kl_weight * kl / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0 or step + 1 == cfg.steps:
            psnr = 10 * math.log10(4.0 / max(rec.item(), 1e-12))
            history.append({"step": step + 1, "recon_mse": rec.item(), "kl": kl.item(),
                            "psnr": psnr})
            bar.set_postfix(psnr=f"{psnr:.1f}")
    model.eval()
    with torch.no_grad():
        sub = data[torch.randperm(len(data), generator=gen)[:2048]]
        std = float(model.moments(sub)[0].std())
    tok = KLAETokenizer(model, scale_factor=1.0 / max(std, 1e-6))
    tok.history = history
    return tok


class KLAETokenizer:
    """uint8 images [N, 28, 28] ↔ scaled latents [N, C, 7, 7] (``encode`` gives the posterior
    mean × ``scale_factor``)."""

    name = "tiny-kl-ae"
    downsample = 4

    def __init__(self, model: TinyKLAE, scale_factor: float) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        self.scale_factor = float(scale_factor)
        self.history: list[dict[str, float]] = []

    @property
    def latent_channels(self) -> int:
        return self.cfg.latent_channels

    @property
    def identity(self) -> str:
        arch = json.dumps({"latent_channels": self.cfg.latent_channels, "hidden": self.cfg.hidden,
                           "scale_factor": self.scale_factor}, sort_keys=True)
        return f"{self.name}({arch},weights=sha256:{sha256_state_dict(self.model.state_dict())})"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    @torch.no_grad()
    def encode(self, images: np.ndarray | Tensor, batch_size: int = 512) -> Tensor:
        x = _to_tensor(images)
        out = [self.model.moments(x[i : i + batch_size])[0] for i in range(0, len(x), batch_size)]
        return torch.cat(out) * self.scale_factor

    @torch.no_grad()
    def decode(self, latents: Tensor, batch_size: int = 512) -> np.ndarray:
        z = latents.float() / self.scale_factor
        out = [self.model.decode(z[i : i + batch_size]) for i in range(0, len(z), batch_size)]
        x = torch.cat(out)[:, 0]
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "config": asdict(self.cfg), "scale_factor": self.scale_factor,
                    "state_dict": self.model.state_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> KLAETokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no KL autoencoder checkpoint (train_kl_ae)")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} checkpoint")
        model = TinyKLAE(KLAEConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        return cls(model, ckpt["scale_factor"])
