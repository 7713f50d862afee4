"""Joint image + segmentation-mask models (Discrete Interpolants §3.4, eq. 4; Table 6).

One masked model over ``[image tokens | mask tokens]`` (:class:`JointLayout`), trained once by
masking both modalities, is used three ways through :func:`unmask.sampling.sample`'s ``x_init``
(:func:`sample_joint`): unconditional joint generation, image → mask (segmentation as
unmasking) and mask → image. Each modality may have its own training κ schedule
(:class:`ModalitySchedules`, ``train.schedules`` in params). Its stages (``joint.tokenize``,
``joint.train``, ``joint.evaluate``: ``python -m unmask.stages joint.train``,
:mod:`unmask.joint.stages`, params :mod:`unmask.joint.params`) run ``pipelines/seg-default``
and ``pipelines/cityscapes``.
"""

from unmask.runtime import lazy_exports

# loaded on first use, so that a stage importing one joint module (e.g. joint.tokenize → params)
# does not load — nor, in ``unmask dvc deps``, depend on — the sampler
_LAZY = {
    "unmask.joint.layout": ["JointLayout", "TASKS"],
    "unmask.joint.sampling": ["sample_joint", "restrict_logits"],
    "unmask.joint.schedules": ["ModalitySchedules", "JointTrainConfig", "train_schedule"],
    "unmask.joint.params": ["JointParams"],
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [name for names in _LAZY.values() for name in names]
