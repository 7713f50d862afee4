import pytest
import torch

from unmask.models import ModelConfig, Transformer
from unmask.training import TrainConfig

# Tiny models: one intra-op thread is much faster than two contending ones on a shared box.
torch.set_num_threads(1)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 7, (40, 8), generator=g), torch.randint(0, 3, (40,), generator=g)


def _model_config(**kw) -> ModelConfig:
    base = dict(vocab_size=7, seq_len=8, dim=32, depth=2, heads=2, num_classes=3,
                dropout=0.1, cond_dropout=0.2)
    return ModelConfig(**{**base, **kw})


@pytest.fixture
def make_model():
    """A factory of tiny class-conditional models (dropout on), seeded."""

    def make(seed: int = 0, cls: type[Transformer] = Transformer, **kw) -> Transformer:
        torch.manual_seed(seed)
        return cls(_model_config(**kw))

    return make


@pytest.fixture
def make_cfg():
    """A factory of short CPU training configs (log every step)."""

    def make(**kw) -> TrainConfig:
        base = dict(steps=8, batch_size=8, lr=1e-2, warmup_steps=3, lr_schedule="cosine",
                    ema_decay=0.9, log_every=1, ckpt_every=100, keep_last=2, device="cpu",
                    seed=3)
        return TrainConfig(**{**base, **kw})

    return make
