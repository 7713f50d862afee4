"""Debian text corpora (python3.11-doc reST sources, fortunes) on fixtures in the installed
layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from unmask.data.errors import DatasetLayoutError
from unmask.data.text_corpus import SOURCES, TextCorpus, parse_fortunes, split_of
from unmask.tokenizers.bpe import GPT2BPE


def _python_doc(root: Path) -> None:
    (root / "library").mkdir(parents=True)
    (root / "tutorial").mkdir()
    (root / "about.rst.txt").write_text("=====\nAbout\n=====\n\nThese documents...\n")
    (root / "library" / "os.rst.txt").write_text(":mod:`os` --- OS interfaces\n" * 30)
    (root / "tutorial" / "index.rst.txt").write_text(".. _tutorial-index:\n\nPython is easy.\n")
    (root / "tutorial" / "notes.html").write_text("<p>not a source</p>")  # ignored


def _fortunes(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fortunes").write_text("A day for firm decisions!\n%\nTwo\nlines.\n%\n%\nLast one.\n")
    (root / "fortunes.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    os.symlink("fortunes", root / "fortunes.u8")
    (root / "riddles").write_text("Q: Why?\nA: Because.\n%\n")
    (root / "off").mkdir()  # fortunes-off's rot13 folder: ignored
    (root / "off" / "racing").write_text("Ebg13\n%\n")


def test_python_doc_sources_one_document_per_file(tmp_path: Path) -> None:
    _python_doc(tmp_path)
    docs = list(TextCorpus("python-doc", tmp_path))
    assert [d["key"] for d in docs] == [
        "about.rst.txt",
        "library/os.rst.txt",
        "tutorial/index.rst.txt",
    ]
    assert docs[2]["text"].startswith(".. _tutorial-index:")


def test_fortunes_split_on_percent_lines(tmp_path: Path) -> None:
    _fortunes(tmp_path)
    docs = list(TextCorpus("fortunes", tmp_path))
    assert [(d["key"], d["text"]) for d in docs] == [
        ("fortunes:0", "A day for firm decisions!"),
        ("fortunes:1", "Two\nlines."),
        ("fortunes:2", "Last one."),
        ("riddles:0", "Q: Why?\nA: Because."),
    ]
    assert parse_fortunes("only one") == ["only one"]


def test_hash_split_is_a_deterministic_partition(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "many").write_text("\n%\n".join(f"fortune {i}" for i in range(200)))
    everything = {d["key"] for d in TextCorpus("fortunes", tmp_path / "f")}
    train = {d["key"] for d in TextCorpus("fortunes", tmp_path / "f", "train", 0.2)}
    valid = {d["key"] for d in TextCorpus("fortunes", tmp_path / "f", "valid", 0.2)}
    assert train | valid == everything and not train & valid
    assert 20 <= len(valid) <= 60
    assert all(split_of(k, 0.2) == "valid" for k in valid)


def test_bad_file_skipped_and_blocks_packed(tmp_path: Path) -> None:
    _python_doc(tmp_path)
    (tmp_path / "library" / "bad.rst.txt").write_bytes(b"caf\xe9")
    ds = TextCorpus("python-doc", tmp_path)
    blocks = list(ds.iter_blocks(GPT2BPE(), block_size=32))
    assert [Path(s.path).name for s in ds.skipped] == ["bad.rst.txt"]
    assert len(blocks) >= 5 and all(b.shape == (32,) for b in blocks)
    assert (np.stack(blocks)[:, [0, -1]] == 50256).all()


def test_missing_corpus_names_path_and_package(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="python3.11-doc") as e:
        TextCorpus("python-doc", tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value) and "*.rst.txt" in str(e.value)
    assert SOURCES["python-doc"][0] == Path("/usr/share/doc/python3.11/html/_sources")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no corpus files"):
        TextCorpus("fortunes", tmp_path / "empty")
