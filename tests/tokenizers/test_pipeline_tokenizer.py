"""The default pipeline's tokenizer stages on a small Fashion-MNIST subset: `tokenizer` trains
(VQ) or records (pixel) the tokenizer and measures it on held-out images; `tokenize` writes
shards (with flipped training copies) that the one loader, `build_tokenizer`, matches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unmask.config import load_params
from unmask.data import fashion_mnist
from unmask.data.shards import TokenShards
from unmask.stages import prepare, tokenize, train_tokenizer
from unmask.tokenizers import build_tokenizer

pytestmark = pytest.mark.skipif(
    not fashion_mnist.DEFAULT_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist"
)
SMALL = [
    "data.n_train=128", "data.n_val=16", "data.n_test=32",
    "tokenizer.vq.steps=5", "tokenizer.vq.hidden=8", "tokenizer.vq.codebook_size=32",
    "tokenizer.vq.batch_size=16", "model.dim=32", "model.depth=1", "model.heads=2",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("kind", ["vq", "pixel"])
def test_tokenizer_and_tokenize_stages(kind, tmp_path, monkeypatch):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    p = load_params(repo / "params.yaml", [*SMALL, f"tokenizer.kind={kind}", "tokenizer.flip=true"])
    prepare.run(p)
    m = train_tokenizer.run(p)
    assert (tmp_path / "models/tokenizer.pt").is_file()
    saved = json.loads((tmp_path / "metrics/tokenizer.json").read_text())
    assert saved["kind"] == kind and saved["n_heldout"] == 32 and saved == json.loads(json.dumps(m))
    tok = build_tokenizer(p.tokenizer)
    if kind == "vq":
        assert saved["vocab_size"] == 32 and saved["token_grid"] == [7, 7]
        assert saved["train_steps"] == 5 and saved["train_images"] == 128
    else:
        assert saved["vocab_size"] == 8 and saved["token_grid"] == [14, 14]
    tokenize.run(p)
    train = TokenShards(tmp_path / "data/tokens/train", tokenizer_hash=tok.hash)
    test = TokenShards(tmp_path / "data/tokens/test", tokenizer_hash=tok.hash)
    assert train.has_flip and not test.has_flip and len(train) == 128
    with np.load(tmp_path / "data/prepared/train.npz") as z:
        images = z["images"]
    np.testing.assert_array_equal(train.tokens, tok.encode(images).numpy())
    mirrored = np.stack([np.fliplr(im) for im in images])
    np.testing.assert_array_equal(train.flipped, tok.encode(mirrored).numpy())
