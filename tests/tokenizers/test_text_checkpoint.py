"""TextConditionedTransformer checkpoints: the text-embedding size travels in the stored model
config, so :func:`unmask.training.load_checkpoint` rebuilds the model for any ``text_dim``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.models import ModelConfig
from unmask.tokenizers.text import HashedBagOfWords, TextConditionedTransformer, TextModelConfig
from unmask.training import TrainConfig, load_checkpoint, train

CAPTIONS = ["a red bus on a street", "two dogs in the snow", "a plate of pasta", "a tall tower"]


def _cfg() -> ModelConfig:
    return ModelConfig(
        vocab_size=6,
        grid=(2, 3),
        num_classes=len(CAPTIONS),
        dim=16,
        depth=1,
        heads=2,
        timestep="explicit",
    )


@pytest.mark.parametrize("text_dim", [24, 512])
def test_train_save_reload_round_trip(tmp_path, text_dim):
    torch.manual_seed(0)
    table = HashedBagOfWords(text_dim).encode(CAPTIONS)
    model = TextConditionedTransformer(_cfg(), text_dim, table=table)
    tokens = torch.randint(0, 6, (8, 2, 3))
    labels = torch.arange(8) % len(CAPTIONS)
    tc = TrainConfig(
        steps=2,
        batch_size=4,
        warmup_steps=1,
        ckpt_every=2,
        log_every=1,
        device="cpu",
        ema_decay=0.0,
    )
    res = train(model, tokens, labels, tc, tmp_path / "run", progress=False)

    ckpt = load_checkpoint(res.checkpoint, ema=False)
    loaded = ckpt.model
    assert type(loaded) is TextConditionedTransformer
    assert isinstance(ckpt.model_config, TextModelConfig)
    assert ckpt.model_config.text_dim == text_dim == loaded.class_emb.proj.in_features
    assert ckpt.state["model_config"]["text_dim"] == text_dim
    loaded.set_table(table)
    model.eval()
    x = torch.randint(0, 7, (5, 2, 3)).flatten(1)
    t = torch.rand(5)
    y = torch.tensor([0, 1, 2, 3, 4])  # 4 = N: the learned null condition
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, y), model.to("cpu")(x, t, y))
    # Resuming with the same model config is accepted (the stored config re-reads equal).
    again = TextConditionedTransformer(_cfg(), text_dim, table=table)
    tc2 = tc.model_copy(update={"steps": 3, "ckpt_every": 3})
    assert train(again, tokens, labels, tc2, tmp_path / "run", progress=False).step == 3


def test_text_dim_conflict_and_legacy_default():
    cfg = TextModelConfig(**_cfg().model_dump(), text_dim=32)
    with pytest.raises(ValueError, match="text_dim=16 but the model config has text_dim=32"):
        TextConditionedTransformer(cfg, 16)
    legacy = _cfg().model_dump(mode="json")  # a config stored before text_dim existed
    assert TextConditionedTransformer(legacy).class_emb.proj.in_features == 512


def test_condition_on_new_captions():
    torch.manual_seed(0)
    model = TextConditionedTransformer(_cfg(), 8, table=HashedBagOfWords(8).encode(CAPTIONS))
    with pytest.raises(ValueError, match=r"caption table \[3, 8\] != \[4, 8\]"):
        model.set_table(np.zeros((3, 8), np.float32))
    held = HashedBagOfWords(8).encode(["a cat", "a boat", "a kite", "a car", "a tree", "sky"])
    model.condition_on(held)
    assert model.null_class == 6
    # Row i's condition is W·e_i + b (an independent computation); label 6 is the null vector.
    c = model.class_emb(torch.tensor([5, 6]))
    lin = model.class_emb.proj
    expect = torch.from_numpy(held[5]) @ lin.weight.T + lin.bias
    torch.testing.assert_close(c[0], expect)
    torch.testing.assert_close(c[1], model.class_emb.null)
