"""Stages of the paper-experiment pipelines ``pipelines/<exp>/`` (ImageNet, COCO, CC12M, CIFAR-10).

Run from the pipeline's folder, its own DVC project (``cd pipelines/<exp> && dvc repro`` does so)::

    python -m unmask.stages experiment.tokenize [--params params.yaml] [--set key=value ...]
    python -m unmask.stages experiment.train [--schedule NAME]
    python -m unmask.stages experiment.sample [--schedule NAME]
    python -m unmask.stages experiment.evaluate [--schedule NAME]

One module per stage (:mod:`.tokenize`, :mod:`.train`, :mod:`.sample`, :mod:`.evaluate`), the
params schema in :mod:`.params` and the dataset / tokenizer builders in :mod:`.data`. Importing
this package registers all four stages.
"""

from __future__ import annotations

from unmask.stages.experiment import evaluate, sample, tokenize, train
from unmask.stages.experiment.data import build_dataset, build_tokenizer
from unmask.stages.experiment.params import ExperimentParams

__all__ = ["ExperimentParams", "build_dataset", "build_tokenizer", "tokenize", "train", "sample",
           "evaluate"]
