"""The MAE encoder–decoder: the encoder sees only visible tokens, scatter-back, shapes,
batch independence, conditioning, presets vs eMIGM's parameter counts."""

from __future__ import annotations

import pytest
import torch

from unmask.emigm import MAE, ContinuousMAE, MAEConfig
from unmask.emigm.config import PAPER_PARAMS
from unmask.emigm.mae import gather_visible, scatter_back
from unmask.models import ConditionedDenoiser

V, L = 16, 12


def small(**kw) -> MAE:
    torch.manual_seed(0)
    cfg = dict(vocab_size=V, seq_len=L, num_classes=3, dim=32, depth=2, heads=4, buffer_size=3)
    return MAE(MAEConfig(**{**cfg, **kw})).eval()


def batch(b: int = 6, p: float = 0.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (b, L), generator=g)
    masked = torch.rand(b, L, generator=g) < p
    masked[0] = True  # a fully masked row
    masked[1] = False  # a fully visible row
    return torch.where(masked, torch.full_like(x, V), x)


class _Capture:
    """Forward hooks: record the encoder's output and the first encoder block's input."""

    def __init__(self, model) -> None:
        bb = model.backbone
        self.enc_out = self.enc_in = None
        bb.enc_norm.register_forward_hook(lambda m, a, o: setattr(self, "enc_out", o))
        bb.enc_blocks[0].register_forward_hook(lambda m, a, o: setattr(self, "enc_in", a[0]))


@pytest.mark.parametrize("conditioning", ["buffer", "adaln"])
def test_encoder_never_sees_masked_inputs(conditioning):
    """Replacing the token embeddings at masked positions by noise changes no encoder output
    and no logit: the encoder only receives visible tokens (and buffer tokens)."""
    model = small(conditioning=conditioning)
    x, y = batch(), torch.tensor([0, 1, 2, 3, 0, 1])
    masked = x == V
    cap = _Capture(model)
    with torch.no_grad():
        ref_logits = model(x, None, y)
        ref_enc = cap.enc_out.clone()
        g = torch.Generator().manual_seed(1)
        hook = model.tok_emb.register_forward_hook(
            lambda m, a, out: torch.where(masked[..., None], 100 * torch.randn(
                out.shape, generator=g), out))
        logits = model(x, None, y)
        hook.remove()
    assert torch.equal(cap.enc_out, ref_enc)
    assert torch.equal(logits, ref_logits)
    # the encoder processed buffer + max_b |visible_b| tokens, not L
    assert cap.enc_in.shape[1] == 3 + int((~masked).sum(-1).max())


def test_masked_inputs_do_reach_the_non_mae_encoder():
    """Control for the test above: with use_mae=False (eMIGM's ablation) the encoder sees all
    L positions; the [MASK] vector there is the same parameter the decoder fills in."""
    model = small(use_mae=False)
    x = batch()
    cap = _Capture(model)
    with torch.no_grad():
        a = model(x, None, None)
        assert cap.enc_in.shape[1] == 3 + L
        model.backbone.mask_token.add_(1.0)
        b = model(x, None, None)
    assert not torch.allclose(a[2:], b[2:])


def test_shapes_and_grid_inputs():
    model = small()
    x = batch()
    assert model(x, torch.rand(6), torch.zeros(6, dtype=torch.long)).shape == (6, L, V)
    grid = MAE(MAEConfig(vocab_size=V, grid=(3, 4), dim=16, depth=1, heads=2)).eval()
    assert grid(x.reshape(6, 3, 4)).shape == (6, 3, 4, V)
    with pytest.raises(ValueError, match="expected 12 tokens"):
        grid(x[:, :5])


def test_gather_and_scatter_back_match_a_loop():
    g = torch.Generator().manual_seed(0)
    b, n, buf, d = 5, 9, 2, 3
    masked = torch.rand(b, n, generator=g) < 0.6
    masked[0] = True
    vis = gather_visible(masked)
    for r in range(b):
        real = vis.index[r][vis.valid[r]].tolist()
        assert real == [i for i in range(n) if not masked[r, i]]
    enc = torch.randn(b, buf + vis.index.shape[1], d, generator=g)
    fill = torch.randn(d, generator=g)
    out = scatter_back(enc, vis, fill, n, buf)
    ref = fill.expand(b, buf + n, d).clone()
    for r in range(b):
        ref[r, :buf] = enc[r, :buf]
        for slot, pos in enumerate(vis.index[r].tolist()):
            if vis.valid[r, slot]:
                ref[r, buf + pos] = enc[r, buf + slot]
    assert torch.equal(out, ref)


