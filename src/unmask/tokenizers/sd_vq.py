"""SD-VQ-F8 (LDM's VQ-f8, 16 384 codes): DI's image tokenizer, through diffusers' ``VQModel``.

The weights are never downloaded here: :meth:`SDVQTokenizer.from_pretrained` loads a local
diffusers directory (``config.json`` + ``diffusion_pytorch_model.safetensors``), optionally a
``subfolder`` such as ``vqvae`` of a pipeline folder. Encoding follows diffusers:
``h = encode(x).latents``, ``quantize(h)`` gives the flat nearest-code indices; decoding
looks the codes up with ``quantize.get_codebook_entry(indices, (N, h, w, d))`` and runs
``decode(z_q, force_not_quantize=True)``. Images are uint8 RGB mapped to [-1, 1].
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from unmask.tokenizers.vq import images_to_tensor, sha256_files, sha256_state_dict, tensor_to_images

__all__ = ["SDVQTokenizer", "WEIGHT_SUFFIXES", "model_dir_sha256"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt")


def model_dir_sha256(path: str | Path) -> str:
    """sha256 over a model folder's ``config.json`` and weight files (names + contents)."""
    path = Path(path)
    files = [
        p
        for p in path.iterdir()
        if p.is_file() and (p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)
    ]
    return sha256_files(files, root=path)


def _check_dir(path: Path, kind: str) -> None:
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a diffusers {kind} folder (expected config.json and "
            f"diffusion_pytorch_model.safetensors, as written by {kind}.save_pretrained)"
        )


class SDVQTokenizer:
    """Images ↔ SD-VQ token grids.

    Args:
        model: a diffusers ``VQModel``.
        weights_sha256: identifies the weights in :attr:`identity` (computed from the state
            dict when not given).
        name: the tokenizer's name in :attr:`identity`.
    """

    def __init__(self, model, weights_sha256: str | None = None, name: str = "sd-vq-f8"):
        self.model = model.eval()
        self.name = name
        self.weights_sha256 = weights_sha256 or sha256_state_dict(model.state_dict())
        cfg = model.config
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.embed_dim = cfg.vq_embed_dim or cfg.latent_channels
        self.channels = cfg.in_channels

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        subfolder: str | None = None,
        device: str | torch.device = "cpu",
        name: str = "sd-vq-f8",
    ) -> SDVQTokenizer:
        """Load a local diffusers ``VQModel`` folder (never touches the network)."""
        from diffusers import VQModel  # why: diffusers is heavy; its checkpoints only

        path = Path(path)
        folder = path / subfolder if subfolder else path
        _check_dir(folder, "VQModel")
        model = VQModel.from_pretrained(str(path), subfolder=subfolder, local_files_only=True)
        return cls(model.to(device), weights_sha256=model_dir_sha256(folder), name=name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.num_vq_embeddings)

    @property
    def identity(self) -> str:
        cfg = {
            "vocab": self.vocab_size,
            "embed_dim": self.embed_dim,
            "downsample": self.downsample,
            "block_out_channels": list(self.model.config.block_out_channels),
        }
        arch = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        return f"{self.name}(diffusers.VQModel,{arch},weights=sha256:{self.weights_sha256})"

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def token_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int]:
        return image_shape[0] // self.downsample, image_shape[1] // self.downsample

    @torch.no_grad()
    def encode(self, images: np.ndarray | Tensor, batch_size: int = 16) -> Tensor:
        """uint8 images [N, H, W, 3] → LongTensor [N, H/f, W/f] of code indices."""
        x = images_to_tensor(images, self.channels)
        out = []
        for i in range(0, len(x), batch_size):
            h = self.model.encode(x[i : i + batch_size].to(self.device)).latents
            _, _, info = self.model.quantize(h)
            out.append(info[2].reshape(h.shape[0], h.shape[2], h.shape[3]).cpu())
        return torch.cat(out).long()

    @torch.no_grad()
    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors [N, d, h, w] of indices [N, h, w] (diffusers' get_codebook_entry)."""
        n, h, w = indices.shape
        flat = indices.reshape(-1).to(self.device)
        return self.model.quantize.get_codebook_entry(flat, (n, h, w, self.embed_dim))

    @torch.no_grad()
    def decode(self, indices: Tensor | np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Indices [N, h, w] → uint8 images [N, h·f, w·f, 3]."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        idx = idx.long()
        if idx.dim() != 3:
            raise ValueError(f"expected indices [N, h, w], got {list(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}")
        out = []
        for i in range(0, len(idx), batch_size):
            zq = self.lookup(idx[i : i + batch_size])
            out.append(tensor_to_images(self.model.decode(zq, force_not_quantize=True).sample))
        return np.concatenate(out)

    def __repr__(self) -> str:
        return f"SDVQTokenizer({self.identity})"
