import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from unmask.models import ConditionedDenoiser, ModelConfig, Transformer, presets
from unmask.models.transformer import Attention

V = 11


def tiny(**kw) -> Transformer:
    base = dict(vocab_size=V, seq_len=6, dim=32, depth=2, heads=4, num_classes=3)
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**base, **kw})).eval()


def randomize(model: Transformer, std: float = 0.2) -> Transformer:
    """Move every weight off its (partly zero) initialisation so all paths are live."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tokens(b: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V + 1, (b, *shape), generator=g)  # includes the mask id V


# --- config ----------------------------------------------------------------------------------


def test_unknown_key_is_named():
    with pytest.raises(ValidationError, match="dimm"):
        ModelConfig(vocab_size=4, seq_len=3, dimm=8)


def test_seq_len_xor_grid():
    with pytest.raises(ValidationError, match="exactly one"):
        ModelConfig(vocab_size=4)
    with pytest.raises(ValidationError, match="exactly one"):
        ModelConfig(vocab_size=4, seq_len=4, grid=(2, 2))
    with pytest.raises(ValidationError, match="learned2d"):
        ModelConfig(vocab_size=4, seq_len=4, pos="learned2d")
    with pytest.raises(ValidationError, match="divisible"):
        ModelConfig(vocab_size=4, seq_len=4, dim=30, heads=4)


def test_preset_fills_and_explicit_wins():
    cfg = ModelConfig(preset="tiny", vocab_size=7, grid=(3, 5), depth=1)
    assert (cfg.dim, cfg.heads, cfg.depth, cfg.length) == (128, 4, 1, 15)
    cfg = ModelConfig(preset="di-546m", seq_len=16, vocab_size=9)
    assert cfg.grid is None and cfg.pos == "learned1d" and cfg.dim == 1024
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig(preset="nope", vocab_size=3, seq_len=3)
    assert set(presets.NAMES) >= {"tiny", "small", "di-546m"}


def test_di_546m_param_count():
    cfg = ModelConfig(preset="di-546m")
    with torch.device("meta"):
        n = Transformer(cfg).num_params()
    # Independent count from the architecture (d = 1024, V = 16384, 1000 classes, 32×32 grid).
    d, v, c, depth, r = 1024, 16384, 1000, 27, 4
    block = 3 * d * d + 3 * d + d * d + d + 2 * r * d * d + r * d + d + 6 * d * d + 6 * d
    expected = (
        (v + 1) * d + (32 + 32) * d + (c + 1) * d  # token, positions, classes
        + 256 * d + d + d * d + d  # time MLP
        + depth * block + 2 * d * d + 2 * d + d * v + v  # blocks, final adaLN, head
    )
    assert n == expected == 548_097_024
    assert abs(n / 546e6 - 1) < 0.02


# --- forward ---------------------------------------------------------------------------------


def test_shapes_1d_and_2d():
    m = tiny()
    x = tokens(5, (6,))
    assert m(x, torch.rand(5)).shape == (5, 6, V)
    g = tiny(seq_len=None, grid=(2, 3), pos="learned2d")
    x2 = tokens(5, (2, 3))
    out = g(x2, torch.rand(5), torch.tensor([0, 1, 2, 3, 0]))
    assert out.shape == (5, 2, 3, V)
    # A flattened grid is the same computation in row-major order.
    torch.testing.assert_close(g(x2.reshape(5, 6), torch.rand(5) * 0 + 0.5).reshape(5, 2, 3, V),
                               g(x2, torch.full((5,), 0.5)))
    with pytest.raises(ValueError, match="expected 6 tokens"):
        m(tokens(2, (7,)), torch.rand(2))


def test_learned2d_is_row_plus_column():
    g = randomize(tiny(seq_len=None, grid=(2, 3), pos="learned2d"))
    pos = g.positions()
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(pos[i * 3 + j], g.pos_row[i, 0] + g.pos_col[0, j])


def test_itm_ignores_t_exactly():
    m = randomize(tiny(timestep="implicit"))
    assert not m.time_conditioned
    x = tokens(4, (6,))
    a = m(x, torch.full((4,), 0.1))
    assert torch.equal(a, m(x, torch.full((4,), 0.9)))
    assert torch.equal(a, m(x, None))


def test_etm_depends_on_t():
    m = randomize(tiny())
    assert m.time_conditioned
    x = tokens(4, (6,))
    a, b = m(x, torch.full((4,), 0.1)), m(x, torch.full((4,), 0.9))
    assert (a - b).abs().max() > 1e-3


def test_adaln_zero_init():
    m = tiny()
    x = tokens(3, (6,))
    t = torch.rand(3)
    # Zero head: uniform logits at initialisation.
    assert torch.equal(m(x, t), torch.zeros(3, 6, V))
    # With a live head, the output is the final layer on the embeddings alone: every block is
    # the identity because its gates are zero, whatever its attention / MLP weights are.
    with torch.no_grad():
        torch.nn.init.normal_(m.final.head.weight)
        h = m.tok_emb.weight[x] + m.pos_emb
        expected = F.layer_norm(h, (32,), eps=1e-6) @ m.final.head.weight.T
        torch.testing.assert_close(m(x, t), expected)
        for blk in m.blocks:
            for p in [*blk.attn.parameters(), *blk.mlp.parameters()]:
                p.normal_()
        torch.testing.assert_close(m(x, t), expected)


def test_null_class_path():
    m = randomize(tiny())
    x, t = tokens(3, (6,)), torch.rand(3)
    null = torch.full((3,), m.null_class)
    assert m.null_class == 3
    assert torch.equal(m(x, t), m(x, t, null))
    assert (m(x, t, torch.zeros(3, dtype=torch.long)) - m(x, t)).abs().max() > 1e-3
    # Unconditional model: one null row, y=None.
    u = randomize(tiny(num_classes=0))
    assert u.class_emb.num_embeddings == 1
    assert torch.equal(u(x, t), u(x, t, torch.zeros(3, dtype=torch.long)))


def test_cond_dropout_rate():
    m = tiny(cond_dropout=0.3)
    n = 20000
    y = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(0))
    out = m.drop_labels(y, torch.Generator().manual_seed(1))
    dropped = out == m.null_class
    sigma = math.sqrt(0.3 * 0.7 / n)
    assert abs(dropped.float().mean().item() - 0.3) < 4 * sigma
    assert torch.equal(out[~dropped], y[~dropped])
    assert torch.equal(tiny(cond_dropout=0.0).drop_labels(y), y)
    assert torch.equal(tiny(num_classes=0, cond_dropout=0.5).drop_labels(y), y)


def test_sdpa_matches_manual_attention():
    torch.manual_seed(0)
    attn = Attention(dim=8, heads=2).eval()
    x = torch.randn(2, 5, 8)
    w, b = attn.qkv.weight, attn.qkv.bias
    q, k, v = (x @ w.T + b).split(8, dim=-1)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(4)
        heads.append(torch.softmax(scores, dim=-1) @ v[..., sl])
    expected = torch.cat(heads, dim=-1) @ attn.proj.weight.T + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_bidirectional():
    m = randomize(tiny())
    x, t = tokens(1, (6,)), torch.rand(1)
    x2 = x.clone()
    x2[0, -1] = (x[0, -1] + 1) % (V + 1)
    assert (m(x, t)[0, 0] - m(x2, t)[0, 0]).abs().max() > 1e-4


# --- denoiser adapter ------------------------------------------------------------------------


def test_conditioned_denoiser_batched_cfg():
    m = randomize(tiny())
    x, t = tokens(4, (6,)), torch.rand(4)
    y = torch.tensor([0, 1, 2, 1])
    den = ConditionedDenoiser(m, y)
    assert den.time_conditioned is True
    cond, uncond = den.cond_and_uncond(x, t)
    torch.testing.assert_close(cond, m(x, t, y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(uncond, m(x, t, torch.full((4,), 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(den(x, t), cond, atol=1e-5, rtol=1e-5)
    # A scalar label applies to every row; gradients are not switched off.
    den1 = ConditionedDenoiser(m, 2)
    out = den1(x, t)
    assert out.requires_grad
    torch.testing.assert_close(out, m(x, t, torch.full((4,), 2)))
    assert ConditionedDenoiser(randomize(tiny(timestep="implicit")), y).time_conditioned is False
    with pytest.raises(ValueError, match="labels"):
        ConditionedDenoiser(m, None).cond_and_uncond(x, t)


def test_mask_token_null_condition():
    """eMIGM's CFG: with null_cond='mask' the unconditional branch is conditioned on the [MASK]
    embedding, so perturbing that embedding moves only the null-class output."""
    from unmask.models import ModelConfig, Transformer

    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=5, seq_len=6, num_classes=3, dim=32, depth=1,
                                heads=2, null_cond="mask"))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randint(0, 5, (2, 6))  # no [MASK] in the input: the embedding acts only as c
    t = torch.full((2,), 0.5)
    y_null, y_cls = torch.full((2,), 3), torch.tensor([0, 1])
    before_null, before_cls = m(x, t, y_null), m(x, t, y_cls)
    c = m.condition(t, y_null, 2, x.device)
    torch.testing.assert_close(c - m.time_emb(t), m.tok_emb.weight[5].expand(2, -1))
    with torch.no_grad():
        m.tok_emb.weight[5] += 1.0
    assert not torch.allclose(m(x, t, y_null), before_null)
    torch.testing.assert_close(m(x, t, y_cls), before_cls)


def test_video_and_modality_fields_leave_default_models_unchanged():
    """The optional fields (modalities, frames, attention) add no parameters and no dump keys
    to a default model, so existing checkpoints and run keys stay valid."""
    m = tiny()
    assert set(m.state_dict()) == {k for k in m.state_dict() if not k.startswith(
        ("mod_emb", "pos_time", "pos_space"))}
    dump = m.cfg.model_dump(mode="json")
    assert not {"modalities", "frames", "attention"} & set(dump)
    assert ModelConfig(**dump) == m.cfg
    assert m.attention_axes() == [None, None]
