"""SD-VQ-F8 through diffusers VQModel, on a tiny random VQModel saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from unmask.data.fixtures import write_random_vqmodel  # noqa: E402
from unmask.tokenizers.sd_vq import SDVQTokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids oversubscribing a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sdvq")
    write_random_vqmodel(root / "vqvae")
    return root


def _images(n: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_encode_gives_nearest_code_indices(saved: Path) -> None:
    tok = SDVQTokenizer.from_pretrained(saved, subfolder="vqvae")
    assert tok.vocab_size == 16384 and tok.downsample == 8
    images = _images()
    idx = tok.encode(images, batch_size=2)
    assert idx.shape == (3, 4, 4) and idx.dtype == torch.long
    with torch.no_grad():  # oracle: brute-force nearest code of the encoder latents
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        h = tok.model.encode(x).latents.permute(0, 2, 3, 1).reshape(-1, 4)
        brute = torch.cdist(h, tok.model.quantize.embedding.weight).argmin(1)
    assert torch.equal(idx.reshape(-1), brute)
    assert tok.token_shape((256, 256)) == (32, 32)


def test_decode_of_indices_is_diffusers_own_reconstruction(saved: Path) -> None:
    tok = SDVQTokenizer.from_pretrained(saved, subfolder="vqvae")
    images = _images()
    idx = tok.encode(images)
    out = tok.decode(idx, batch_size=2)
    assert out.shape == images.shape and out.dtype == np.uint8
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        ref = tok.model(x).sample  # encode → quantize → decode, all inside diffusers
        h = tok.model.encode(x).latents
        zq = tok.model.quantize(h)[0]
    torch.testing.assert_close(tok.lookup(idx), zq)
    expected = ((ref.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="token ids"):
        tok.decode(torch.full((1, 4, 4), 16384))


def test_identity_hashes_the_weights(saved: Path, tmp_path: Path) -> None:
    a = SDVQTokenizer.from_pretrained(saved / "vqvae")
    assert a.identity == SDVQTokenizer.from_pretrained(saved, subfolder="vqvae").identity
    assert '"vocab":16384' in a.identity and "weights=sha256:" in a.identity
    write_random_vqmodel(tmp_path / "other", seed=1)
    assert SDVQTokenizer.from_pretrained(tmp_path / "other").identity != a.identity


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="save_pretrained") as e:
        SDVQTokenizer.from_pretrained(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)
