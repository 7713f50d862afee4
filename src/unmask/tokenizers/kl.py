"""KL-16: the continuous tokenizer of MAR / eMIGM (16 latent channels, 16× downsampling).

Two checkpoint formats load, both from local files only:

* a diffusers ``AutoencoderKL`` folder (``save_pretrained`` layout) —
  :meth:`KLTokenizer.from_diffusers`; latents are ``encode(x).latent_dist.mode()``.
* MAR's checkpoint (``kl16.ckpt``: ``torch.save({"model": state_dict})`` of MAR's
  ``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))``) — :meth:`KLTokenizer.from_mar`.
  :class:`~unmask.tokenizers.mar_kl.MARAutoencoderKL` re-implements that network with the same
  parameter names (:mod:`unmask.tokenizers.mar_kl`, which also converts it to diffusers).

Latents are scaled by ``scale_factor`` after encoding (and divided by it before decoding): MAR
uses 0.2325 for KL-16; for a diffusers folder the default is its ``config.scaling_factor``.
Images are uint8 RGB mapped to [-1, 1].
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from unmask.tokenizers.mar_kl import MAR_SCALE_FACTOR, MARAutoencoderKL, infer_mar_config
from unmask.tokenizers.sd_vq import model_dir_sha256
from unmask.tokenizers.vq import images_to_tensor, sha256_files, tensor_to_images

__all__ = ["KLTokenizer"]

log = logging.getLogger("unmask.tokenizers")


class KLTokenizer:
    """Images ↔ continuous KL latents ``[N, C, H/f, W/f]`` (``C = latent_channels``).

    Build with :meth:`from_diffusers` or :meth:`from_mar`. ``encode`` returns the posterior
    mode (or a sample, with ``sample=True``) times ``scale_factor``; ``decode`` inverts the
    scaling and returns uint8 images [N, H, W, 3].
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        scale_factor: float,
        downsample: int,
        latent_channels: int,
        weights_sha256: str,
        name: str = "kl-16",
    ):
        self.model = model.eval()
        self.kind, self.name = kind, name
        self.scale_factor = float(scale_factor)
        self.downsample, self.latent_channels = downsample, latent_channels
        self.weights_sha256 = weights_sha256

    @classmethod
    def from_diffusers(
        cls,
        path: str | Path,
        subfolder: str | None = None,
        scale_factor: float | None = None,
        device: str | torch.device = "cpu",
        name: str = "kl-16",
    ) -> KLTokenizer:
        """Load a local diffusers ``AutoencoderKL`` folder (never touches the network)."""
        from diffusers import AutoencoderKL  # why: diffusers is heavy; its checkpoints only

        path = Path(path)
        folder = path / subfolder if subfolder else path
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder}: not a diffusers AutoencoderKL folder (expected config.json and "
                "diffusion_pytorch_model.safetensors, as written by save_pretrained)"
            )
        model = AutoencoderKL.from_pretrained(str(path), subfolder=subfolder, local_files_only=True)
        cfg = model.config
        scale = cfg.scaling_factor if scale_factor is None else scale_factor
        return cls(
            model.to(device),
            "diffusers",
            scale,
            2 ** (len(cfg.block_out_channels) - 1),
            cfg.latent_channels,
            model_dir_sha256(folder),
            name,
        )

    @classmethod
    def from_mar(
        cls,
        path: str | Path,
        scale_factor: float = MAR_SCALE_FACTOR,
        device: str | torch.device = "cpu",
        name: str = "kl-16",
    ) -> KLTokenizer:
        """Load MAR's checkpoint format (``{"model": state_dict}``; keys ``loss.*`` ignored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no MAR KL checkpoint (MAR's kl16.ckpt)")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a damaged file
            raise ValueError(f"{path}: unreadable checkpoint ({e})") from None
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), Mapping):
            raise ValueError(f'{path}: expected MAR\'s {{"model": state_dict}} checkpoint')
        state = {k: v for k, v in ckpt["model"].items() if not k.startswith("loss.")}
        try:
            model = MARAutoencoderKL(**infer_mar_config(state))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise ValueError(f"{path}: missing weights {result.missing_keys[:5]}")
        if result.unexpected_keys:
            log.warning("%s: ignoring unexpected keys %s", path, result.unexpected_keys[:5])
        return cls(
            model.to(device),
            "mar",
            scale_factor,
            2 ** (len(model.config["ch_mult"]) - 1),
            model.embed_dim,
            sha256_files([path]),
            name,
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def identity(self) -> str:
        cfg = {
            "format": self.kind,
            "latent_channels": self.latent_channels,
            "downsample": self.downsample,
            "scale_factor": self.scale_factor,
        }
        arch = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        return f"{self.name}({arch},weights=sha256:{self.weights_sha256})"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int]:
        f = self.downsample
        return self.latent_channels, image_shape[0] // f, image_shape[1] // f

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "mar":
            return self.model.encode(x)
        dist = self.model.encode(x).latent_dist
        return dist.mean, dist.logvar

    @torch.no_grad()
    def encode(
        self,
        images: np.ndarray | Tensor,
        batch_size: int = 16,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """uint8 images [N, H, W, 3] → float latents [N, C, H/f, W/f] (scaled)."""
        x = images_to_tensor(images, 3)
        out = []
        for i in range(0, len(x), batch_size):
            mean, logvar = self._moments(x[i : i + batch_size].to(self.device))
            z = mean
            if sample:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device)
                z = mean + torch.exp(0.5 * logvar) * noise
            out.append((z * self.scale_factor).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, latents: Tensor, batch_size: int = 16) -> np.ndarray:
        """Scaled latents [N, C, h, w] → uint8 images [N, h·f, w·f, 3]."""
        out = []
        for i in range(0, len(latents), batch_size):
            z = latents[i : i + batch_size].to(self.device).float() / self.scale_factor
            y = self.model.decode(z) if self.kind == "mar" else self.model.decode(z).sample
            out.append(tensor_to_images(y))
        return np.concatenate(out)

    def __repr__(self) -> str:
        return f"KLTokenizer({self.identity})"
