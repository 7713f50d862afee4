"""``python -m unmask.stages emigm.train-discrete`` / ``emigm.train-continuous``: train the
branch's eMIGM model (:func:`unmask.emigm.pipeline.train_emigm`) →
``out/models/<kind>/{model.pt,train.json}``; wall clock → ``out/runs/timings``."""

from __future__ import annotations

import shutil

from unmask.emigm.layout import OUT, TIMINGS, Kind, write_json
from unmask.emigm.params import EMIGMParams
from unmask.emigm.pipeline import train_emigm
from unmask.runtime import write_timings
from unmask.stages import stage
from unmask.tracking import make_tracker
from unmask.tracking_tags import PAPER, PAPER_EMIGM, STAGE

__all__ = ["train", "train_discrete", "train_continuous"]


def train(p: EMIGMParams, kind: Kind) -> None:
    """Train the branch's eMIGM model → out/models/<kind>/{model.pt,train.json}."""
    tracker = make_tracker(p.tracking)
    tokens = p.data.train_path if p.data.kind == "arrays" else OUT / "tokens" / f"{kind}.npz"
    with tracker.start_run(p.tracking.experiment, f"train-{kind}",
                           params={"kind": kind, **p.model_dump(mode="json")},
                           tags={PAPER: PAPER_EMIGM, STAGE: "train", "kind": kind}):
        res = train_emigm(p, kind, OUT / "models" / kind, tokens_path=tokens, tracker=tracker)
        tracker.log_metrics({"train_seconds": res.elapsed_s,
                             "seconds_per_step": res.seconds_per_step,
                             "encoder_tokens_per_sample": res.encoder_tokens_per_sample},
                            step=res.steps)
    final = OUT / "models" / kind / "model.pt"
    shutil.copyfile(res.checkpoint, final)
    # wall clock goes to runs/timings (no DVC output): the model folder is hashed by DVC
    wall = ("elapsed_s", "seconds_per_step")
    summary = {k: v for k, v in res.as_dict().items() if k not in wall}
    summary["checkpoint"] = str(final)
    write_json(OUT / "models" / kind / "train.json", summary)
    write_timings(TIMINGS / f"train-{kind}.json", {k: res.as_dict()[k] for k in wall})


# one registered name per dvc.yaml stage (see the package docstring)
@stage("emigm.train-discrete", params=EMIGMParams)
def train_discrete(p: EMIGMParams) -> None:
    """The MAE on VQ token ids → out/models/discrete."""
    train(p, "discrete")


@stage("emigm.train-continuous", params=EMIGMParams)
def train_continuous(p: EMIGMParams) -> None:
    """The MAE + diffusion head on KL latents → out/models/continuous."""
    train(p, "continuous")
