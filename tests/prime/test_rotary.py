"""Rotary position embeddings (RoPE) of the MDLM preset: the rotation equals the complex
multiplication z·e^{imθ} computed independently (numpy frequencies, torch.polar), attention
logits depend only on relative positions, and the prime model uses it in place of a position
table."""

import numpy as np
import pytest
import torch

from unmask.models.transformer import Attention
from unmask.prime.model import PrimeConfig, PrimeTransformer, load_prime_model, save_prime_model
from unmask.prime.rotary import RotaryAttention, apply_rotary

CFG = {"vocab_size": 11, "seq_len": 9, "dim": 32, "depth": 2, "heads": 4}


def _polar_reference(x: torch.Tensor, pos: np.ndarray, base: float = 10000.0) -> torch.Tensor:
    """z_i = x_i + i·x_{i+d/2} times e^{i m θ_i}, θ_i = base^{-2i/d}, in complex128."""
    d = x.shape[-1]
    theta = 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = torch.from_numpy(np.outer(pos.astype(np.float64), theta))  # (L, d/2)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double())
    w = z * torch.polar(torch.ones_like(ang), ang)
    return torch.cat([w.real, w.imag], dim=-1)


@pytest.mark.parametrize("d", [2, 8, 64])
def test_rotation_matches_complex_multiplication(d):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(3, 2, 17, d, generator=g, dtype=torch.float64)
    pos = np.array([0, 1, 2, 5, 7, 100, 1023, 4096, 3, 3, 9, 11, 12, 13, 50, 60, 70])
    got = apply_rotary(x, torch.from_numpy(pos))
    torch.testing.assert_close(got, _polar_reference(x, pos), atol=1e-10, rtol=1e-10)
    # a rotation: norms are kept
    torch.testing.assert_close(got.norm(dim=-1), x.norm(dim=-1))


def test_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 12, 16, generator=g, dtype=torch.float64)
    k = torch.randn(2, 4, 12, 16, generator=g, dtype=torch.float64)
    pos = torch.arange(12)

    def scores(p):
        return apply_rotary(q, p) @ apply_rotary(k, p).transpose(-1, -2)

    ref = scores(pos)
    for shift in (1, 7, 333, 10_000):
        torch.testing.assert_close(scores(pos + shift), ref, atol=1e-9, rtol=1e-9)
    # ... but they do depend on the relative positions (the test can fail)
    assert (scores(pos.flip(0)) - ref).abs().max() > 1e-2
    assert (scores(2 * pos) - ref).abs().max() > 1e-2


def test_rotary_attention_is_shift_invariant_and_not_plain_attention():
    torch.manual_seed(0)
    plain = Attention(32, 4)
    rot = RotaryAttention(32, 4)
    rot.load_state_dict(plain.state_dict())
    x = torch.randn(3, 10, 32)
    with torch.no_grad():
        y0 = rot(x)
        rot.offset = 517
        y1 = rot(x)
        yp = plain(x)
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-5)
    assert (y0 - yp).abs().max() > 1e-3
    with pytest.raises(ValueError, match="even head width"):
        RotaryAttention(12, 4)


def test_prime_model_with_rotary_has_no_position_table():
    a = PrimeTransformer({"model": CFG, "ell": 2})
    b = PrimeTransformer({"model": CFG, "ell": 2, "rotary": True})
    assert a.num_params() - b.num_params() == CFG["seq_len"] * CFG["dim"]
    assert not any("pos" in n for n, _ in b.named_parameters())
    assert all(isinstance(blk.attn, RotaryAttention) for blk in b.trunk.blocks)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, b.codec.base + 1, (4, CFG["seq_len"] * 2), generator=g)
    t = torch.rand(4, generator=g)
    b.eval()
    with torch.no_grad():
        out = b(y, t)
        for blk in b.trunk.blocks:
            blk.attn.offset = 40
        shifted = b(y, t)
    # marginals normalised, and the whole network sees relative positions only
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(out.shape[:-1]))
    torch.testing.assert_close(shifted, out, atol=1e-5, rtol=1e-5)


def test_rotary_in_model_section_preset_and_round_trip(tmp_path):
    cfg = PrimeConfig(model={**CFG, "rotary": True}, ell=2)
    assert cfg.rotary and "rotary" not in cfg.model.model_dump()
    mdlm = PrimeConfig(model={"preset": "mdlm-small", "vocab_size": 50257}, ell=1)
    assert mdlm.rotary and mdlm.model.seq_len == 1024 and mdlm.model.dim == 768
    assert not PrimeConfig(model={"preset": "mdlm-small", "rotary": False}).rotary
    with pytest.raises(ValueError, match="even head width"):
        PrimeConfig(model={**CFG, "dim": 36, "heads": 4, "rotary": True})
    m = PrimeTransformer(cfg)
    path = save_prime_model(m, tmp_path / "m.pt")
    m2, _ = load_prime_model(path)
    assert m2.prime_cfg.rotary
    y = torch.full((2, CFG["seq_len"] * 2), m.codec.mask_id)
    with torch.no_grad():
        torch.testing.assert_close(m2(y, torch.full((2,), 0.5)), m.eval()(y, torch.full((2,), 0.5)))
