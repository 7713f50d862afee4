"""The ``joint.*`` stages of the joint image–mask pipelines (``pipelines/seg-default``,
``pipelines/cityscapes``), one module per stage so that each stage's DVC code deps are its own
imports (:func:`unmask.stages.module_of`); run from the pipeline folder (``--params FILE``,
``--set key=value``)::

    python -m unmask.stages joint.tokenize   (tokenize.py) → tokens/{tokens.npz, meta.json, vq.pt}
    python -m unmask.stages joint.train      (train.py)    → models/{model.pt, train.json}
    python -m unmask.stages joint.evaluate   (evaluate.py) → samples/*.png, metrics.json, report/

Params: :class:`~unmask.joint.params.JointParams`. Every stage logs an MLflow run tagged
``unmask.task=joint_seg``. This package imports nothing.
"""
