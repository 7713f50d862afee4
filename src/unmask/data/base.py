"""Bases shared by the dataset loaders of one kind.

* :class:`CroppedImageSplit`: a ``train`` / ``val`` split of RGB images, ADM center-cropped to
  ``image_size`` (:func:`~unmask.data.transforms.center_crop_arr`), iterated with the
  corrupt-file policy of :class:`~unmask.data.errors.SkipsCorruptFiles`
  (:class:`~unmask.data.imagenet.ImageNet`, :class:`~unmask.data.coco.COCOCaptions`);
* :class:`TextDocuments`: a text corpus read as ``(key, text)`` documents and packed into
  MDLM-wrapped GPT-2 blocks (:class:`~unmask.data.owt.OpenWebText`,
  :class:`~unmask.data.text_corpus.TextCorpus`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from unmask.data.errors import CorruptFileError, OnError, SkipsCorruptFiles
from unmask.data.transforms import center_crop_arr, load_rgb

if TYPE_CHECKING:
    from unmask.tokenizers.bpe import GPT2BPE

__all__ = ["CroppedImageSplit", "TextDocuments"]


class CroppedImageSplit(SkipsCorruptFiles):
    """A ``train`` or ``val`` split of images under ``root``.

    The constructor checks ``split`` and ``on_error``, stores ``root`` / ``split`` /
    ``image_size`` and calls :meth:`_open`, where a subclass checks its layout and indexes
    the split. Subclasses define ``__len__`` and ``load(index)`` (raising
    :class:`~unmask.data.errors.CorruptFileError` for one unreadable item, which iteration
    skips or raises according to ``on_error``).
    """

    #: Dataset name in the bad-split message.
    split_label: ClassVar[str] = "dataset"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int | None = 256,
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        if split not in ("train", "val"):
            raise ValueError(f"{self.split_label} split must be 'train' or 'val', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _read_image(self, path: Path, missing: str) -> np.ndarray:
        """uint8 [S, S, 3]: ``path`` decoded as RGB and center-cropped to S = ``image_size``
        (the decoded image when None); a :class:`CorruptFileError` saying ``missing`` when the
        file is absent."""
        if not path.is_file():
            raise CorruptFileError(path, missing)
        img = load_rgb(path)
        return center_crop_arr(img, self.image_size) if self.image_size else np.array(img)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.load(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._iter_skipping(range(len(self)), self.load)


class TextDocuments:
    """Mixin for a corpus whose subclass yields ``(key, text)`` from :meth:`documents`."""

    def documents(self) -> Iterator[tuple[str, str]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for key, text in self.documents():
            yield {"key": key, "text": text}

    def iter_blocks(
        self, tokenizer: GPT2BPE, block_size: int = 1024, batch_docs: int = 256
    ) -> Iterator[np.ndarray]:
        """MDLM-wrapped GPT-2 blocks of the selected documents (int32 [block_size],
        BOS = EOS = ``tokenizer.eos_id``; see :func:`~unmask.tokenizers.bpe.encode_and_pack`)."""
        from unmask.tokenizers.bpe import encode_and_pack  # why: tiktoken, for text sets only

        texts = (text for _, text in self.documents())
        return encode_and_pack(texts, tokenizer, block_size, batch_docs)
