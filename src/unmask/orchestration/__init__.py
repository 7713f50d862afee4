"""Orchestration: the local service stack, Ray Tune ablation grids, Ray Train DDP, MLflow runs.

The pieces, each a small module the Prefect flows in ``flows/`` call:

- :mod:`~unmask.orchestration.env`       — free ports, ``ray.init`` (telemetry off: ``runtime``)
- :mod:`~unmask.orchestration.procs`     — start processes in their own session, stop them by pid
- :mod:`~unmask.orchestration.stack`     — ``unmask stack up|down|status``: Prefect server, MLflow
  server and a Prefect process worker on 127.0.0.1, pids and logs under ``.unmask/stack/``
- :mod:`~unmask.orchestration.settings`  — the typed ablation settings (``flows/ablations.yaml``)
- :mod:`~unmask.orchestration.grid`      — grid points, their keys, the CSV table of a grid
- :mod:`~unmask.orchestration.runs`      — MLflow parent / nested trial runs, finished-point lookup
- :mod:`~unmask.orchestration.evaluation` — sample a checkpoint and score it (FID or statistics)
- :mod:`~unmask.orchestration.ddp`       — Ray Train ``TorchTrainer`` around the training loop
- :mod:`~unmask.orchestration.trials`    — the Ray Tune trainable (one grid point)
- :mod:`~unmask.orchestration.tune_grid` — run a grid with Ray Tune, trial events to callbacks
- :mod:`~unmask.orchestration.ablation`  — one ablation end to end (plan → grid → CSV)
- :mod:`~unmask.orchestration.placement` — fail-fast resource checks, node tags
- :mod:`~unmask.orchestration.staging`   — a sweep's inputs copied to shared storage
- :mod:`~unmask.orchestration.cluster`   — a simulated multi-node Ray cluster (tests)
- :mod:`~unmask.orchestration.warm`      — the Ray worker warm-up hook
- :mod:`~unmask.orchestration.tiny`      — the real default project shrunk by overrides (tests,
  benchmarks)

Layering: orchestration uses stages and the library; nothing below it imports it
(``tests/test_layers.py``).

Paths in params resolve against the project root wherever a trial runs (:mod:`unmask.paths`).

Importing this package is cheap: Ray, MLflow and Prefect are imported where they are used.
"""
