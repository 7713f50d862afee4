"""Base-b sub-tokens: invertibility, minimal base, validity filter and marginals against
brute-force enumeration."""

import itertools
import math

import pytest
import torch

from unmask.prime.subtokens import SubTokenCodec, SubTokenView, int_root_ceil


@pytest.mark.parametrize("ell", [1, 2, 4, 6, 8])
def test_round_trip_random_vocabularies(ell):
    g = torch.Generator().manual_seed(ell)
    for c in [2, 3, 5, 17, 256, 257, 1000, 50257, *torch.randint(2, 70000, (5,), generator=g)]:
        c = int(c)
        codec = SubTokenCodec(c, ell)
        b = codec.base
        # b = ⌈C^{1/ℓ}⌉: the smallest base whose ℓ digits cover C ids (b = C for ℓ = 1)
        if ell == 1:
            assert b == c
        else:
            assert b**ell >= c and (b == 2 or (b - 1) ** ell < c)
        x = torch.cat([torch.tensor([0, c - 1]), torch.randint(0, c, (500,), generator=g)])
        y = codec.encode(x)
        assert y.shape == (*x.shape, ell)
        assert int(y.min()) >= 0 and int(y.max()) < b
        assert torch.equal(codec.decode(y), x)
        # the whole vocabulary maps to distinct digit tuples (injective)
        if c <= 4096:
            assert len({tuple(r) for r in codec.digits().tolist()}) == c


def test_int_root_ceil_matches_float_definition():
    for c in range(2, 3000, 7):
        for ell in (2, 3, 4, 6, 8):
            b = int_root_ceil(c, ell)
            assert b == max(2, math.ceil(c ** (1 / ell) - 1e-9)), (c, ell)


def test_decode_rejects_invalid_and_masked():
    codec = SubTokenCodec(5, 2)  # b = 3: (1, 2) = 5 and (2, ·) ≥ 6 are invalid
    with pytest.raises(ValueError, match="invalid"):
        codec.decode(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="clean digits"):
        codec.decode(torch.tensor([3, 0]))  # 3 is the mask id
    with pytest.raises(ValueError):
        codec.encode(torch.tensor([5]))


def _all_states(codec: SubTokenCodec) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(codec.base + 1), repeat=codec.ell)))


@pytest.mark.parametrize("c,ell", [(5, 2), (7, 3), (9, 2), (17, 2), (10, 4), (6, 1)])
def test_valid_mask_matches_brute_force(c, ell):
    codec = SubTokenCodec(c, ell)
    b, m = codec.base, codec.mask_id
    states = _all_states(codec)
    got = codec.valid_mask(states)
    for s, row in zip(states.tolist(), got.tolist(), strict=True):
        for k in range(c):
            digits = [(k // b ** (ell - 1 - j)) % b for j in range(ell)]
            expect = all(sj in (m, dj) for sj, dj in zip(s, digits, strict=True))
            assert row[k] == expect, (s, k)
    # ids ≥ C never appear: every fully observed state with value ≥ C matches nothing
    full = states[(states != m).all(-1)]
    vals = (full * b ** torch.arange(ell - 1, -1, -1)).sum(-1)
    assert not got[(states != m).all(-1)][vals >= c].any()


@pytest.mark.parametrize("c,ell", [(5, 2), (7, 3), (17, 2), (10, 4)])
def test_log_marginals_match_enumeration(c, ell):
    codec = SubTokenCodec(c, ell)
    g = torch.Generator().manual_seed(0)
    states = _all_states(codec)
    states = states[codec.valid_mask(states).any(-1)]  # reachable partial states
    logits = torch.randn(len(states), c, generator=g, dtype=torch.float64) * 3
    filt = codec.filter_logits(logits, states)
    lm = codec.log_marginals(filt)
    p = filt.softmax(-1)
    dig = codec.digits()
    for j in range(ell):
        for v in range(codec.base):
            expect = p[:, dig[:, j] == v].sum(-1)
            torch.testing.assert_close(lm[:, j, v].exp(), expect, atol=1e-12, rtol=1e-9)
    # observed digits are certain under the filtered joint
    obs = states != codec.mask_id
    pick = lm.gather(-1, states.clamp(max=codec.base - 1)[..., None])[..., 0]
    torch.testing.assert_close(pick[obs].exp(), torch.ones(int(obs.sum()), dtype=torch.float64))


def test_log_marginals_gradient_is_finite():
    codec = SubTokenCodec(50, 3)
    logits = torch.randn(4, 50, requires_grad=True)
    y_t = torch.tensor([[4, 4, 4], [1, 4, 4], [4, 0, 2], [1, 2, 4]])
    lm = codec.log_marginals(codec.filter_logits(logits, y_t, fill=-1e9))
    target = codec.encode(torch.tensor([7, 30, 2, 33]))
    loss = -lm.gather(-1, target[..., None]).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_pack_state_round_trip_and_view():
    codec = SubTokenCodec(300, 3)
    states = torch.randint(0, codec.base + 1, (100, 3))
    assert torch.equal(codec.unpack_state(codec.pack_state(states)), states)
    tokens = torch.randint(0, 300, (20, 6), dtype=torch.int32)
    view = SubTokenView(tokens, codec)
    dense = codec.encode(tokens).reshape(20, 18)
    assert view.shape == dense.shape and view[0].numel() == 18
    idx = torch.tensor([3, 0, 19])
    assert torch.equal(view[idx], dense[idx])
    assert torch.equal(view.materialize(), dense)
    assert int(view.max()) == codec.base - 1 and int(view.min()) == 0
