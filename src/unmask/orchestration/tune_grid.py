"""Run a list of trial specs as one Ray Tune grid; trial events go to a :class:`TrialBoard`.

Tune runs the trials (``max_concurrent_trials``, per-trial resources, ``FailureConfig(
max_failures=retries)`` retries of a failed trial) and a Tune callback, running in the driver,
records each trial's start, retry, completion or error on the board. The board is thread-safe
and lets other threads (the Prefect tasks mirroring the trials) wait for one trial's outcome.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unmask.orchestration.placement import require_resources, train_bundles
from unmask.orchestration.settings import RaySettings
from unmask.orchestration.trials import TrialSpec, tune_trainable

__all__ = ["TrialOutcome", "TrialBoard", "run_grid"]


@dataclass
class TrialOutcome:
    """How a trial ended: ``completed`` (with metrics), ``failed`` (with the error)."""

    index: int
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1


class TrialBoard:
    """Thread-safe record of trial events, keyed by grid index.

    Args:
        on_start: called with the grid index when a trial first starts (in the Tune thread).
        on_end: called with the :class:`TrialOutcome` when a trial ends.
    """

    def __init__(self, on_start: Callable[[int], None] | None = None,
                 on_end: Callable[[TrialOutcome], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._events: dict[int, threading.Event] = {}
        self._outcomes: dict[int, TrialOutcome] = {}
        self._retries: dict[int, int] = {}
        self.started_at: dict[int, float] = {}
        self.ended_at: dict[int, float] = {}
        self.on_start, self.on_end = on_start, on_end

    def _event(self, index: int) -> threading.Event:
        with self._lock:
            return self._events.setdefault(index, threading.Event())

    def started(self, index: int) -> None:
        with self._lock:
            first = index not in self.started_at
            self.started_at.setdefault(index, time.time())
        if first and self.on_start is not None:
            self.on_start(index)

    def retrying(self, index: int) -> None:
        with self._lock:
            self._retries[index] = self._retries.get(index, 0) + 1

    def finish(self, outcome: TrialOutcome) -> None:
        with self._lock:
            if outcome.index in self._outcomes:
                return
            self.ended_at[outcome.index] = time.time()
            outcome.attempts = self._retries.get(outcome.index, 0) + 1
            self._outcomes[outcome.index] = outcome
        self._event(outcome.index).set()
        if self.on_end is not None:
            self.on_end(outcome)

    def wait(self, index: int, timeout: float | None = None) -> TrialOutcome:
        """Block until trial ``index`` has ended."""
        if not self._event(index).wait(timeout):
            raise TimeoutError(f"trial {index} did not end within {timeout}s")
        return self._outcomes[index]

    def outcome(self, index: int) -> TrialOutcome | None:
        with self._lock:
            return self._outcomes.get(index)

    @property
    def outcomes(self) -> dict[int, TrialOutcome]:
        with self._lock:
            return dict(self._outcomes)


def _error_text(trial: Any) -> str:
    """The exception line of a failed trial (the last line of its traceback)."""
    text = None
    with contextlib.suppress(Exception):  # the driver's local copy, else the storage's
        path = trial.error_file
        text = Path(path).read_text() if path and Path(path).is_file() else trial.get_error()
    text = str(text or getattr(trial, "error_msg", None) or "trial failed (no error recorded)")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception|Failure)\b", ln.strip())]
    return (errs[-1] if errs else lines[-1]).strip()


#: Boards of running grids, by id: Tune pickles its callbacks with the experiment state, and a
#: board (locks, events) is not picklable, so the callback holds only the id.
_BOARDS: dict[str, TrialBoard] = {}


def _get_board(board_id: str) -> TrialBoard:
    return _BOARDS[board_id]


def _callback(board_id: str, indices: Sequence[int]) -> Any:
    from ray import tune  # why: ray is slow to import; sweeps only

    class _Events(tune.Callback):
        """Forwards trial events of the driver's Tune loop to the board ``board_id``."""

        def __init__(self) -> None:
            self.board_id, self.indices = board_id, list(indices)

        def _board(self) -> TrialBoard:
            return _get_board(self.board_id)  # a module function: pickled by reference

        def _index(self, trial: Any) -> int:
            return self.indices[trial.config["index"]]

        def on_trial_start(self, iteration, trials, trial, **info):
            self._board().started(self._index(trial))

        def on_trial_recover(self, iteration, trials, trial, **info):
            self._board().retrying(self._index(trial))

        def on_trial_complete(self, iteration, trials, trial, **info):
            result = dict(trial.last_result or {})
            self._board().finish(TrialOutcome(self._index(trial), "completed", metrics=result))

        def on_trial_error(self, iteration, trials, trial, **info):
            self._board().finish(TrialOutcome(self._index(trial), "failed",
                                              error=_error_text(trial)))

    return _Events()


