"""Stage ``train``: fit the class-conditional denoiser on the training shard.

Builds the :class:`~unmask.models.Transformer` from ``params.model`` (vocabulary, grid and
classes derived from the tokenizer and dataset), trains on the shard's rows (and their flipped
copies when it has them), runs :func:`unmask.training.train` with
resumable checkpoints in ``runs/train/`` (wiped when the model, training params or data change),
logs to MLflow (experiment ``tracking.experiment``, run ``train``) and writes

* ``models/model.pt`` (+ ``.sha256``): the final checkpoint (raw + EMA weights, configs);
* ``models/train.json``: step, final loss, throughput, parameter count;
* ``metrics/train_history.csv``: the logged loss curve (a DVC plot).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Mapping
from typing import Any

from unmask.config import Params
from unmask.data.shards import TokenShards
from unmask.models import Transformer
from unmask.stages import PATHS, git_commit, load_tokenizer, main, make_tracker
from unmask.training import train


class _History:
    """Forwards ``log_metrics`` to a tracker and keeps the rows for the plot file."""

    def __init__(self, tracker: Any) -> None:
        self.tracker, self.rows = tracker, []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.tracker.log_metrics(metrics, step=step)
        self.rows.append({"step": step, **metrics})


def _run_key(params: Params, shards: TokenShards) -> str:
    """What a resumable run in ``runs/train`` must match: model, training params and data."""
    blob = json.dumps(
        [params.model.model_dump(mode="json"), params.train.model_dump(mode="json"), shards.hash],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def run(params: Params) -> dict:
    tok = load_tokenizer(params)
    shards = TokenShards(PATHS.tokens / "train", tokenizer_hash=tok.hash)
    key_file = PATHS.run_dir / "run_key"
    key = _run_key(params, shards)
    if PATHS.run_dir.exists() and (not key_file.exists() or key_file.read_text() != key):
        shutil.rmtree(PATHS.run_dir)  # checkpoints of other params: never resume from them
    PATHS.run_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)

    model = Transformer(params.model)
    n_params = sum(p.numel() for p in model.parameters())
    tracker = make_tracker(params.tracking)
    history = _History(tracker)
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
            "elapsed_s": round(result.elapsed_s, 2),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "num_params": n_params,
            "train_sequences": len(tokens),
            "seq_len": shards.seq_len,
        }
        tracker.log_metrics(
            {"final_loss": result.loss or float("nan"), "num_params": n_params}, step=result.step
        )

    PATHS.models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.checkpoint, PATHS.checkpoint)
    shutil.copyfile(f"{result.checkpoint}.sha256", f"{PATHS.checkpoint}.sha256")
    (PATHS.models / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    PATHS.metrics.mkdir(parents=True, exist_ok=True)
    with open(PATHS.metrics / "train_history.csv", "w", newline="") as f:
        fields = ["step", "loss", "lr", "grad_norm", "tokens_per_s"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history.rows)
    print(
        f"train: {result.step} steps, loss {result.loss:.4f}, {result.elapsed_s:.0f}s "
        f"→ {PATHS.checkpoint}"
    )
    return summary


if __name__ == "__main__":
    main("train", run=run)
