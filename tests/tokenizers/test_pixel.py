"""Pixel tokenizer: quantisation bins, bin-centre decoding, area resize, RGB interleaving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.tokenizers import PixelTokenizer


def test_bins_and_centres():
    tok = PixelTokenizer(levels=4)
    x = np.array([[[0, 63, 64, 127], [128, 191, 192, 255]]], dtype=np.uint8)
    t = tok.encode(x)
    assert t.dtype == torch.long and t.tolist() == [[[0, 0, 1, 1], [2, 2, 3, 3]]]
    assert tok.decode(t).tolist() == [[[32, 32, 96, 96], [160, 160, 224, 224]]]
    assert tok.vocab_size == 4


def test_lossless_at_256_levels():
    x = np.random.default_rng(0).integers(0, 256, (3, 5, 6), dtype=np.uint8)
    tok = PixelTokenizer(levels=256)
    np.testing.assert_array_equal(tok.decode(tok.encode(x)), x)


def test_area_resize_and_flat_decode():
    x = np.zeros((2, 28, 28), np.uint8)
    x[:, :14] = 255
    tok = PixelTokenizer(levels=8, size=14)
    t = tok.encode(x)
    assert t.shape == (2, 14, 14) and tok.token_shape((28, 28)) == (14, 14)
    assert (t[:, :7] == 7).all() and (t[:, 7:] == 0).all()
    assert tok.decode(t.reshape(2, -1)).shape == (2, 14, 14)
    assert PixelTokenizer(8, 16).encode(x).shape == (2, 16, 16)  # non-integer factor


def test_rgb_interleaved():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    x[..., 1] = 255
    tok = PixelTokenizer(levels=2, size=2, channels=3)
    t = tok.encode(x)
    assert t.shape == (1, 2, 6) and t[0, 0].tolist() == [0, 1, 0, 0, 1, 0]
    assert tok.decode(t).shape == (1, 2, 2, 3)


def test_identity_and_validation():
    a, b = PixelTokenizer(8, 14), PixelTokenizer(8, 16)
    assert a.identity == "pixel(levels=8,size=14x14,channels=1,resize=area)"
    assert a.hash != b.hash and a.hash == PixelTokenizer(8, (14, 14)).hash
    with pytest.raises(ValueError, match="levels must be in 2..256"):
        PixelTokenizer(levels=1)
    with pytest.raises(ValueError, match="expected uint8"):
        a.encode(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected images \[N, H, W\]"):
        a.encode(np.zeros((28, 28), np.uint8))
