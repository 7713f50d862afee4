"""Stages of the paper-experiment pipelines ``pipelines/<exp>/`` (ImageNet, COCO, CC12M, CIFAR-10).

Run from the pipeline's folder, its own DVC project (``cd pipelines/<exp> && dvc repro`` does so)::

    python -m unmask.stages experiment.tokenize [--params params.yaml] [--set key=value ...]
    python -m unmask.stages experiment.train [--schedule NAME]
    python -m unmask.stages experiment.sample [--schedule NAME]
    python -m unmask.stages experiment.evaluate [--schedule NAME]
    python -m unmask.stages experiment.report

One module per stage (:mod:`.tokenize`, :mod:`.train`, :mod:`.sample`, :mod:`.evaluate`,
:mod:`.report`), the params schema in :mod:`.params` and the dataset / tokenizer builders in
:mod:`.data`. This ``__init__`` imports nothing: the runner imports only the module of the
stage it runs (:func:`unmask.stages.module_of`), so each stage's DVC deps are its own code.
"""

