"""The small VQ-VAE: quantiser correctness, dead-code restarts, a short real training run,
tokenizer round trips and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.tokenizers.vq import (
    VQVAE,
    EMAQuantizer,
    VQConfig,
    VQTokenizer,
    codebook_stats,
    evaluate_vq,
    psnr,
    train_vq,
)

SMALL = dict(hidden=16, latent_dim=16, codebook_size=128, num_res=1, batch_size=32, lr=3e-3)


@pytest.fixture
def one_thread():
    """Training is tiny: one thread avoids oversubscribing a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_quantizer_picks_nearest_code_and_passes_gradients() -> None:
    torch.manual_seed(0)
    q = EMAQuantizer(32, 4).eval()
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    zq, idx, commit = q(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, q.embed).argmin(1)
    assert torch.equal(idx.reshape(-1), brute)
    torch.testing.assert_close(zq.detach(), q.lookup(idx))
    zq.sum().backward()  # straight-through: d(zq)/dz = identity
    torch.testing.assert_close(z.grad, torch.ones_like(z))
    assert commit.item() == pytest.approx(((z - zq) ** 2).mean().item())


def test_dead_codes_restart_at_encoder_outputs() -> None:
    torch.manual_seed(0)
    q = EMAQuantizer(16, 2, decay=0.5, dead_threshold=0.5)
    data = torch.randn(1, 2, 8, 8)
    q.train()
    q(data)  # first call: initialises the codebook from the data
    q.embed[1:] = -100.0  # now kill 15 codes
    q.embed_avg[1:] = -100.0
    q.cluster_size[1:] = 0.0
    _, idx, _ = q(data)
    assert q.restarts >= 15
    flat = data.permute(0, 2, 3, 1).reshape(-1, 2)
    dist = (q.embed[1:, None, :] - flat[None]).abs().sum(-1).min(1).values
    assert (dist < 1e-6).all()  # every restarted code now sits on a data vector
    q.eval()
    assert codebook_stats(q(data)[1], 16)["usage"] > 0.5


