"""Stage ``train``: fit the class-conditional denoiser on the training shard.

Builds the :class:`~unmask.models.Transformer` from ``params.model`` (vocabulary, grid and
classes derived from the tokenizer and dataset), trains on the shard's rows (and their flipped
copies when it has them), runs :func:`unmask.training.train` with
resumable checkpoints in ``runs/train/`` (wiped, with a one-line message, when the params, data
or code differ: :func:`unmask.runtime.prepare_run_dir`), logs to MLflow (experiment
``tracking.experiment``, run ``train``) and writes

* ``models/model.pt`` (+ ``.sha256``): the final checkpoint (raw + EMA weights, configs);
* ``models/train.json``: step, final loss, parameter count;
* ``metrics/train_history.csv``: the logged loss curve (a DVC plot);
* ``runs/timings/train.json``: wall time and throughput (not a DVC output, see below).

Determinism: the model is initialised right after seeding every global RNG with
``train.seed``, so the stage is a pure function of params, code and data on one machine type
and thread count (``$UNMASK_THREADS``); the DVC outputs hold no wall-clock values, so a rerun
writes the same bytes and leaves ``dvc.lock`` unchanged.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unmask.config import Params
from unmask.data.shards import TokenShards
from unmask.models import Transformer
from unmask.runtime import (
    code_fingerprint,
    git_commit,
    prepare_run_dir,
    run_key_parts,
    seed_everything,
    write_timings,
)
from unmask.stages import stage
from unmask.stages.common import PATHS
from unmask.tokenizers import build_tokenizer
from unmask.tracking import make_tracker
from unmask.training import train


class History:
    """Forwards ``log_metrics`` to a tracker and appends the rows to ``<run_dir>/history.jsonl``,
    so a resumed run's plot file also holds the rows logged before the interruption."""

    def __init__(self, tracker: Any, path: Path) -> None:
        self.tracker, self.path = tracker, path

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.tracker.log_metrics(metrics, step=step)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")

    def rows(self, last_step: int) -> list[dict]:
        """One row per logged step ≤ ``last_step`` (a replayed step after a resume: the last)."""
        by_step: dict[int, dict] = {}
        for line in self.path.read_text().splitlines() if self.path.is_file() else []:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if row["step"] <= last_step:
                by_step[row["step"]] = row
        return [by_step[k] for k in sorted(by_step)]


#: Wall-clock record of the last run (git-ignored, no stage declares it).
TIMINGS = Path("runs/timings/train.json")


def run_key(params: Params, shards: TokenShards) -> dict[str, str]:
    """What a resumable run in ``runs/train`` must match: model and training params, the
    training data and the code this stage runs (:func:`unmask.runtime.code_fingerprint`)."""
    return run_key_parts(
        params=[params.model.model_dump(mode="json"), params.train.model_dump(mode="json")],
        data=shards.hash,
        code=code_fingerprint("unmask.stages.train"),
    )


@stage("train", params=Params)
def run(params: Params) -> dict:
    tok = build_tokenizer(params.tokenizer)
    shards = TokenShards(PATHS.tokens / "train", tokenizer_hash=tok.hash)
    prepare_run_dir(PATHS.run_dir, run_key(params, shards), label="train")

    seed_everything(params.train.seed)  # the initialisation draws from the global RNG
    model = Transformer(params.model)
    n_params = sum(p.numel() for p in model.parameters())
    tracker = make_tracker(params.tracking)
    history = History(tracker, PATHS.run_dir / "history.jsonl")
    tags = {"stage": "train", "git_commit": git_commit(), "tokenizer": tok.identity}
    with tracker.start_run(params.tracking.experiment, "train", params=params.flat(), tags=tags):
        tokens, labels = shards.training_set()  # + flipped copies with tokenizer.flip
        result = train(
            model,
            tokens,
            labels,
            params.train,
            PATHS.run_dir,
            tracker=history,
            resume=True,
        )
        summary = {
            "step": result.step,
            "loss": result.loss,
            "num_params": n_params,
            "train_sequences": len(tokens),
            "seq_len": shards.seq_len,
        }
        timings = {"elapsed_s": round(result.elapsed_s, 2),
                   "tokens_per_s": round(result.tokens_per_s, 1)}
        tracker.log_metrics(
            {"final_loss": result.loss or float("nan"), "num_params": n_params,
             "train_seconds": result.elapsed_s}, step=result.step
        )

    PATHS.models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.checkpoint, PATHS.checkpoint)
    shutil.copyfile(f"{result.checkpoint}.sha256", f"{PATHS.checkpoint}.sha256")
    (PATHS.models / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_timings(TIMINGS, timings)
    PATHS.metrics.mkdir(parents=True, exist_ok=True)
    with open(PATHS.metrics / "train_history.csv", "w", newline="") as f:
        fields = ["step", "loss", "lr", "grad_norm"]  # tokens_per_s is wall-clock: MLflow
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history.rows(result.step))
    print(
        f"train: {result.step} steps, loss {result.loss:.4f}, {result.elapsed_s:.0f}s "
        f"→ {PATHS.checkpoint}"
    )
    return summary

