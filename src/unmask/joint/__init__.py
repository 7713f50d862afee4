"""Joint image + segmentation-mask models (Discrete Interpolants §4.2).

One masked model over ``[image tokens | mask tokens]`` (:class:`JointLayout`), trained once by
masking both modalities, is used three ways through :func:`unmask.sampling.sample`'s ``x_init``
(:func:`sample_joint`): unconditional joint generation, image → mask (segmentation as
unmasking) and mask → image. ``python -m unmask.joint.stages`` runs the pipelines
``pipelines/seg-default`` and ``pipelines/cityscapes``.
"""

from unmask.joint.layout import TASKS, JointLayout
from unmask.joint.sampling import restrict_logits, sample_joint

__all__ = ["JointLayout", "TASKS", "sample_joint", "restrict_logits"]
