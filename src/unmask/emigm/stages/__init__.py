"""The ``emigm.*`` stages of the eMIGM pipelines (``pipelines/emigm-default``,
``pipelines/imagenet256-emigm``), one module per stage so that each stage's DVC code deps are its
own imports (:func:`unmask.stages.module_of`); run from the pipeline folder (outputs under
``out/``)::

    python -m unmask.stages emigm.<stage> [--params params.yaml] [--set key=value ...]

    emigm.prepare → emigm.tokenize-discrete (VQ-VAE) ─→ emigm.train-discrete ──┐
                  → emigm.tokenize-continuous (KL-AE) → emigm.train-continuous ┴→ emigm.evaluate

Modules: ``prepare``, ``tokenize`` (both tokenize-*), ``train`` (both train-*), ``evaluate``.
One stage name per dvc.yaml stage (a name shared by two dvc stages would leave the stage guard
unable to tell which outputs are being written). Params:
:class:`~unmask.emigm.params.EMIGMParams`. This package imports nothing.
"""
