"""The embedded default text corpus, read from a Debian documentation package.

Two sources, both as the Debian packages install them:

* ``python-doc`` — package ``python3.11-doc`` (Debian 12): the reStructuredText sources of the
  Python 3.11 documentation, ``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``
  (497 files, ~11 MB). One document per file.
* ``fortunes`` — packages ``fortunes-min`` / ``fortunes``: ``/usr/share/games/fortunes/<name>``
  text files of fortunes separated by lines holding a single ``%`` (next to ``<name>.dat``
  index files and ``<name>.u8`` symlinks, which are ignored, as is the rot13 ``off/`` folder of
  ``fortunes-off``). One document per fortune.

Splits are deterministic and order-independent: a document is in ``valid`` when the sha256 of its
key falls in the first ``valid_fraction`` of the hash range.

A file that is not UTF-8, an empty document and a fortune file without fortunes are skipped and
recorded in ``skipped``; a corpus with no usable document at all is an error naming its folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from unmask.data.base import TextDocuments
from unmask.data.errors import CorruptFileError, DatasetLayoutError, OnError, SkipsCorruptFiles

__all__ = ["TextCorpus", "SOURCES", "split_of", "parse_fortunes"]

#: source name → (default root, Debian package, layout description).
SOURCES: dict[str, tuple[Path, str, str]] = {
    "python-doc": (
        Path("/usr/share/doc/python3.11/html/_sources"),
        "python3.11-doc",
        """
<root>/ (default /usr/share/doc/python3.11/html/_sources, from `apt-get install python3.11-doc`)
  about.rst.txt, bugs.rst.txt, ...
  library/*.rst.txt, tutorial/*.rst.txt, reference/*.rst.txt, ...   one document per file
""",
    ),
    "fortunes": (
        Path("/usr/share/games/fortunes"),
        "fortunes-min",
        """
<root>/ (default /usr/share/games/fortunes, from `apt-get install fortunes-min` or `fortunes`)
  fortunes, literature, riddles, ...     fortunes separated by lines holding only "%"
  fortunes.dat, ...                      strfile indexes (ignored)
  fortunes.u8 -> fortunes                symlinks (ignored)
""",
    ),
}


def split_of(key: str, valid_fraction: float) -> str:
    """``"valid"`` if sha256(key) lies in the first ``valid_fraction`` of its range, else
    ``"train"``."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return "valid" if h < valid_fraction * 2**64 else "train"


def parse_fortunes(text: str) -> list[str]:
    """Split a fortune file on lines consisting of a single ``%``; empty entries dropped."""
    entries, cur = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == "%":
            entries.append("\n".join(cur).strip("\n"))
            cur = []
        else:
            cur.append(line)
    entries.append("\n".join(cur).strip("\n"))
    return [e for e in entries if e.strip()]


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text ({e})") from None
    except OSError as e:
        raise CorruptFileError(path, f"unreadable ({e})") from None


class TextCorpus(TextDocuments, SkipsCorruptFiles):
    """Documents of a Debian text corpus (see :data:`SOURCES`).

    Args:
        source: ``"python-doc"`` or ``"fortunes"``.
        root: override the installed location.
        split: ``"all"``, ``"train"`` or ``"valid"`` (hash split, see :func:`split_of`).
        valid_fraction: share of documents in ``valid``.
        on_error: ``"skip"`` or ``"raise"`` on an unreadable file.

    Items: ``{"key": str, "text": str}``.
    """

    def __init__(
        self,
        source: str = "python-doc",
        root: str | Path | None = None,
        split: str = "all",
        valid_fraction: float = 0.05,
        on_error: OnError = "skip",
    ):
        self._init_skips(on_error)
        if source not in SOURCES:
            raise ValueError(f"unknown text source {source!r}; valid: {', '.join(SOURCES)}")
        if split not in ("all", "train", "valid"):
            raise ValueError(f"split must be all, train or valid, got {split!r}")
        default_root, package, layout = SOURCES[source]
        self.source, self.split, self.valid_fraction = source, split, valid_fraction
        self.root = Path(root) if root is not None else default_root
        self.name = name = f"text corpus {source!r} (Debian package {package})"
        if not self.root.is_dir():
            raise DatasetLayoutError(name, self.root, "missing corpus folder", layout)
        if source == "python-doc":
            self.files = sorted(p for p in self.root.rglob("*.rst.txt") if p.is_file())
        else:
            self.files = sorted(
                p
                for p in self.root.iterdir()
                if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
            )
        if not self.files:
            raise DatasetLayoutError(name, self.root, "no corpus files", layout)

    def _docs_of(self, path: Path) -> list[tuple[str, str]]:
        rel = str(path.relative_to(self.root))
        text = _read_text(path)
        if self.source == "python-doc":
            docs = [(rel, text)] if text.strip() else []
        else:
            docs = [(f"{rel}:{i}", t) for i, t in enumerate(parse_fortunes(text))]
        if not docs:
            raise CorruptFileError(path, "empty document" if self.source == "python-doc"
                                   else "no fortunes in the file")
        return docs

    def documents(self) -> Iterator[tuple[str, str]]:
        """``(key, text)`` of the selected split, in sorted file order.

        Raises:
            DatasetLayoutError: no file of the corpus holds a usable document.
        """
        usable = 0
        for docs in self._iter_skipping(self.files, self._docs_of):
            usable += len(docs)
            for key, text in docs:
                if self.split == "all" or split_of(key, self.valid_fraction) == self.split:
                    yield key, text
        if usable == 0:
            why = f"; e.g. {self.skipped[0]}" if self.skipped else ""
            raise DatasetLayoutError(self.name, self.root,
                                     f"no usable document ({len(self.skipped)} skipped{why})",
                                     SOURCES[self.source][2])
