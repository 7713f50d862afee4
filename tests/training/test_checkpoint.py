import pytest
import torch
from pydantic import ValidationError

from unmask.training import (
    CorruptCheckpointError,
    TrainConfig,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    train,
)


def test_load_checkpoint_rebuilds_model(tmp_path, data, make_model, make_cfg):
    model = make_model(0)
    res = train(model, *data, make_cfg(steps=3), tmp_path, progress=False)
    assert res.checkpoint.name == "ckpt-00000003.pt"
    assert (tmp_path / "checkpoints" / "ckpt-00000003.pt.sha256").is_file()

    raw = load_checkpoint(res.checkpoint, ema=False)
    assert raw.step == 3 and raw.model_config == model.cfg and not raw.model.training
    for a, b in zip(raw.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    ema = load_checkpoint(tmp_path / "checkpoints")  # a folder: its newest valid checkpoint
    for k, v in ema.model.state_dict().items():
        assert torch.equal(v, res.ema.shadow[k])
    assert not torch.equal(ema.model.final.head.weight, model.final.head.weight)
    assert ema.train_config["steps"] == 3

    load_checkpoint(res.checkpoint, model.cfg)  # equal config: fine
    with pytest.raises(ValueError, match=r"different model config: dim: checkpoint 32 vs given 64"):
        load_checkpoint(res.checkpoint, make_model(dim=64).cfg)
    with pytest.raises(ValueError, match="different model config"):
        train(make_model(depth=1), *data, make_cfg(steps=4), tmp_path, progress=False)


def test_corruption_detected(tmp_path):
    path = save_checkpoint({"step": 1, "x": torch.arange(1000)}, tmp_path / "ckpt-00000001.pt")
    assert read_checkpoint(path)["x"].sum() == 499500
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptCheckpointError, match="ckpt-00000001.pt is corrupt: sha256"):
        read_checkpoint(path)
    # Without its checksum, a truncated file still fails to unpickle, naming the file.
    path.with_name(path.name + ".sha256").unlink()
    path.write_bytes(bytes(blob[:100]))
    with pytest.raises(CorruptCheckpointError, match="ckpt-00000001.pt cannot be read"):
        read_checkpoint(path)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_train_config_validation():
    with pytest.raises(ValidationError, match="lrr"):
        TrainConfig(lrr=1.0)
    with pytest.raises(ValidationError, match="t_min"):
        TrainConfig(t_min=0.5, t_max=0.4)
    with pytest.raises(ValidationError, match="schedule.*unknown schedule 'cosin'"):
        TrainConfig(schedule="cosin")
    with pytest.raises(ValidationError, match="betas"):
        TrainConfig(betas=(0.9, 1.0))
    assert TrainConfig(schedule="cubic", schedule_kwargs={"a": 0.5}).schedule_kwargs == {"a": 0.5}