def test_rows_are_independent_of_the_batch_padding():
    """A row's logits do not depend on the other rows (padding to the batch's max |visible|)."""
    model = small()
    x, y = batch(), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        full = model(x, None, y)
        for r in range(len(x)):
            alone = model(x[r : r + 1], None, y[r : r + 1])
            assert torch.allclose(alone, full[r : r + 1], atol=1e-5)


def test_visible_tokens_matter_and_outputs_are_position_dependent():
    model = small()
    with torch.no_grad():
        for block in [*model.backbone.enc_blocks, *model.backbone.dec_blocks]:
            torch.nn.init.normal_(block.mlp[-2].weight, std=0.2)
        x = batch()
        a = model(x, None, None)
        x2 = x.clone()
        x2[1, 0] = (x2[1, 0] + 1) % V  # change one visible token of the fully visible row
        b = model(x2, None, None)
    assert not torch.allclose(a[1], b[1])
    assert torch.equal(a[2:], b[2:])


def test_null_condition_is_the_mask_token():
    """CFG with the mask token: the unconditional branch uses the decoder's [MASK] vector."""
    model = small(null_cond="mask")
    x = batch()
    null = torch.full((6,), 3)
    with torch.no_grad():
        u1 = model(x, None, null)
        model.class_emb.weight.add_(1.0)  # class embeddings do not enter the null branch
        assert torch.equal(model(x, None, null), u1)
        model.backbone.mask_token.add_(0.5)
        assert not torch.allclose(model(x, None, null), u1)
    assert sum(p.numel() for p in small(null_cond="learned").parameters()) == \
        sum(p.numel() for p in model.parameters()) + 32


def test_explicit_timestep_changes_output_and_denoiser_caching_flag():
    implicit, explicit = small(), small(timestep="explicit")
    assert not implicit.time_conditioned and explicit.time_conditioned
    x = batch()
    with torch.no_grad():
        assert torch.equal(implicit(x, torch.zeros(6)), implicit(x, torch.ones(6)))
        assert not torch.allclose(explicit(x, torch.zeros(6)), explicit(x, torch.ones(6)))
    assert ConditionedDenoiser(implicit, 0).time_conditioned is False


def test_cond_and_uncond_in_one_batched_pass():
    model = small()
    x = batch()
    den = ConditionedDenoiser(model, torch.tensor([0, 1, 2, 0, 1, 2]))
    with torch.no_grad():
        c, u = den.cond_and_uncond(x, torch.zeros(6))
        assert torch.allclose(c, den(x, torch.zeros(6)), atol=1e-5)
        assert torch.allclose(u, model(x, None, torch.full((6,), 3)), atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="exactly one of 'vocab_size'"):
        MAEConfig(seq_len=4)
    with pytest.raises(ValueError, match="needs a diffusion 'head'"):
        MAEConfig(token_dim=4, seq_len=4)
    with pytest.raises(ValueError, match="dim == dec_dim"):
        MAEConfig(vocab_size=4, seq_len=4, dim=32, dec_dim=64)
    cfg = MAEConfig(vocab_size=4, seq_len=4, dim=32, dec_dim=64, null_cond="learned")
    assert cfg.decoder_dim == 64
    with pytest.raises(ValueError, match="unknown eMIGM preset"):
        MAEConfig(preset="emigm-xxl", vocab_size=4, seq_len=4)
    with pytest.raises(ValueError, match="extra"):
        MAEConfig(vocab_size=4, seq_len=4, depht=3)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_presets_match_emigm_parameter_counts(name):
    """eMIGM XS/S/B/L/H (ImageNet 256, KL-16 tokens, with the diffusion head), on the meta
    device (no memory): within 1 % of the paper's table."""
    with torch.device("meta"):
        model = ContinuousMAE(MAEConfig(preset=name))
    n = model.num_params()
    assert abs(n / PAPER_PARAMS[name] - 1) < 0.01, (name, n)
    assert model.cfg.length == 256 and model.cfg.buffer_size == 64


def test_discrete_preset_drops_the_head():
    cfg = MAEConfig(preset="emigm-b", vocab_size=1024, seq_len=256)
    assert cfg.head is None and cfg.token_dim is None and cfg.dim == 768
    with torch.device("meta"):
        assert MAE(cfg).num_params() > 150e6
