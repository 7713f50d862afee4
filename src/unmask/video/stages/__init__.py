"""The ``video.*`` stages of the video pipelines (``pipelines/video-default``,
``pipelines/faceforensics``, ``pipelines/dmlab``), one module per stage so that each stage's DVC
code deps are its own imports (:func:`unmask.stages.module_of`); run from the pipeline folder
(``--params FILE``, ``--set key=value``)::

    python -m unmask.stages video.tokenize   (tokenize.py) → tokens/{tokens.npz, meta.json, vq.pt}
    python -m unmask.stages video.train      (train.py)    → models/{model.pt, train.json}
    python -m unmask.stages video.evaluate   (evaluate.py) → samples/{*.gif, *.mp4, *.png},
                                                             metrics.json, report/

Params: :class:`~unmask.video.params.VideoParams`; clips: :mod:`unmask.video.clips`. MLflow runs
are tagged ``unmask.task=video``. This package imports nothing.
"""
