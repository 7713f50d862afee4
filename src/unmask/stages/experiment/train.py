"""Stage ``experiment.train``: fit the denoiser of a paper experiment on its token shard.

Class-conditional (ImageNet, CIFAR-10), or text-conditional through
:class:`~unmask.tokenizers.text.TextConditionedTransformer` (COCO, CC12M), with
:func:`unmask.training.train`; writes ``out/models/<run>/model.pt``,
``out/metrics/train-<run>.json`` (a DVC metric) and ``out/plots/train-<run>.csv`` (the loss
curve, a DVC plot). ``--schedule`` overrides ``train.schedule`` and names the run (DI Table
S8's κ-schedule ablation: one run per schedule); without it the run is ``name``. Run
``python -m unmask.stages experiment.train [--schedule NAME]``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from unmask import schedules
from unmask.data.shards import TokenShards
from unmask.errors import ConfigError
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
from unmask.stages.experiment.data import timings_path
from unmask.stages.experiment.params import ExperimentParams
from unmask.stages.train import History
from unmask.tokenizers.text import TextConditionedTransformer
from unmask.tracking import make_tracker
from unmask.training import train


@stage("experiment.train", params=ExperimentParams)
def run(p: ExperimentParams, schedule: str | None = None) -> dict[str, Any]:
    """Train on ``out/tokens/train``; ``schedule`` overrides ``train.schedule`` and names the
    run (else ``name``). Returns the summary written to ``out/metrics/train-<run>.json``."""
    cfg_train = p.train
    if schedule is not None:
        if schedule not in schedules.NAMES:
            raise ConfigError(f"--schedule {schedule!r}: valid: {', '.join(schedules.NAMES)}")
        cfg_train = cfg_train.model_copy(update={"schedule": schedule})
    out = Path(p.out)
    shards = TokenShards(out / "tokens" / "train", verify=False)
    name = schedule or p.name
    tokens, labels = shards.training_set()
    text = shards.meta.get("text_encoder")
    run_dir = out / "runs" / name
    seed_everything(cfg_train.seed)  # the initialisation draws from the global RNG
    if text is not None:  # labels are caption rows; the caption table stays a memmap
        cfg = p.model_cfg(shards.vocab_size, shards.shape, len(shards))
        model: Any = TextConditionedTransformer(cfg, int(text["dim"]), table=shards.latents)
    else:
        cfg = p.model_cfg(shards.vocab_size, shards.shape, int(shards.meta["num_classes"]))
        model = Transformer(cfg)
    # checkpoints of other params, data or code are never resumed (a one-line note says why)
    parts = run_key_parts(
        params=[cfg.model_dump(mode="json"), cfg_train.model_dump(mode="json")],
        data=shards.hash,
        code=code_fingerprint("unmask.stages.experiment"),
    )
    prepare_run_dir(run_dir, parts, label=f"train[{name}]")
    tracker = make_tracker(p.tracking)
    history = History(tracker, run_dir / "history.jsonl")
    tags = {"stage": "train", "git_commit": git_commit(), "tokenizer": shards.tokenizer["identity"]}
    flat = {"experiment": p.model_dump(mode="json"), "schedule": cfg_train.schedule}
    with tracker.start_run(p.tracking.experiment, f"train-{name}", params=flat, tags=tags):
        res = train(model, tokens, labels, cfg_train, run_dir, tracker=history, progress=True)
    models = out / "models" / name
    models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(res.checkpoint, models / "model.pt")
    shutil.copyfile(f"{res.checkpoint}.sha256", models / "model.pt.sha256")
    summary = {
        "schedule": cfg_train.schedule,
        "step": res.step,
        "loss": res.loss,
        "num_params": sum(q.numel() for q in model.parameters()),
        "train_sequences": len(tokens),
        "seq_len": shards.seq_len,
        "vocab_size": shards.vocab_size,
    }
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    (out / "metrics" / f"train-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_timings(timings_path(p, f"train-{name}"), {"elapsed_s": round(res.elapsed_s, 2),
                                                      "tokens_per_s": round(res.tokens_per_s, 1)})
    (out / "plots").mkdir(parents=True, exist_ok=True)
    with open(out / "plots" / f"train-{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "grad_norm"], extrasaction="ignore")
        w.writeheader()
        w.writerows(history.rows(res.step))
    print(f"train[{name}]: {res.step} steps, loss {res.loss:.4f} → {models / 'model.pt'}")
    return summary