def _slug(text: str) -> str:
    return re.sub(r"[^\w.=,-]+", "_", text)[:80]


def run_grid(specs: Sequence[TrialSpec], *, name: str, storage_path: str | Path,
             ray: RaySettings, retries: int, board: TrialBoard,
             trainable: Callable[..., None] | None = None) -> None:
    """Run ``specs`` as a Tune grid (Ray must be initialised). Every spec ends up on the board:
    trials Tune never ran are recorded as failed.

    A trial that raises, or whose process dies, is restarted up to ``retries`` times
    (``FailureConfig(max_failures=retries)``) and then recorded as failed; the other trials go
    on. ``trainable(config, specs)`` replaces :func:`~unmask.orchestration.trials.
    tune_trainable` (``config["index"]`` picks the spec dict), e.g. for tests."""
    if not specs:
        return
    from ray import tune  # why: ray is slow to import; sweeps only

    kinds = {s.kind for s in specs}
    if kinds == {"training"}:
        # The trial only drives Ray Train, whose workers hold the CPUs, then evaluates; Tune
        # needs a non-empty request, so it holds a token amount of memory and no CPU.
        resources = {"cpu": 0.0, "memory": 1.0}
    else:
        resources = {"cpu": ray.cpus_per_trial, "gpu": ray.gpus_per_trial}
    # Fail fast: Tune would wait forever for a node that can hold a trial (or its workers).

    if kinds == {"training"}:
        require_resources(train_bundles(ray.num_workers, ray.cpus_per_worker, ray.use_gpu),
                          f"grid {name!r}: a training trial's Ray Train workers")
    else:
        require_resources([{"CPU": ray.cpus_per_trial, "GPU": ray.gpus_per_trial}],
                          f"grid {name!r}: a sampling trial")
    trainable = tune.with_resources(
        tune.with_parameters(trainable or tune_trainable, specs=[s.model_dump() for s in specs]),
        resources)

    def trial_name(trial: Any) -> str:
        s = specs[trial.config["index"]]
        return _slug(f"{s.index:03d}-{s.label}")

    board_id = f"{name}-{id(board)}"
    _BOARDS[board_id] = board
    tuner = tune.Tuner(
        trainable,
        param_space={"index": tune.grid_search(list(range(len(specs))))},
        # reuse_actors: a trial's process (torch, MLflow, the Inception extractor, the
        # checkpoint) serves the next trial — about 3 s less per trial on a CPU.
        tune_config=tune.TuneConfig(max_concurrent_trials=ray.max_concurrent_trials,
                                    reuse_actors=True,
                                    trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=name, storage_path=str(Path(storage_path).resolve()),
                                  failure_config=tune.FailureConfig(max_failures=retries),
                                  callbacks=[_callback(board_id, [s.index for s in specs])],
                                  verbose=0),
    )
    try:
        tuner.fit()
    finally:
        _BOARDS.pop(board_id, None)
        for s in specs:
            if board.outcome(s.index) is None:
                board.finish(TrialOutcome(s.index, "failed", error="the trial did not run"))
