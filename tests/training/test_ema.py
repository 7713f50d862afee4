import torch
from torch import nn

from unmask.training import EMA


def test_ema_matches_hand_computation():
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(0.0)
    ema = EMA(lin, decay=0.9)
    for w in (2.0, 4.0):
        with torch.no_grad():
            lin.weight.fill_(w)
            lin.bias.fill_(-w)
        ema.update(lin)
    # w̄_1 = .9·1 + .1·2 = 1.1; w̄_2 = .9·1.1 + .1·4 = 1.39;  b̄: 0 → −0.2 → −0.58
    assert torch.allclose(ema.shadow["weight"], torch.tensor([[1.39]]), atol=1e-6)
    assert torch.allclose(ema.shadow["bias"], torch.tensor([-0.58]), atol=1e-6)
    assert ema.num_updates == 2

    other = nn.Linear(1, 1)
    ema.copy_to(other)
    assert torch.allclose(other.weight, torch.tensor([[1.39]]), atol=1e-6)
    restored = EMA(nn.Linear(1, 1), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9 and torch.equal(restored.shadow["bias"], ema.shadow["bias"])


def test_ema_decay_extremes():
    lin = nn.Linear(2, 2)
    start = lin.weight.detach().clone()
    frozen, tracking = EMA(lin, 1.0), EMA(lin, 0.0)
    with torch.no_grad():
        lin.weight.add_(1.0)
    frozen.update(lin)
    tracking.update(lin)
    assert torch.equal(frozen.shadow["weight"], start)
    assert torch.equal(tracking.shadow["weight"], lin.weight)
