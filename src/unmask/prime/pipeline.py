"""The MDM-Prime pipeline's training per ℓ and the folder layout it shares with evaluation
(:mod:`unmask.prime.evaluation`), as library functions over :class:`PrimeParams`, run in the
pipeline's folder (``data/``, ``runs/``, ``models/``, ``eval/``): the ``prime.*`` stages
(:mod:`unmask.prime.stages`, e.g. ``python -m unmask.stages prime.train --ell 2``) and the
seed study of :mod:`unmask.prime.seeds` call them.

* :func:`train_ell` — train the ℓ sub-token model → ``models/l<ℓ>/{model.pt,train.json}``,
  resuming from ``runs/l<ℓ>/checkpoints`` (wiped, with a one-line message, when the model,
  training params, data or code change);
* :data:`ESTIMATOR` — what the evaluation's NELBO / perplexity is.

Wall-clock values go to ``runs/timings/`` and MLflow, never to the DVC outputs, so a rerun
writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unmask.errors import ConfigError
from unmask.prime.config import PrimeParams
from unmask.prime.data import DATA, load_split
from unmask.prime.model import (
    PrimeConfig,
    PrimeTransformer,
    save_prime_model,
)
from unmask.prime.subtokens import SubTokenView
from unmask.runtime import (
    code_fingerprint,
    prepare_run_dir,
    run_key_parts,
    seed_everything,
    write_timings,
)
from unmask.tracking import make_tracker
from unmask.tracking_tags import (
    METRIC_TRAIN_SECONDS,
    PARAM_PRIME_L,
    prime_l_tags,
)
from unmask.training import train

__all__ = ["DATA", "RUNS", "MODELS", "EVAL", "TIMINGS", "ESTIMATOR", "check_ell", "model_config",
           "run_key", "run_params", "train_ell"]

RUNS, MODELS, EVAL = Path("runs"), Path("models"), Path("eval")  # and DATA (prime.data)
TIMINGS = RUNS / "timings"  # wall-clock records: no stage declares them (git-ignored)

#: What our NELBO / perplexity is (issue 18): not comparable with MDM-Prime Tab. 2 as the
#: same estimator — only the direction over ℓ is.
ESTIMATOR = ("continuous-time ELBO over sub-tokens (sum of per-digit marginals), "
             "not MDM-Prime eq. 5's estimator")


def check_ell(params: PrimeParams, ell: int) -> None:
    """A stage's ``--ell`` must be one of the pipeline's ``prime.ells`` (one-line error)."""
    if ell not in params.prime.ells:
        raise ConfigError(f"--ell {ell} is not in prime.ells {params.prime.ells}")


def model_config(params: PrimeParams, meta: dict, ell: int) -> PrimeConfig:
    """The token-level trunk config: params.model plus the shape of the prepared data, and
    ``prime.carry_over``."""
    m = dict(params.model)
    m["vocab_size"] = meta["vocab_size"]
    m["num_classes"] = 0  # unconditional, as MDM-Prime's text and pixel experiments
    shape = meta["shape"]
    if len(shape) == 1:
        m["seq_len"] = shape[0]
    else:
        m["grid"] = tuple(shape)
        m.setdefault("pos", "learned2d")
    return PrimeConfig(model=m, ell=ell, carry_over=params.prime.carry_over)


def run_key(cfg: PrimeConfig, params: PrimeParams, meta: dict) -> dict[str, str]:
    """What a resumable run in ``runs/l<ℓ>`` must match: model and training params, the
    prepared data and the code that trains (this module's import closure)."""
    return run_key_parts(
        params=[cfg.model_dump(mode="json"), params.train.model_dump(mode="json")],
        data=[meta["counts"], meta["vocab_size"], meta["data"]],
        code=code_fingerprint(__name__),
    )


def run_params(params: PrimeParams, ell: int) -> dict[str, Any]:
    """The MLflow params of an ℓ run (train or evaluate): the flat params plus ℓ."""
    return {**params.flat(), "ell": ell, PARAM_PRIME_L: ell}


def train_ell(params: PrimeParams, ell: int) -> dict[str, Any]:
    """Train the ℓ model on ``data/train`` → ``models/l<ℓ>``; returns ``train.json``."""
    tokens, _, meta = load_split(DATA, "train")
    cfg = model_config(params, meta, ell)
    run_dir, out = RUNS / f"l{ell}", MODELS / f"l{ell}"
    prepare_run_dir(run_dir, run_key(cfg, params, meta), label=f"train ℓ={ell}")
    seed_everything(params.train.seed)  # the initialisation draws from the global RNG
    model = PrimeTransformer(cfg)
    tracker = make_tracker(params.tracking)
    tags = {"stage": "train", "ell": ell, "base": model.codec.base, **prime_l_tags("train")}
    with tracker.start_run(params.tracking.experiment, f"train-l{ell}",
                           params=run_params(params, ell), tags=tags):
        res = train(model, SubTokenView(tokens, model.codec), None, params.train, run_dir,
                    tracker=tracker, resume=True)
        # the loop's loss is per sub-token (normalised by L·ℓ): report it per token too
        loss_tok = (res.loss or float("nan")) * ell
        summary = {"ell": ell, "base": model.codec.base, "vocab_size": cfg.model.vocab_size,
                   "step": res.step, "loss_per_subtoken": res.loss, "loss_per_token": loss_tok,
                   "num_params": model.num_params()}
        timings = {"elapsed_s": round(res.elapsed_s, 1),
                   "tokens_per_s": round(res.tokens_per_s / ell, 1)}
        tracker.log_metrics({"final_loss_per_token": loss_tok, "num_params": model.num_params(),
                             METRIC_TRAIN_SECONDS: res.elapsed_s}, step=res.step)
    out.mkdir(parents=True, exist_ok=True)
    weights = res.ema.shadow if res.ema is not None else None
    save_prime_model(model, out / "model.pt", weights=weights, extra={"step": res.step})
    (out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_timings(TIMINGS / f"train-l{ell}.json", timings)
    print(f"train ℓ={ell} (b={model.codec.base}): {res.step} steps, loss/token {loss_tok:.4f}, "
          f"{res.elapsed_s:.0f}s → {out}")
    return summary
