"""Pre-extraction from a real-format dataset: corrupt files skipped by name and counted, the
shard finalized short, flipped copies equal to tokenizing the flipped images, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unmask.data.fixtures import WNIDS, write_imagenet
from unmask.data.imagenet import ImageNet
from unmask.data.preextract import preextract
from unmask.data.shards import TokenShards
from unmask.data.transforms import center_crop_arr
from unmask.tokenizers.vq import VQVAE, VQConfig, VQTokenizer

SIZE = 32


@pytest.fixture(scope="module")
def tok() -> VQTokenizer:
    """A random small RGB VQ-VAE (32×32 → 8×8 tokens); a learned tokenizer is not
    flip-equivariant, so flipped tokens must be pre-extracted from flipped images."""
    torch.manual_seed(0)
    cfg = VQConfig(in_channels=3, hidden=8, latent_dim=4, codebook_size=64, num_down=2)
    return VQTokenizer(VQVAE(cfg))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_imagenet(tmp_path / "imagenet", per_class=3, size=(40, 52), corrupt=1)


def _run(root: Path, out: Path, tok, items=None, count=9) -> dict:
    ds = ImageNet(root, "train", image_size=SIZE)
    return preextract(
        ds if items is None else items(ds),
        tok,
        out,
        count=count,
        image_shape=(SIZE, SIZE, 3),
        label=lambda it, row: int(it["label"]),
        flip=True,
        batch_size=3,
        progress=False,
    )


def test_corrupt_file_is_skipped_named_and_counted(dataset, tok, tmp_path):
    res = _run(dataset, tmp_path / "shard", tok)
    bad = f"{WNIDS[0]}_3.JPEG"
    assert res["count"] == 8 and res["requested_count"] == 9 and res["num_skipped"] == 1
    assert bad in res["skipped"][0]["path"]
    s = TokenShards(tmp_path / "shard")
    assert len(s) == 8 and s.manifest["requested_count"] == 9 and bad in s.skipped[0]["path"]
    assert s.tokens.shape == (8, 8, 8) and s.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]


def test_flipped_tokens_equal_tokenizing_the_flipped_image(dataset, tok, tmp_path):
    _run(dataset, tmp_path / "shard", tok)
    s = TokenShards(tmp_path / "shard")
    files = sorted(p for p in (dataset / "train").rglob("*.JPEG") if p.name != f"{WNIDS[0]}_3.JPEG")
    # Independently of the loader: PIL decode, ADM crop, PIL's own mirror, then tokenize.
    crops = [center_crop_arr(Image.open(f).convert("RGB"), SIZE) for f in files]
    mirrored = [np.array(Image.fromarray(c).transpose(Image.FLIP_LEFT_RIGHT)) for c in crops]
    np.testing.assert_array_equal(s.tokens, tok.encode(np.stack(crops)).numpy())
    np.testing.assert_array_equal(s.flipped, tok.encode(np.stack(mirrored)).numpy())
    # Not the flipped token grid: that is why flips are pre-extracted.
    assert not np.array_equal(s.flipped, s.tokens[:, :, ::-1])
    x, y = s.training_set()
    assert len(x) == 16 and torch.equal(y[:8], y[8:])


def test_interrupted_run_resumes_to_the_same_shard(dataset, tok, tmp_path):
    _run(dataset, tmp_path / "full", tok)

    def crash_after_4(ds):
        for i, item in enumerate(ds):
            if i == 4:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        _run(dataset, tmp_path / "part", tok, items=crash_after_4)
    assert not (tmp_path / "part").exists() and (tmp_path / ".part.partial").is_dir()
    _run(dataset, tmp_path / "part", tok)
    a, b = TokenShards(tmp_path / "full"), TokenShards(tmp_path / "part")
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.flipped, b.flipped)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.skipped == a.skipped and len(b) == 8