def test_codebook_stats_and_psnr() -> None:
    s = codebook_stats(torch.tensor([0, 1, 2, 3]), 8)
    assert s["perplexity"] == pytest.approx(4.0) and s["usage"] == 0.5
    a = np.zeros((2, 4, 4), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255² / 32
    assert psnr(a, b) == pytest.approx(10 * np.log10(32))
    assert psnr(a, a) == float("inf")


def test_short_training_improves_psnr_and_uses_codebook(one_thread) -> None:
    from unmask.data import fashion_mnist

    if not fashion_mnist.DEFAULT_ROOT.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    images, _ = fashion_mnist.load("test")
    train, held_out = images[:1000], images[-300:]
    cfg = VQConfig(steps=150, **SMALL)
    torch.manual_seed(0)
    before = evaluate_vq(VQVAE(cfg), held_out)
    model = train_vq(train, cfg, progress=False, log_every=50)
    after = evaluate_vq(model, held_out)
    assert after["psnr"] > before["psnr"] + 5.0, (before, after)
    assert after["usage"] > 0.5 and after["perplexity"] > 20
    assert [h["step"] for h in model.history] == [50, 100, 150]
    assert model.history[-1]["recon_mse"] < model.history[0]["recon_mse"]


def test_tokenizer_round_trip_and_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = VQConfig(**SMALL)
    model = VQVAE(cfg).eval()
    tok = VQTokenizer(model)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    idx = tok.encode(images, batch_size=2)
    assert idx.shape == (5, 7, 7) and idx.dtype == torch.long
    assert tok.token_shape((28, 28)) == (7, 7) and tok.vocab_size == 128
    assert int(idx.min()) >= 0 and int(idx.max()) < 128
    out = tok.decode(idx)
    assert out.shape == (5, 28, 28) and out.dtype == np.uint8
    with torch.no_grad():  # decode(encode(x)) is the model's own quantised reconstruction
        x = torch.from_numpy(images).float().unsqueeze(1) / 127.5 - 1
        recon = model(x)[0].clamp(-1, 1)
    np.testing.assert_array_equal(out, ((recon[:, 0] + 1) * 127.5).round().byte().numpy())
    tok.encode(tok.decode(idx))  # decoded images are valid encoder inputs
    path = tok.save(tmp_path / "vq.pt")
    again = VQTokenizer.load(path)
    assert again.identity == tok.identity and again.hash == tok.hash
    assert torch.equal(again.encode(images), idx)
    assert "weights=sha256:" in tok.identity and '"codebook_size":128' in tok.identity
    other = VQTokenizer(VQVAE(cfg))
    assert other.identity != tok.identity  # different weights, different identity
    with pytest.raises(ValueError, match="token ids"):
        tok.decode(torch.full((1, 7, 7), 128))


def test_bad_checkpoints_and_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no VQ-VAE checkpoint"):
        VQTokenizer.load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        VQTokenizer.load(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a unmask.vq/1 checkpoint"):
        VQTokenizer.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown VQ config keys \\['codebook'\\]"):
        VQConfig.from_dict({"codebook": 3})


def test_pipeline_loads_the_trained_tokenizer_from_params(tmp_path: Path) -> None:
    """unmask.tokenizers.build_tokenizer: pixel from params; VQ from the trained file, checked
    against the params' architecture; a missing file names the stage to run."""
    from unmask.config import ConfigError, load_params
    from unmask.tokenizers import PixelTokenizer, build_tokenizer

    f = tmp_path / "params.yaml"
    ckpt = tmp_path / "tok.pt"
    f.write_text(
        "tokenizer: {kind: vq, path: " + str(ckpt) + ", vq: {codebook_size: 32, hidden: 8}}\n"
        "model: {dim: 32, depth: 1, heads: 2}\n"
    )
    p = load_params(f)
    assert p.model.vocab_size == 32 and p.model.grid == (7, 7)
    with pytest.raises(
        FileNotFoundError, match="tok.pt: no trained VQ tokenizer.*'train-tokenizer' stage"
    ):
        build_tokenizer(p.tokenizer)
    torch.manual_seed(0)
    model = VQVAE(VQConfig(**p.tokenizer.vq.vq_config()))
    VQTokenizer(model).save(ckpt)
    tok = build_tokenizer(p.tokenizer)
    assert isinstance(tok, VQTokenizer) and tok.identity == VQTokenizer(model).identity
    wrong = load_params(f, ["tokenizer.vq.hidden=16"])
    with pytest.raises(ValueError, match="trained with hidden=8 but tokenizer.vq says hidden=16"):
        build_tokenizer(wrong.tokenizer)
    pix = load_params(f, ["tokenizer.kind=pixel", "tokenizer.levels=4", "tokenizer.size=14"])
    assert isinstance(build_tokenizer(pix.tokenizer), PixelTokenizer) and pix.model.vocab_size == 4
    with pytest.raises(ConfigError, match="tokenizer.vq.codebook_size must be >= 2"):
        load_params(f, ["tokenizer.vq.codebook_size=1"])


def test_tokenizer_stage_metrics_match_an_independent_psnr(tmp_path: Path, one_thread) -> None:
    """The `tokenizer` stage's held-out metrics: PSNR against torchmetrics' PSNR of the same
    reconstructions, usage/perplexity against a direct histogram."""
    tm = pytest.importorskip("torchmetrics.functional.image")
    from unmask.stages.train_tokenizer import reconstruction_metrics

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    torch.manual_seed(0)
    tok = VQTokenizer(VQVAE(VQConfig(hidden=8, latent_dim=4, codebook_size=16)))
    m = reconstruction_metrics(tok, images)
    recon = tok.decode(tok.encode(images))
    ref = tm.peak_signal_noise_ratio(
        torch.from_numpy(recon).double(), torch.from_numpy(images).double(), data_range=255.0
    )
    assert m["recon_psnr_db"] == pytest.approx(float(ref), rel=1e-6)
    counts = np.bincount(tok.encode(images).numpy().ravel(), minlength=16)
    p = counts[counts > 0] / counts.sum()
    assert m["codebook_perplexity"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())))
    assert m["codebook_usage"] == pytest.approx((counts > 0).mean())
    # A pixel tokenizer on a coarser grid is compared after pixel repetition.
    from unmask.tokenizers import PixelTokenizer

    pix = PixelTokenizer(levels=256, size=14)
    flat = np.repeat(np.repeat(rng.integers(0, 256, (5, 14, 14), dtype=np.uint8), 2, 1), 2, 2)
    assert reconstruction_metrics(pix, flat)["recon_psnr_db"] == float("inf")
