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
  emigm.<stage>``; :mod:`~unmask.emigm.layout` — where they read and write (``out/``);
* :mod:`~unmask.emigm.t_min` — the t_min ablation of the MAE with FID per point and MLflow
  runs (library functions; the Prefect deployment ``ablations/t_min`` is the common ablation
  flow's training axis).
"""

from unmask.runtime import lazy_exports

# loaded on first use, so that a stage importing one emigm module (e.g. emigm.prepare) does not
# load — nor, in ``unmask dvc deps``, depend on — the models, samplers and training loops
_LAZY = {
    "unmask.emigm.config": ["MAEConfig", "HeadConfig", "PAPER_PARAMS"],
    "unmask.emigm.mae": ["MAE"],
    "unmask.emigm.continuous": ["ContinuousMAE", "train_continuous", "sample_continuous"],
    "unmask.emigm.diffusion_head": ["DiffusionHead"],
    "unmask.emigm.objective": ["emigm_train_config", "emigm_cfg_interval"],
    "unmask.emigm.pipeline": ["train_emigm", "ablate_t_min", "EMIGMTrainResult", "TokenData"],
    "unmask.emigm.sample": ["sample_emigm"],
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [name for names in _LAZY.values() for name in names]
