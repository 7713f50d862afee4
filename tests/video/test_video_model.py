"""Video transformer: factorised space–time attention, positions, conditioned sampling, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unmask.models import ModelConfig, Transformer
from unmask.models.transformer import Block
from unmask.video import frames_grid, sample_video, save_gif, save_mp4, video_x_init

torch.set_num_threads(1)
T, H, W, V = 3, 2, 3, 7
S = H * W


def _randomize(m: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def _video(**kw) -> Transformer:
    base = dict(vocab_size=V, grid=(H, W), frames=T, dim=32, depth=2, heads=4, pos="spacetime")
    torch.manual_seed(0)
    return _randomize(Transformer(ModelConfig(**{**base, **kw})))


def test_config_and_positions():
    m = _video()
    assert m.cfg.length == T * S
    assert m.attention_axes() == [None, None]
    assert _video(attention="factorized").attention_axes() == ["space", "time"]
    pos = m.positions()
    for t in range(T):
        for s in range(S):
            torch.testing.assert_close(pos[t * S + s], m.pos_time[t] + m.pos_space[s])
    with pytest.raises(ValueError, match="factorized.*needs 'frames'"):
        ModelConfig(vocab_size=V, grid=(H, W), attention="factorized")
    with pytest.raises(ValueError, match="spacetime.*needs 'frames'"):
        ModelConfig(vocab_size=V, grid=(H, W), pos="spacetime")
    # the default (non-video) config dump is unchanged by the new fields
    assert "frames" not in ModelConfig(vocab_size=V, seq_len=4).model_dump()


def _block_out(axis, x):
    torch.manual_seed(0)
    blk = _randomize(Block(16, 4))
    c = torch.randn(x.shape[0], 16)
    return blk(x, c, axis, T)


def test_temporal_block_mixes_only_same_position():
    """Perturb frame 0 at spatial position p: in a temporal block only position p of the
    other frames changes; in a spatial block only frame 0 changes."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, T * S, 16, generator=g)
    p = 4
    x2 = x.clone()
    x2[:, 0 * S + p] += torch.randn(2, 16, generator=g)
    for axis in ("time", "space", None):
        d = (_block_out(axis, x) - _block_out(axis, x2)).abs().amax(dim=(0, 2)).reshape(T, S)
        changed = d > 1e-6
        if axis == "time":
            expect = torch.zeros(T, S, dtype=torch.bool)
            expect[:, p] = True
        elif axis == "space":
            expect = torch.zeros(T, S, dtype=torch.bool)
            expect[0] = True
        else:
            expect = torch.ones(T, S, dtype=torch.bool)
        assert torch.equal(changed, expect), (axis, changed)


def test_factorized_equals_full_attention_with_block_mask():
    """A spatial (temporal) block equals full attention restricted by a block mask that allows
    only pairs in the same frame (same spatial position) — computed independently here."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, T * S, 16, generator=g)
    torch.manual_seed(0)
    blk = _randomize(Block(16, 4))
    c = torch.randn(2, 16)
    frame = torch.arange(T * S) // S
    spatial = torch.arange(T * S) % S
    for axis, allowed in (("space", frame[:, None] == frame[None]),
                          ("time", spatial[:, None] == spatial[None])):
        ref_attn = blk.attn

        class MaskedAttn(torch.nn.Module):
            def forward(self, a, allowed=allowed, ref=ref_attn):
                b, n = a.shape[:2]
                q, k, v = ref.qkv(a).reshape(b, n, 3, 4, 4).permute(2, 0, 3, 1, 4)
                s = q @ k.transpose(-1, -2) / 2.0  # √d_head = 2
                s = s.masked_fill(~allowed, float("-inf"))
                return ref.proj((s.softmax(-1) @ v).transpose(1, 2).reshape(b, n, 16))

        fact = blk(x, c, axis, T)
        blk.attn = MaskedAttn()
        try:
            full = blk(x, c, None, T)
        finally:
            blk.attn = ref_attn
        torch.testing.assert_close(fact, full, atol=1e-5, rtol=1e-5)


def test_factorized_model_runs_and_differs_from_full():
    x = torch.randint(0, V + 1, (2, T, H, W))
    a = _video(attention="factorized")(x, torch.rand(2))
    b = _video()(x, torch.rand(2))
    assert a.shape == b.shape == (2, T, H, W, V)
    # same weights (same parameter shapes): only the attention pattern differs
    assert not torch.allclose(a, b)


def test_frame_conditioned_sampling_keeps_given_frames():
    m = _video(attention="factorized")
    ctx = torch.randint(0, V, (4, 2, H, W), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = sample_video(lambda x, t: m(x, t), batch_size=4, frames=T, grid=(H, W),
                           mask_id=V, context=ctx, method="maskgit", steps=4,
                           schedule="cosine", generator=torch.Generator().manual_seed(6))
    assert out.shape == (4, T, H, W)
    assert torch.equal(out[:, :2], ctx)
    assert not (out == V).any()
    x0 = video_x_init(4, T, (H, W), V, ctx)
    assert (x0.reshape(4, T, H, W)[:, 2] == V).all()
    with pytest.raises(ValueError, match="context must be"):
        video_x_init(4, T, (H, W), V, ctx[:, :, :1])


def test_export_gif_mp4_grid(tmp_path):
    clips = np.random.default_rng(0).integers(0, 256, (2, 4, 16, 16), dtype=np.uint8)
    gif = save_gif(clips[0], tmp_path / "a.gif", scale=2)
    im = Image.open(gif)
    assert im.n_frames == 4 and im.size == (32, 32)
    im.seek(2)
    # GIF palettes are exact for grey levels ≤ 256 colours
    np.testing.assert_array_equal(np.asarray(im.convert("L"))[::2, ::2], clips[0, 2])
    grid = Image.open(frames_grid(clips, tmp_path / "g.png", scale=1))
    assert grid.size == (4 * 18 - 2, 2 * 18 - 2)
    mp4 = save_mp4(clips[1], tmp_path / "b.mp4")
    from unmask.data.faceforensics import iter_video_frames

    frames = list(iter_video_frames(mp4))
    assert len(frames) == 4 and frames[0].shape[:2] == (16, 16)
