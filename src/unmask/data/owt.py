"""OpenWebText documents, GPT-2-tokenized and packed into MDLM's wrapped 1024-token blocks.

Two on-disk forms are read:

* a folder of documents: ``*.txt`` files, and ``*.xz`` files that are either one xz-compressed
  document or — as in the original OpenWebText release (``openwebtext/urlsf_subset00-1_data.xz``)
  — an xz-compressed tar of ``*.txt`` documents. Files are read in sorted path order, tar
  members in archive order.
* a Hugging Face dataset written by ``Dataset.save_to_disk`` (``state.json`` + ``data-*.arrow``,
  or a ``DatasetDict`` with ``dataset_dict.json`` and one sub-folder per split), read with
  ``datasets.load_from_disk`` when :mod:`datasets` is importable and otherwise straight from the
  Arrow stream files with :mod:`pyarrow`.

Splits follow MDLM: ``openwebtext-train`` is every document but the last ``valid_docs``
and ``openwebtext-valid`` the last ``valid_docs`` (100 000 in MDLM and MDM-Prime, App. A.4.3:
"reserving the last 100,000 samples for validation").

An unreadable file (not UTF-8, damaged xz) and an empty document (no non-blank character) are
skipped and recorded in ``skipped``; a folder with no usable document at all is an error naming
it, and so is a corpus with no more than ``valid_docs`` documents (nothing left to train on).
"""

from __future__ import annotations

import importlib.util
import json
import lzma
import tarfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from unmask.data.base import TextDocuments
from unmask.data.errors import CorruptFileError, DatasetLayoutError, OnError, SkipsCorruptFiles

__all__ = ["OpenWebText", "LAYOUT", "iter_xz_documents", "datasets_available", "MDLM_VALID_DOCS"]

MDLM_VALID_DOCS = 100_000
LAYOUT = """
<root>/                              either a folder of documents (searched recursively):
  **/*.txt                              one UTF-8 document per file
  **/*.xz                               one xz-compressed document, or an xz-compressed tar of
                                        *.txt documents (OpenWebText's urlsf_subsetNN-M_data.xz)
<root>/                              or a Hugging Face save_to_disk dataset with a "text" column:
  state.json, dataset_info.json, data-00000-of-0000N.arrow
  (or dataset_dict.json + <split>/ sub-folders of that form)
"""
_NAME = "OpenWebText"


def datasets_available() -> bool:
    """Whether the Hugging Face :mod:`datasets` package can be imported."""

    return importlib.util.find_spec("datasets") is not None


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(name, f"not UTF-8 text ({e})") from None


def _xz_holds_tar(path: Path) -> bool:
    """Whether the decompressed stream starts with a tar header ("ustar" magic at 257)."""
    try:
        with lzma.open(path) as f:
            head = f.read(512)
    except (lzma.LZMAError, EOFError, OSError) as e:
        raise CorruptFileError(path, f"corrupt xz stream ({type(e).__name__}: {e})") from None
    return len(head) == 512 and head[257:262] == b"ustar"


def iter_xz_documents(path: str | Path) -> Iterator[tuple[str, str]]:
    """``(key, text)`` documents of one ``.xz`` file (an xz tar of .txt, or one document).

    Raises:
        CorruptFileError: the xz stream or the tar inside it is damaged (after yielding the
            documents read before the damage).
    """
    path = Path(path)
    if not _xz_holds_tar(path):
        try:
            with lzma.open(path) as f:
                data = f.read()
        except (lzma.LZMAError, EOFError, OSError) as e:
            raise CorruptFileError(path, f"corrupt xz stream ({type(e).__name__}: {e})") from None
        yield path.name, _decode(data, str(path))
        return
    try:
        with tarfile.open(path, mode="r|xz") as tar:
            for member in tar:
                if member.isfile() and not member.name.rsplit("/", 1)[-1].startswith("."):
                    f = tar.extractfile(member)
                    key = f"{path.name}:{member.name}"
                    yield key, _decode(f.read() if f else b"", key)
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as e:
        raise CorruptFileError(path, f"damaged xz tar ({type(e).__name__}: {e})") from None


def _is_hf_dataset(root: Path) -> bool:
    return (root / "state.json").is_file() or (root / "dataset_dict.json").is_file()


def _iter_arrow_texts(root: Path, hf_split: str, column: str) -> Iterator[tuple[str, str]]:
    """Documents of a save_to_disk folder read directly from its Arrow stream files."""
    import pyarrow as pa  # why: optional: this format only

    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text())["splits"]
        if hf_split not in splits:
            raise DatasetLayoutError(_NAME, root, f"no split {hf_split!r} (has {splits})", LAYOUT)
        root = root / hf_split
    state = json.loads((root / "state.json").read_text())
    i = 0
    for entry in state["_data_files"]:
        path = root / entry["filename"]
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_stream(source)
            if column not in reader.schema.names:
                raise DatasetLayoutError(
                    _NAME, path, f"no {column!r} column (has {reader.schema.names})", LAYOUT
                )
            for batch in reader:
                for text in batch.column(column).to_pylist():
                    yield f"{root.name}[{i}]", text
                    i += 1


