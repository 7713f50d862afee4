"""Model FLOPs: a hand count of a tiny config, and torch's own FLOP counter on the real model."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from unmask.models import ModelConfig, Transformer
from unmask.training.flops import (
    forward_flops_per_token,
    mfu,
    peak_flops,
    training_flops_per_token,
)


def test_hand_count():
    # d = 8, depth 1, MLP hidden 32, L = 4, V = 5, ETM.
    cfg = ModelConfig(vocab_size=5, seq_len=4, dim=8, depth=1, heads=2, timestep="explicit")
    qkv, proj, mlp = 2 * 8 * 24, 2 * 8 * 8, 2 * (8 * 32 + 32 * 8)
    attn = 2 * 4 * 8 + 2 * 4 * 8  # QKᵀ row: 4 keys · 8 dims, A·V: 4 values · 8 dims
    head = 2 * 8 * 5
    per_seq = 2 * 8 * 48 + 2 * 8 * 16 + 2 * (256 * 8 + 8 * 8)  # adaLN, final adaLN, time MLP
    want = qkv + proj + mlp + attn + head + per_seq / 4
    assert forward_flops_per_token(cfg) == want
    assert training_flops_per_token(cfg) == 3 * want
    itm = ModelConfig(vocab_size=5, seq_len=4, dim=8, depth=1, heads=2, timestep="implicit")
    assert forward_flops_per_token(itm) == want - 2 * (256 * 8 + 8 * 8) / 4


@pytest.mark.parametrize("timestep", ["explicit", "implicit"])
def test_matches_torch_flop_counter(timestep):
    cfg = ModelConfig(vocab_size=37, seq_len=24, dim=32, depth=2, heads=4, timestep=timestep,
                      num_classes=3)
    model = Transformer(cfg).eval()
    B = 3
    x = torch.randint(0, 38, (B, 24))
    counter = FlopCounterMode(display=False)
    # The math SDPA backend runs QKᵀ and A·V as bmm's, which the counter sees.
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x, torch.rand(B), torch.tensor([0, 1, 3]))
    assert counter.get_total_flops() == pytest.approx(B * 24 * forward_flops_per_token(cfg))


def test_mfu_and_peak():
    cfg = ModelConfig(vocab_size=5, seq_len=4, dim=8, depth=1, heads=2)
    per_tok = training_flops_per_token(cfg)
    assert mfu(1e6, cfg, 989.4e12) == pytest.approx(per_tok * 1e6 / 989.4e12)
    if not torch.cuda.is_available():
        assert peak_flops("cpu") is None and peak_flops() is None
