"""The joint image + segmentation-mask token sequence (DI §3.4, eq. 4; Cityscapes, Table 6).

DI trains one model "just once" on the concatenation of image tokens and mask tokens and then
uses it for joint generation, segmentation (image → mask) and mask-conditioned generation
(mask → image), all by unmasking. Here the two modalities share one combined vocabulary with
disjoint id ranges:

    image tokens  v ∈ 0..V−1              (a VQ codebook or pixel levels; h_i × w_i, row-major)
    mask classes  c ∈ 0..C−1  ↦  V + c    (h_m × w_m, row-major)
    [MASK]        V + C

    x = [ image (L_i = h_i·w_i) | mask (L_m = h_m·w_m) ],   L = L_i + L_m.

The model (``ModelConfig.modalities`` from :meth:`JointLayout.modalities`) adds a modality
embedding and restricts each position's logits to its modality's range, so p_θ(x^i | x_t) is a
distribution over V image ids at an image position and over C classes at a mask position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from unmask.models.config import Modality

__all__ = ["JointLayout", "TASKS", "Task"]

Task = Literal["joint", "image_to_mask", "mask_to_image"]
TASKS: tuple[str, ...] = ("joint", "image_to_mask", "mask_to_image")


@dataclass(frozen=True)
class JointLayout:
    """Shapes and id ranges of the joint sequence.

    Args:
        image_shape: (h_i, w_i) of the image token grid.
        image_vocab: V, image token ids 0..V−1.
        mask_shape: (h_m, w_m) of the mask grid.
        num_classes: C segmentation classes.
    """

    image_shape: tuple[int, int]
    image_vocab: int
    mask_shape: tuple[int, int]
    num_classes: int

    def __post_init__(self) -> None:
        if min(self.image_shape) < 1 or min(self.mask_shape) < 1:
            raise ValueError(f"grid sides must be positive: {self.image_shape}, {self.mask_shape}")
        if self.image_vocab < 1 or self.num_classes < 1:
            raise ValueError("image_vocab and num_classes must be positive")

    @property
    def image_len(self) -> int:
        return math.prod(self.image_shape)

    @property
    def mask_len(self) -> int:
        return math.prod(self.mask_shape)

    @property
    def seq_len(self) -> int:
        return self.image_len + self.mask_len

    @property
    def vocab_size(self) -> int:
        """V + C, the combined clean vocabulary (the model's ``vocab_size``)."""
        return self.image_vocab + self.num_classes

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def modalities(self) -> tuple[Modality, ...]:
        """The ``ModelConfig.modalities`` of a joint model."""
        return (
            Modality(name="image", length=self.image_len, vocab=(0, self.image_vocab)),
            Modality(name="mask", length=self.mask_len, vocab=(self.image_vocab, self.vocab_size)),
        )

    def combine(self, image: Tensor, mask: Tensor) -> Tensor:
        """(B, h_i, w_i) image ids and (B, h_m, w_m) class ids → (B, L) joint ids."""
        image, mask = torch.as_tensor(image).long(), torch.as_tensor(mask).long()
        b = image.shape[0]
        if image[0].numel() != self.image_len or mask.shape[0] != b or (
            mask[0].numel() != self.mask_len
        ):
            raise ValueError(f"expected image (B, {self.image_shape}) and mask (B, "
                             f"{self.mask_shape}), got {tuple(image.shape)}, {tuple(mask.shape)}")
        for name, x, hi in (("image", image, self.image_vocab), ("mask", mask, self.num_classes)):
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= hi):
                raise ValueError(f"{name} ids must lie in [0, {hi}), got "
                                 f"[{int(x.min())}, {int(x.max())}]")
        return torch.cat([image.reshape(b, -1), mask.reshape(b, -1) + self.image_vocab], 1)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L) clean joint ids → (image (B, h_i, w_i), mask classes (B, h_m, w_m))."""
        if x.shape[-1] != self.seq_len:
            raise ValueError(f"expected {self.seq_len} joint tokens, got shape {tuple(x.shape)}")
        b = x.shape[0]
        image = x[:, : self.image_len].reshape(b, *self.image_shape)
        mask = (x[:, self.image_len :] - self.image_vocab).reshape(b, *self.mask_shape)
        return image, mask

    def x_init(
        self,
        task: Task,
        *,
        batch_size: int | None = None,
        image: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """The sampler's starting state for ``task``: all [MASK] (``joint``), the image given
        and the mask [MASK] (``image_to_mask``), or the mask given and the image [MASK]
        (``mask_to_image``)."""
        if task not in TASKS:
            raise ValueError(f"unknown joint task {task!r}; valid: {', '.join(TASKS)}")
        if task == "joint":
            if batch_size is None:
                raise ValueError("task 'joint' needs batch_size")
            return torch.full((batch_size, self.seq_len), self.mask_id, dtype=torch.long)
        given = image if task == "image_to_mask" else mask
        if given is None:
            need = "image" if task == "image_to_mask" else "mask"
            raise ValueError(f"task {task!r} needs the {need}")
        b = given.shape[0]
        dummy_img = torch.zeros(b, *self.image_shape, dtype=torch.long)
        dummy_mask = torch.zeros(b, *self.mask_shape, dtype=torch.long)
        if task == "image_to_mask":
            x = self.combine(image, dummy_mask)
            x[:, self.image_len :] = self.mask_id
        else:
            x = self.combine(dummy_img, mask)
            x[:, : self.image_len] = self.mask_id
        return x
