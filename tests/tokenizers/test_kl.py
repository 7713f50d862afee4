"""KL-16 tokenizer: diffusers AutoencoderKL folders and MAR's checkpoint format, on tiny random
checkpoints written by the tests; the MAR re-implementation is checked against diffusers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from unmask.tokenizers.kl import KLTokenizer  # noqa: E402
from unmask.tokenizers.mar_kl import (  # noqa: E402
    MAR_SCALE_FACTOR,
    MARAutoencoderKL,
    infer_mar_config,
    mar_to_diffusers,
)

# MAR's layout at toy width: 3 levels (f = 4), attention in the encoder's last level.
TINY = dict(embed_dim=4, ch_mult=(1, 2, 2), ch=32, num_res_blocks=1, encoder_attn_levels=(2,))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids oversubscribing a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere (incl. norms and biases), so every mapping matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else 0.1))


def _mar_ckpt(path: Path, seed: int = 0, **extra) -> MARAutoencoderKL:
    model = MARAutoencoderKL(**TINY)
    _randomize(model, seed)
    torch.save({"model": {**model.state_dict(), **extra}}, path)
    return model


def _images(n: int = 2, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_full_mar_kl16_layout() -> None:
    """Names/shapes of MAR's AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4)): 312 tensors
    (counted from MAR's models/vae.py), 16 latent channels, attention only at 16×16."""
    with torch.device("meta"):
        sd = MARAutoencoderKL().state_dict()
    assert len(sd) == 312
    shapes = {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.down.2.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.down.4.attn.1.proj_out.weight": (512, 512, 1, 1),
        "encoder.down.3.downsample.conv.weight": (256, 256, 3, 3),
        "encoder.conv_out.weight": (32, 512, 3, 3),
        "quant_conv.weight": (32, 32, 1, 1),
        "post_quant_conv.weight": (16, 16, 1, 1),
        "decoder.conv_in.weight": (512, 16, 3, 3),
        "decoder.up.3.block.0.nin_shortcut.weight": (256, 512, 1, 1),
        "decoder.up.4.block.2.conv2.weight": (512, 512, 3, 3),
        "decoder.up.1.upsample.conv.weight": (128, 128, 3, 3),
        "decoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    }
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert "encoder.down.4.downsample.conv.weight" not in sd and "decoder.up.0.upsample" not in sd
    assert not any(".attn." in k for k in sd if k.startswith("decoder.up"))
    assert infer_mar_config(sd)["encoder_attn_levels"] == (4,)


def test_mar_port_matches_diffusers_autoencoderkl(tmp_path: Path) -> None:
    """Two independent implementations agree: our MAR port and diffusers' AutoencoderKL loaded
    (strictly) with the converted weights give the same moments and reconstructions."""
    model = _mar_ckpt(tmp_path / "kl.ckpt").eval()
    config, state = mar_to_diffusers(model.state_dict())
    ref = diffusers.AutoencoderKL(**{k: v for k, v in config.items()})
    ref.load_state_dict(state, strict=True)
    ref.eval()
    x = torch.from_numpy(_images()).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        mean, logvar = model.encode(x)
        dist = ref.encode(x).latent_dist
        torch.testing.assert_close(mean, dist.mean, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(logvar, dist.logvar, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            model.decode(mean), ref.decode(mean).sample, atol=1e-4, rtol=1e-4
        )


def test_from_mar_checkpoint_encode_decode(tmp_path: Path) -> None:
    model = _mar_ckpt(tmp_path / "kl16.ckpt", **{"loss.logvar": torch.zeros(())}).eval()
    tok = KLTokenizer.from_mar(tmp_path / "kl16.ckpt")
    assert tok.scale_factor == MAR_SCALE_FACTOR and tok.downsample == 4
    images = _images(3)
    z = tok.encode(images, batch_size=2)
    assert z.shape == (3, 4, 4, 4) == (3, *tok.latent_shape((16, 16)))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        torch.testing.assert_close(z, model.encode(x)[0] * MAR_SCALE_FACTOR)
        expected = model.decode(z / MAR_SCALE_FACTOR)
    out = tok.decode(z)
    assert out.shape == images.shape and out.dtype == np.uint8
    exp = ((expected.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - exp.astype(int)).max() <= 1
    g = torch.Generator().manual_seed(0)
    zs = tok.encode(images, sample=True, generator=g)
    assert zs.shape == z.shape and not torch.allclose(zs, z)
    assert '"format":"mar"' in tok.identity and "weights=sha256:" in tok.identity


def test_from_diffusers_folder(tmp_path: Path) -> None:
    model = _mar_ckpt(tmp_path / "kl.ckpt")
    config, state = mar_to_diffusers(model.state_dict())
    ref = diffusers.AutoencoderKL(**config)
    ref.load_state_dict(state)
    ref.save_pretrained(tmp_path / "vae")
    tok = KLTokenizer.from_diffusers(tmp_path, subfolder="vae")
    assert tok.scale_factor == pytest.approx(MAR_SCALE_FACTOR)  # from config.scaling_factor
    mar = KLTokenizer.from_mar(tmp_path / "kl.ckpt")
    images = _images()
    torch.testing.assert_close(tok.encode(images), mar.encode(images), atol=1e-4, rtol=1e-4)
    assert (
        np.abs(
            tok.decode(tok.encode(images)).astype(int) - mar.decode(mar.encode(images)).astype(int)
        ).max()
        <= 1
    )
    assert tok.identity != mar.identity and '"format":"diffusers"' in tok.identity
    assert KLTokenizer.from_diffusers(tmp_path / "vae", scale_factor=1.0).scale_factor == 1.0


def test_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="kl16.ckpt"):
        KLTokenizer.from_mar(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "a.ckpt")
    with pytest.raises(ValueError, match='"model": state_dict'):
        KLTokenizer.from_mar(tmp_path / "a.ckpt")
    torch.save({"model": {"foo": torch.zeros(1)}}, tmp_path / "b.ckpt")
    with pytest.raises(ValueError, match="not an LDM/MAR KL"):
        KLTokenizer.from_mar(tmp_path / "b.ckpt")
    sd = MARAutoencoderKL(**TINY).state_dict()
    sd.pop("decoder.conv_out.bias")
    torch.save({"model": sd}, tmp_path / "c.ckpt")
    with pytest.raises(ValueError, match="missing weights"):
        KLTokenizer.from_mar(tmp_path / "c.ckpt")
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        KLTokenizer.from_diffusers(tmp_path)
