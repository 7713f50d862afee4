"""Token shards: round trip, atomic finalize, resume of an interrupted write, manifest checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unmask.data.shards import MANIFEST, ShardError, ShardWriter, TokenShards, token_dtype

RNG = np.random.default_rng(0)
TOKENS = RNG.integers(0, 8, (10, 4, 5))
LABELS = RNG.integers(0, 3, 10)
SPEC = dict(
    count=10,
    shape=(4, 5),
    vocab_size=8,
    labels=True,
    tokenizer={"identity": "pixel(levels=8)", "hash": "abc"},
    source={"hash": "src"},
)


def test_round_trip(tmp_path):
    lat = RNG.standard_normal((10, 2, 3)).astype(np.float32)
    with ShardWriter(tmp_path / "s", **SPEC, latent_shape=(2, 3), meta={"num_classes": 3}) as w:
        for i in range(0, 10, 3):
            w.write(TOKENS[i : i + 3], LABELS[i : i + 3], lat[i : i + 3])
    s = TokenShards(tmp_path / "s", tokenizer_hash="abc")
    assert len(s) == 10 and s.shape == (4, 5) and s.seq_len == 20 and s.vocab_size == 8
    assert s.tokens.dtype == np.uint8 and isinstance(s.tokens, np.memmap)
    t = s.tokens_tensor()
    assert t.dtype == torch.long and torch.equal(t, torch.from_numpy(TOKENS))
    assert s.tokens_tensor(slice(2, 4), flatten=True).shape == (2, 20)
    assert torch.equal(s.labels_tensor(), torch.from_numpy(LABELS))
    np.testing.assert_array_equal(s.latents, lat)
    assert s.meta == {"num_classes": 3} and s.manifest["labels"] == "labels.npy"
    assert not list(tmp_path.glob(".*"))  # no partial / old directories left behind


def test_unlabelled_any_shape(tmp_path):
    toks = RNG.integers(0, 1000, (3, 7))
    with ShardWriter(tmp_path / "u", count=3, shape=(7,), vocab_size=1000) as w:
        w.write(toks)
    s = TokenShards(tmp_path / "u")
    assert s.labels is None and s.labels_tensor() is None and s.tokens.dtype == np.uint16
    assert token_dtype(256) == np.uint8 and token_dtype(257) == np.uint16


def test_interrupted_write_leaves_nothing_final_and_resumes(tmp_path):
    path = tmp_path / "s"
    w = ShardWriter(path, **SPEC)
    w.write(TOKENS[:4], LABELS[:4])
    del w  # "crash" before finalize
    assert not path.exists()
    with pytest.raises(ShardError, match="not a finalized token shard.*partial"):
        TokenShards(path)
    w = ShardWriter(path, **SPEC)
    assert w.written == 4
    w.write(TOKENS[4:], LABELS[4:])
    w.finalize()
    assert torch.equal(TokenShards(path).tokens_tensor(), torch.from_numpy(TOKENS))


def test_changed_spec_restarts_and_finalize_replaces(tmp_path):
    path = tmp_path / "s"
    ShardWriter(path, **SPEC).write(TOKENS[:4], LABELS[:4])
    w = ShardWriter(path, **{**SPEC, "tokenizer": {"identity": "other", "hash": "def"}})
    assert w.written == 0
    with pytest.raises(ShardError, match="only 0 of 10 rows"):
        w.finalize()
    with ShardWriter(path, **SPEC) as w:
        w.write(TOKENS, LABELS)
    with ShardWriter(path, **{**SPEC, "labels": False}) as w:  # overwrite a finalized shard
        w.write(TOKENS)
    assert TokenShards(path).labels is None


def test_write_validation(tmp_path):
    w = ShardWriter(tmp_path / "s", **SPEC)
    with pytest.raises(ValueError, match="token ids must lie in 0..7"):
        w.write(TOKENS[:2] + 8, LABELS[:2])
    with pytest.raises(ValueError, match="rows of shape"):
        w.write(TOKENS[:2, :2], LABELS[:2])
    with pytest.raises(ValueError, match="labels=True"):
        w.write(TOKENS[:2])


def test_manifest_mismatch_names_the_shard(tmp_path):
    path = tmp_path / "s"
    with ShardWriter(path, **SPEC) as w:
        w.write(TOKENS, LABELS)
    with pytest.raises(ShardError, match=r"s: written by tokenizer 'pixel\(levels=8\)'"):
        TokenShards(path, tokenizer_hash="zzz")
    arr = np.load(path / "tokens.npy", mmap_mode="r+")
    arr[0, 0, 0] = (arr[0, 0, 0] + 1) % 8
    arr.flush()
    del arr
    with pytest.raises(ShardError, match=rf"{path}: tokens.npy does not match its manifest hash"):
        TokenShards(path)
    TokenShards(path, verify=False)  # sizes still agree
    m = json.loads((path / MANIFEST).read_text())
    m["shape"] = [5, 4]
    (path / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ShardError, match="the manifest says"):
        TokenShards(path, verify=False)


def test_short_shard_with_skipped_files(tmp_path):
    path = tmp_path / "s"
    w = ShardWriter(path, **SPEC)
    w.write(TOKENS[:4], LABELS[:4])
    w.skip("train/n1/bad.JPEG", "cannot identify image file")
    del w  # interrupted: the skip survives a resume
    w = ShardWriter(path, **SPEC)
    assert (w.written, w.consumed) == (4, 5) and w.skipped[0]["path"] == "train/n1/bad.JPEG"
    w.write(TOKENS[4:8], LABELS[4:8])
    with pytest.raises(ShardError, match=r"only 8 of 10 rows written \(1 skipped\)"):
        w.finalize()
    w.finalize(allow_short=True)
    s = TokenShards(path)  # verifies the truncated files against the manifest hashes
    assert len(s) == 8 and s.manifest["requested_count"] == 10
    assert s.skipped == [{"path": "train/n1/bad.JPEG", "reason": "cannot identify image file"}]
    assert s.tokens.shape == (8, 4, 5) and s.labels.shape == (8,)
    assert torch.equal(s.tokens_tensor(), torch.from_numpy(TOKENS[:8]))
    assert torch.equal(s.labels_tensor(), torch.from_numpy(LABELS[:8]))
    assert np.load(path / "tokens.npy").shape == (8, 4, 5)  # the file itself, not a view


def test_empty_short_shard_is_an_error(tmp_path):
    w = ShardWriter(tmp_path / "s", **SPEC)
    w.skip("a.jpg", "corrupt")
    with pytest.raises(ShardError, match=r"no rows written \(1 skipped\)"):
        w.finalize(allow_short=True)


def test_flipped_set_is_stored_and_doubles_the_training_set(tmp_path):
    flip = TOKENS[:, :, ::-1]
    with ShardWriter(tmp_path / "s", **SPEC, flip=True) as w:
        with pytest.raises(ValueError, match="flip=True"):
            w.write(TOKENS[:2], LABELS[:2])
        w.write(TOKENS, LABELS, flipped=flip)
    s = TokenShards(tmp_path / "s")
    assert s.has_flip and s.manifest["flip"] == "tokens_flip.npy"
    assert "tokens_flip" in s.manifest["files"]
    assert torch.equal(s.tokens_tensor(flipped=True), torch.from_numpy(flip.copy()))
    x, y = s.training_set()
    assert torch.equal(x, torch.cat([torch.from_numpy(TOKENS), torch.from_numpy(flip.copy())]))
    assert torch.equal(y, torch.from_numpy(np.concatenate([LABELS, LABELS])))
    with ShardWriter(tmp_path / "n", **SPEC) as w:
        w.write(TOKENS, LABELS)
    plain = TokenShards(tmp_path / "n")
    assert not plain.has_flip and len(plain.training_set()[0]) == 10
    with pytest.raises(ShardError, match="no flipped tokens"):
        plain.tokens_tensor(flipped=True)