class OpenWebText(TextDocuments, SkipsCorruptFiles):
    """OpenWebText documents from a folder of .txt/.xz files or a save_to_disk dataset.

    Args:
        root: the dataset folder (see :data:`LAYOUT`).
        split: ``"all"``, ``"train"`` (all but the last ``valid_docs``) or ``"valid"``.
        valid_docs: size of MDLM's validation tail (>= 1).
        hf_split: the split of a saved ``DatasetDict`` (ignored for a plain ``Dataset``).
        column: the text column of a saved dataset.
        use_datasets: read a saved dataset with :mod:`datasets` (None: when importable).
        on_error: ``"skip"`` or ``"raise"`` on an unreadable document file.

    Items: ``{"key": str, "text": str}``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        valid_docs: int = MDLM_VALID_DOCS,
        hf_split: str = "train",
        column: str = "text",
        use_datasets: bool | None = None,
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        if split not in ("all", "train", "valid"):
            raise ValueError(f"OpenWebText split must be all, train or valid, got {split!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(_NAME, self.root, "missing dataset folder", LAYOUT)
        if valid_docs < 1:
            raise ValueError(f"valid_docs must be >= 1, got {valid_docs}")
        self.split, self.valid_docs = split, valid_docs
        self.hf_split, self.column = hf_split, column
        self.is_hf = _is_hf_dataset(self.root)
        self.use_datasets = datasets_available() if use_datasets is None else use_datasets
        if self.is_hf:
            self.files: list[Path] = []
        else:
            self.files = sorted(
                p for p in self.root.rglob("*") if p.is_file() and p.suffix in (".txt", ".xz")
            )
            if not self.files:
                raise DatasetLayoutError(_NAME, self.root, "no .txt/.xz documents", LAYOUT)
        self._count: int | None = None

    # -- raw document streams ---------------------------------------------------------------
    def _iter_folder(self) -> Iterator[tuple[str, str]]:
        for path in self.files:
            try:
                if path.suffix == ".xz":
                    yield from iter_xz_documents(path)
                else:
                    key = str(path.relative_to(self.root))
                    yield key, _decode(path.read_bytes(), str(path))
            except CorruptFileError as err:
                self._skip(err)

    def _iter_hf(self) -> Iterator[tuple[str, str]]:
        if not self.use_datasets:
            yield from _iter_arrow_texts(self.root, self.hf_split, self.column)
            return
        import datasets  # why: optional: this format only

        ds = datasets.load_from_disk(str(self.root))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[self.hf_split]
        for i, row in enumerate(ds):
            yield f"{self.hf_split}[{i}]", row[self.column]

    def _iter_all(self) -> Iterator[tuple[str, str]]:
        """Every usable document; empty ones are skipped and recorded."""
        docs = self._iter_hf() if self.is_hf else self._iter_folder()
        for key, text in docs:
            if text is None or not text.strip():
                self._skip(CorruptFileError(self.root / key, "empty document"))
            else:
                yield key, text

    def _no_documents(self) -> DatasetLayoutError:
        why = f" ({len(self.skipped)} skipped, e.g. {self.skipped[0]})" if self.skipped else ""
        return DatasetLayoutError(_NAME, self.root, f"no usable document{why}", LAYOUT)

    def count_documents(self) -> int:
        """Number of usable documents (one pass; cached)."""
        if self._count is None:
            before = len(self.skipped)
            self._count = sum(1 for _ in self._iter_all())
            if self._count == 0:
                raise self._no_documents()
            del self.skipped[before:]  # the counting pass must not double-count skipped files
        return self._count

    def documents(self) -> Iterator[tuple[str, str]]:
        """``(key, text)`` of the selected split, in reading order.

        Raises:
            DatasetLayoutError: no usable document under ``root``.
            ValueError: ``split`` is train or valid and the corpus has no more than
                ``valid_docs`` documents.
        """
        if self.split == "all":
            return self._iter_all_checked()
        n = self.count_documents()
        if n <= self.valid_docs:
            raise ValueError(
                f"{self.root}: {n} usable documents, but the last valid_docs = "
                f"{self.valid_docs} are the validation split, leaving none to train on: "
                f"lower valid_docs (params: data.valid_docs)"
            )
        if self.split == "train":
            return islice(self._iter_all(), n - self.valid_docs)
        return islice(self._iter_all(), n - self.valid_docs, None)

    def _iter_all_checked(self) -> Iterator[tuple[str, str]]:
        n = 0
        for doc in self._iter_all():
            n += 1
            yield doc
        if n == 0:
            raise self._no_documents()

