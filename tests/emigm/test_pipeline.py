"""The eMIGM pipeline API: params validation, train_emigm through the foundation's training
loop, the t_min cost ablation, and the pipeline params files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.config import ConfigError, load_params
from unmask.emigm.params import EMIGMParams
from unmask.emigm.pipeline import TokenData, ablate_t_min, load_discrete, train_emigm

ROOT = Path(__file__).resolve().parents[2]
FAST = {"steps": 12, "batch_size": 16, "warmup_steps": 2, "log_every": 4, "ckpt_every": 12}
MODEL = {"preset": "emigm-tiny", "dim": 32, "heads": 4, "depth": 1, "buffer_size": 2}


def params(**over) -> EMIGMParams:
    raw = {"discrete": {"model": MODEL, "train": FAST},
           "continuous": {"model": {**MODEL, "head": {"width": 32, "depth": 1}}, "train": FAST},
           "tracking": {"enabled": False}}
    return EMIGMParams.model_validate({**raw, **over})


def toy_tokens(n: int = 64) -> TokenData:
    g = torch.Generator().manual_seed(0)
    return TokenData(torch.randint(0, 16, (n, 4, 4), generator=g),
                     torch.randint(0, 10, (n,), generator=g), (4, 4), 16)


@pytest.mark.parametrize("path", ["pipelines/emigm-default/params.yaml",
                                  "pipelines/imagenet256-emigm/params.yaml"])
def test_pipeline_params_files_validate(path):
    p = load_params(ROOT / path, schema=EMIGMParams)
    assert p.objective.t_min == pytest.approx(0.2) and p.objective.schedule == "exp"
    assert p.sample.cfg_schedule == "constant"  # eMIGM App. D: constant within the interval


def test_paper_guidance_is_converted_to_the_package_convention():
    """eMIGM's evaluation uses --cfg 4 (MAR's scale s: ε_u + s(ε_c − ε_u)); the package's
    w in (1 + w)·c − w·u is s − 1 = 3."""
    p = load_params(ROOT / "pipelines/imagenet256-emigm/params.yaml", schema=EMIGMParams)
    s = 4.0
    c, u = torch.tensor(0.7), torch.tensor(-0.4)
    w = p.sample.cfg_scale
    assert torch.allclose((1 + w) * c - w * u, u + s * (c - u))
    assert p.sample.cfg_interval == (0.1, 0.3)  # --cfg_t_min 0.1 --cfg_t_max 0.3


def test_params_errors_name_the_key(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("objective: {t_min: 0.2}\ndiscrete: {train: {stepz: 3}}\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_params(f, schema=EMIGMParams)
    f.write_text("discrete: {train: {t_min: 0.1}}\n")
    with pytest.raises(ConfigError, match="belongs to the 'objective' section"):
        load_params(f, schema=EMIGMParams)
    f.write_text("objective: {schedule: quartic}\n")
    with pytest.raises(ConfigError, match="objective.schedule"):
        load_params(f, schema=EMIGMParams)
    f.write_text("sample: {cfg: 2.0}\n")  # the old key: eMIGM's scale s
    with pytest.raises(ConfigError, match=r"sample: key 'cfg' .* is now cfg_scale = s - 1"):
        load_params(f, schema=EMIGMParams)
    f.write_text("discrete: {train: {steps: 3}}\n")
    with pytest.raises(ConfigError, match="cfg_schedule"):
        load_params(f, ["sample.cfg_schedule=cubic"], schema=EMIGMParams)
    p = load_params(f, ["discrete.train.batch_size=8", "sample.cfg_scale=1.5"],
                    schema=EMIGMParams)
    assert p.discrete.train == {"steps": 3, "batch_size": 8} and p.sample.cfg_scale == 1.5


def test_train_emigm_discrete_through_the_foundation_loop(tmp_path):
    res = train_emigm(params(), "discrete", tmp_path, data=toy_tokens(), progress=False)
    assert res.steps == 12 and res.elapsed_s > 0 and np.isfinite(res.loss)
    assert 0 < res.encoder_tokens_per_sample < 16
    model = load_discrete(res.checkpoint)
    assert model.cfg.grid == (4, 4) and model.cfg.num_classes == 10
    assert model(torch.full((2, 4, 4), 16), None, torch.tensor([0, 10])).shape == (2, 4, 4, 16)


def test_t_min_ablation_reports_cost_and_truncation(tmp_path):
    """t_min = 0.2 (exp schedule) masks ≥ 63 % of the tokens, so the MAE encoder processes
    fewer tokens per sample than without truncation."""
    rows = ablate_t_min(params(), "discrete", tmp_path, values=(0.0, 0.2), data=toy_tokens())
    by = {r["t_min"]: r for r in rows}
    assert by[0.2]["mask_ratio"] > 1 - np.exp(-1.0) - 0.05
    assert by[0.2]["encoder_tokens_per_sample"] < by[0.0]["encoder_tokens_per_sample"]
    assert all(r["elapsed_s"] > 0 and r["seconds_per_step"] > 0 for r in rows)


def test_train_emigm_continuous_from_npz(tmp_path):
    g = np.random.default_rng(0)
    np.savez(tmp_path / "lat.npz", latents=g.normal(size=(32, 3, 2, 2)).astype(np.float32),
             labels=g.integers(0, 10, 32))
    data = TokenData.load(tmp_path / "lat.npz")
    assert data.tokens.shape == (32, 3, 2, 2) and data.grid == (2, 2)
    res = train_emigm(params(), "continuous", tmp_path / "run", tokens_path=tmp_path / "lat.npz",
                      progress=False)
    assert Path(res.checkpoint).is_file() and res.num_params > 0
