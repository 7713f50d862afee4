"""The sub-token denoiser: ℓ = 1 is the foundation transformer, the joint is filtered
(MDM-Prime eq. 7), marginals are normalised, and the foundation training loop, sampler, CFG
and model files work with it."""

import math

import pytest
import torch

from unmask.models import ConditionedDenoiser, ModelConfig, Transformer
from unmask.prime.model import (
    FILL,
    JointView,
    PrimeConfig,
    PrimeTransformer,
    SubTokenEmbedding,
    load_prime_model,
    save_prime_model,
)
from unmask.prime.sampling import sample_prime
from unmask.prime.subtokens import SubTokenCodec, SubTokenView
from unmask.training import TrainConfig, train

CFG = {"vocab_size": 11, "seq_len": 6, "dim": 32, "depth": 2, "heads": 4}


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_ell_1_is_the_foundation_transformer():
    plain = Transformer(ModelConfig(**CFG))
    _randomize(plain)
    prime = PrimeTransformer({"model": CFG, "ell": 1})
    state = {k: v for k, v in plain.state_dict().items() if not k.startswith("tok_emb")}
    missing, unexpected = prime.trunk.load_state_dict(state, strict=False)
    assert missing == ["tok_emb.tables.0.weight"] and not unexpected
    with torch.no_grad():
        prime.trunk.tok_emb.tables[0].weight.copy_(plain.tok_emb.weight)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 12, (5, 6), generator=g)  # 11 = mask
    t = torch.rand(5, generator=g)
    with torch.no_grad():
        ref = plain(x, t).log_softmax(-1)
        marg = prime(x, t)  # (5, 6, 11): b = C for ℓ = 1
    masked = x == 11
    torch.testing.assert_close(marg[masked], ref[masked], atol=1e-5, rtol=1e-5)
    # observed tokens are certain (the filter leaves only themselves)
    obs = ~masked
    torch.testing.assert_close(marg[obs].gather(-1, x[obs][:, None]).exp(),
                               torch.ones(int(obs.sum()), 1))


@pytest.mark.parametrize("ell", [2, 3])
def test_joint_is_filtered_and_marginals_normalised(ell):
    model = PrimeTransformer({"model": CFG, "ell": ell})
    _randomize(model, ell)
    codec = model.codec
    g = torch.Generator().manual_seed(2)
    y0 = codec.encode(torch.randint(0, 11, (4, 6), generator=g))
    keep = torch.rand(y0.shape, generator=g) < 0.5
    y_t = torch.where(keep, y0, codec.mask_id)
    t = torch.rand(4, generator=g)
    with torch.no_grad():
        joint = model.joint(y_t, t)
        marg = model(y_t.reshape(4, -1), t)
    assert joint.shape == (4, 6, 11) and marg.shape == (4, 6 * ell, codec.base)
    valid = codec.valid_mask(y_t)
    assert (joint[~valid] == FILL).all() and (joint[valid] > FILL / 2).all()
    torch.testing.assert_close(marg.logsumexp(-1), torch.zeros(4, 6 * ell), atol=1e-5, rtol=0)
    # the true digits keep positive probability; observed ones are certain
    lp_true = marg.gather(-1, y0.reshape(4, -1, 1))[..., 0]
    assert torch.isfinite(lp_true).all()
    torch.testing.assert_close(lp_true[keep.reshape(4, -1)].exp(),
                               torch.ones(int(keep.sum())), atol=1e-6, rtol=0)


def test_embedding_widths_and_interface():
    emb = SubTokenEmbedding(SubTokenCodec(50257, 4), 30)
    assert [t.embedding_dim for t in emb.tables] == [8, 8, 7, 7]
    assert all(t.num_embeddings == 16 for t in emb.tables)  # b = 15, plus [MASK]
    cfg = PrimeConfig(model={"preset": "mdlm-small"}, ell=2)
    assert (cfg.model.dim, cfg.model.depth, cfg.model.heads) == (768, 12, 12)
    assert cfg.interface().seq_len == 2048 and cfg.interface().vocab_size == 225
    img = PrimeConfig(model={"preset": "prime-cifar"}, ell=4)
    assert img.interface().grid == (32, 384) and img.interface().vocab_size == 4
    with pytest.raises(ValueError, match="null_cond"):
        PrimeConfig(model={**CFG, "null_cond": "mask", "num_classes": 3}, ell=2)


