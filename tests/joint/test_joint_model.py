"""JointLayout bookkeeping and the multi-modal Transformer (modality embedding, restricted
logits), including one training step through the standard loop."""

from __future__ import annotations

import pytest
import torch

from unmask.joint import JointLayout, restrict_logits
from unmask.models import ModelConfig, Transformer
from unmask.training import TrainConfig, train

torch.set_num_threads(1)
LAY = JointLayout(image_shape=(2, 3), image_vocab=5, mask_shape=(2, 2), num_classes=3)


def test_layout_ids_and_roundtrip():
    assert (LAY.image_len, LAY.mask_len, LAY.seq_len) == (6, 4, 10)
    assert (LAY.vocab_size, LAY.mask_id) == (8, 8)
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 5, (4, 2, 3), generator=g)
    mask = torch.randint(0, 3, (4, 2, 2), generator=g)
    x = LAY.combine(img, mask)
    assert x.shape == (4, 10)
    assert torch.equal(x[:, 6:], mask.reshape(4, 4) + 5)  # classes live at ids V..V+C-1
    i2, m2 = LAY.split(x)
    assert torch.equal(i2, img) and torch.equal(m2, mask)
    with pytest.raises(ValueError, match="mask ids must lie in"):
        LAY.combine(img, mask + 3)


def test_x_init_per_task():
    img = torch.zeros(2, 2, 3, dtype=torch.long) + 4
    mask = torch.ones(2, 2, 2, dtype=torch.long)
    x = LAY.x_init("image_to_mask", image=img)
    assert (x[:, :6] == 4).all() and (x[:, 6:] == LAY.mask_id).all()
    x = LAY.x_init("mask_to_image", mask=mask)
    assert (x[:, :6] == LAY.mask_id).all() and (x[:, 6:] == 6).all()
    assert (LAY.x_init("joint", batch_size=3) == LAY.mask_id).all()
    with pytest.raises(ValueError, match="needs the image"):
        LAY.x_init("image_to_mask", mask=mask)
    with pytest.raises(ValueError, match="unknown joint task"):
        LAY.x_init("segment", image=img)


def _model() -> Transformer:
    cfg = ModelConfig(vocab_size=LAY.vocab_size, seq_len=LAY.seq_len, dim=32, depth=2, heads=4,
                      modalities=LAY.modalities())
    torch.manual_seed(0)
    m = Transformer(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m.eval()


def test_logits_restricted_to_each_modality():
    m = _model()
    x = torch.randint(0, LAY.vocab_size + 1, (3, LAY.seq_len))
    with torch.no_grad():
        p = m(x, torch.rand(3)).softmax(-1)
    # image positions: all mass on ids 0..4; mask positions: all mass on ids 5..7
    assert float(p[:, :6, 5:].sum()) == 0.0 and float(p[:, 6:, :5].sum()) == 0.0
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 10))
    # the same restriction for an unrestricted denoiser through restrict_logits
    r = restrict_logits(LAY, torch.zeros(1, 10, 8)).softmax(-1)
    torch.testing.assert_close(r[0, 0, :5], torch.full((5,), 0.2))
    torch.testing.assert_close(r[0, 7, 5:], torch.full((3,), 1 / 3))


def test_modality_embedding_distinguishes_segments():
    m = _model()
    pos = m.positions()
    torch.testing.assert_close(pos[7] - m.pos_emb[7], m.mod_emb.weight[1])
    torch.testing.assert_close(pos[0] - m.pos_emb[0], m.mod_emb.weight[0])
    # modalities are config, not state: the state dict has only the embedding table added
    keys = set(m.state_dict())
    assert "mod_emb.weight" in keys and "valid_vocab" not in keys


def test_config_validation():
    with pytest.raises(ValueError, match="lengths sum to 9"):
        ModelConfig(vocab_size=8, seq_len=10, modalities=LAY.modalities()[:1] + (
            LAY.modalities()[1].model_copy(update={"length": 3}),))
    bad = LAY.modalities()[1].model_copy(update={"vocab": (5, 9)})
    with pytest.raises(ValueError, match="vocab"):
        ModelConfig(vocab_size=8, seq_len=10, modalities=(LAY.modalities()[0], bad))
    cfg = ModelConfig(vocab_size=8, seq_len=10, modalities=LAY.modalities())
    assert ModelConfig(**cfg.model_dump(mode="json")) == cfg  # checkpoints round-trip


def test_one_training_run_is_finite(tmp_path):
    g = torch.Generator().manual_seed(2)
    x = LAY.combine(torch.randint(0, 5, (32, 2, 3), generator=g),
                    torch.randint(0, 3, (32, 2, 2), generator=g))
    model = Transformer(ModelConfig(vocab_size=8, seq_len=10, dim=32, depth=1, heads=4,
                                    modalities=LAY.modalities()))
    res = train(model, x, None, TrainConfig(steps=3, batch_size=8, warmup_steps=1,
                                            device="cpu", ckpt_every=3), tmp_path,
                progress=False)
    assert res.step == 3 and res.loss is not None and res.loss < 10
