"""eMIGM (You et al. 2025, "Effective and Efficient Masked Image Generation Models").

* :mod:`~unmask.emigm.config` — :class:`MAEConfig`, the XS…H size presets;
* :mod:`~unmask.emigm.mae` — the MAE encoder–decoder (encoder sees only visible tokens plus
  buffer tokens), discrete model :class:`MAE` (``forward(x_t, t, y) -> logits``);
* :mod:`~unmask.emigm.diffusion_head` — MAR's MLP diffusion head, DDPM / DPM-Solver++ sampling;
* :mod:`~unmask.emigm.continuous` — :class:`ContinuousMAE` on KL latents, its training loop and
  MDM sampler;
* :mod:`~unmask.emigm.objective` — eMIGM's loss / time truncation / CFG interval in the
  foundation's conventions;
* :mod:`~unmask.emigm.kl_ae` — the tiny KL autoencoder of the default pipeline;
* :mod:`~unmask.emigm.pipeline` — :func:`train_emigm`, :func:`ablate_t_min`, checkpoints and
  a pipeline folder's inputs; :mod:`~unmask.emigm.sample` — eMIGM's MDM sampler with interval
  CFG (:func:`sample_emigm`);
* :mod:`~unmask.emigm.stages` — the DVC stages, one module each, ``python -m unmask.stages
  emigm.<stage>``;
* :mod:`~unmask.emigm.t_min` — the t_min ablation of the MAE with FID per point and MLflow
  runs (library functions; the Prefect deployment ``ablations/t_min`` is the common ablation
  flow's training axis).
"""

from unmask.emigm.config import PAPER_PARAMS, HeadConfig, MAEConfig
from unmask.emigm.continuous import ContinuousMAE, sample_continuous, train_continuous
from unmask.emigm.diffusion_head import DiffusionHead
from unmask.emigm.mae import MAE
from unmask.emigm.objective import emigm_cfg_interval, emigm_train_config
from unmask.emigm.pipeline import EMIGMTrainResult, TokenData, ablate_t_min, train_emigm
from unmask.emigm.sample import sample_emigm

__all__ = [
    "MAEConfig",
    "HeadConfig",
    "PAPER_PARAMS",
    "MAE",
    "ContinuousMAE",
    "DiffusionHead",
    "train_continuous",
    "sample_continuous",
    "emigm_train_config",
    "emigm_cfg_interval",
    "train_emigm",
    "sample_emigm",
    "ablate_t_min",
    "EMIGMTrainResult",
    "TokenData",
]
