"""Joint image + segmentation-mask models (Discrete Interpolants §3.4, eq. 4; Table 6).

One masked model over ``[image tokens | mask tokens]`` (:class:`JointLayout`), trained once by
masking both modalities, is used three ways through :func:`unmask.sampling.sample`'s ``x_init``
(:func:`sample_joint`): unconditional joint generation, image → mask (segmentation as
unmasking) and mask → image. Each modality may have its own training κ schedule
(:class:`ModalitySchedules`, ``train.schedules`` in params). Its stages (``joint.tokenize``,
``joint.train``, ``joint.evaluate``: ``python -m unmask.stages joint.train``,
:mod:`unmask.joint.stages`) run ``pipelines/seg-default`` and ``pipelines/cityscapes``.
"""

from unmask.joint.layout import TASKS, JointLayout
from unmask.joint.sampling import restrict_logits, sample_joint
from unmask.joint.schedules import JointTrainConfig, ModalitySchedules, train_schedule

__all__ = [
    "JointLayout",
    "TASKS",
    "sample_joint",
    "restrict_logits",
    "ModalitySchedules",
    "JointTrainConfig",
    "train_schedule",
]
