"""The ``prime.*`` stages of the MDM-Prime pipelines (``pipelines/text-default``,
``pipelines/owt``, ``pipelines/*-prime``), one module per stage so that each stage's DVC code
deps are its own imports (:func:`unmask.stages.module_of`); run from the pipeline's folder::

    python -m unmask.stages prime.prepare            (prepare.py)  → data/
    python -m unmask.stages prime.train --ell 2      (train.py)    → models/l2/
    python -m unmask.stages prime.evaluate --ell 2   (evaluate.py) → eval/l2/
    python -m unmask.stages prime.report             (report.py)   → metrics.json, reports/
    python -m unmask.stages prime.seeds[-summary] --seeds 0,1,2 --ells 1,2,4   (seeds.py)

This package imports nothing: running one stage loads only its module.
"""