def test_trains_with_foundation_loop_and_round_trips(tmp_path):
    """The foundation loop trains the sub-token model (ELBO weighting) on a lazy view."""
    torch.manual_seed(0)
    model = PrimeTransformer({"model": {**CFG, "num_classes": 2}, "ell": 2})
    base = torch.tensor([[1, 2, 3, 4, 5, 6], [10, 9, 8, 7, 0, 0]])
    tokens = base.repeat(64, 1)
    labels = torch.tensor([0, 1]).repeat(64)
    cfg = TrainConfig(steps=200, batch_size=32, lr=3e-3, warmup_steps=5, weighting="elbo",
                      ema_decay=0.0, log_every=10, ckpt_every=200, device="cpu")
    res = train(model, SubTokenView(tokens, model.codec), labels, cfg, tmp_path / "run",
                progress=False)
    assert res.loss is not None and res.loss < 0.5 * 2.4  # well below uniform (ln 3 per digit)
    path = save_prime_model(model, tmp_path / "m.pt")
    loaded, _ = load_prime_model(path)
    y_t = torch.full((2, 12), model.codec.mask_id)
    t = torch.full((2,), 0.3)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(y_t, t, torch.tensor([0, 1])),
                                   model(y_t, t, torch.tensor([0, 1])))
    # sampling with labels and CFG through ConditionedDenoiser on the joint view
    den = ConditionedDenoiser(JointView(model), torch.tensor([0, 1]).repeat(4))
    with torch.no_grad():
        out = sample_prime(den, codec=model.codec, batch_size=8, seq_len=6, steps=24,
                           cfg_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (8, 6) and int(out.tokens.max()) < 11
    assert (out.tokens == base.repeat(4, 1)).float().mean() > 0.8  # learned the two rows


def _digit_marginals(probs: list[float], base: int, ell: int) -> list[list[float]]:
    """p(y^j = v) = Σ_{c : digit j of c = v} p(c), by integer arithmetic (independent of
    the codec's digit-grid reduction); digit 0 is the most significant."""
    out = [[0.0] * base for _ in range(ell)]
    for c, pc in enumerate(probs):
        for j in range(ell):
            out[j][(c // base ** (ell - 1 - j)) % base] += pc
    return out


@pytest.mark.parametrize("ell", [2, 3])
def test_carry_over_switch_against_an_exact_computation(ell):
    """MDM-Prime §3.2 eq. 6 / Prop. A.4: with carry-over an observed sub-token's marginal is
    its point mass and masked digits are marginals of the joint restricted to consistent ids;
    without (Tab. A2) both are marginals of the plain softmax over the C ids."""
    on = PrimeTransformer({"model": CFG, "ell": ell})
    _randomize(on, 10 + ell)
    with torch.no_grad():  # logits of std ~1, so no marginal is 1 by accident
        for w in on.trunk.final.head.parameters():
            w.mul_(0.2)
    off = PrimeTransformer({"model": CFG, "ell": ell, "carry_over": False})
    off.load_state_dict(on.state_dict())
    codec, C = on.codec, CFG["vocab_size"]
    b = codec.base
    g = torch.Generator().manual_seed(4)
    y0 = codec.encode(torch.randint(0, C, (3, 6), generator=g))
    keep = torch.rand(y0.shape, generator=g) < 0.5
    keep[0, 0] = True  # at least one fully observed position and one partly observed one
    keep[0, 1] = torch.tensor([True] + [False] * (ell - 1))
    y_t = torch.where(keep, y0, codec.mask_id)
    t = torch.rand(3, generator=g)
    with torch.no_grad():
        raw = off.joint(y_t, t).double()  # the head's logits, nothing filtered
        m_on = on(y_t.reshape(3, -1), t).reshape(3, 6, ell, b).double().exp()
        m_off = off(y_t.reshape(3, -1), t).reshape(3, 6, ell, b).double().exp()
    digits = [[(c // b ** (ell - 1 - j)) % b for j in range(ell)] for c in range(C)]
    for r in range(3):
        for i in range(6):
            obs = y_t[r, i].tolist()
            lg = raw[r, i].tolist()
            z = sum(math.exp(v) for v in lg)
            want_off = _digit_marginals([math.exp(v) / z for v in lg], b, ell)
            ok = [all(o in (codec.mask_id, d) for o, d in zip(obs, digits[c], strict=True))
                  for c in range(C)]
            zc = sum(math.exp(v) for v, k in zip(lg, ok, strict=True) if k)
            want_on = _digit_marginals([math.exp(v) / zc if k else 0.0
                                        for v, k in zip(lg, ok, strict=True)], b, ell)
            torch.testing.assert_close(m_off[r, i], torch.tensor(want_off, dtype=torch.float64),
                                       atol=1e-5, rtol=0)
            for j in range(ell):
                if obs[j] != codec.mask_id:  # carried over with it on, not forced without
                    assert m_on[r, i, j, obs[j]] == pytest.approx(1.0, abs=1e-6)
                    assert m_off[r, i, j, obs[j]] < 1 - 1e-3
                elif not all(o == codec.mask_id for o in obs):  # partly observed position
                    torch.testing.assert_close(
                        m_on[r, i, j], torch.tensor(want_on[j], dtype=torch.float64),
                        atol=1e-5, rtol=0)
    # where nothing is observed the two agree (the filter only removes ids ≥ C there)
    blank = (y_t == codec.mask_id).all(-1)
    torch.testing.assert_close(m_on[blank], m_off[blank], atol=1e-5, rtol=0)
    # the sampler keeps carry-over at inference (MDM-Prime Tab. A5): draws stay decodable
    with torch.no_grad():
        out = sample_prime(ConditionedDenoiser(JointView(off)), codec=codec, batch_size=4,
                           seq_len=6, steps=8, generator=torch.Generator().manual_seed(0))
    assert int(out.tokens.max()) < C
