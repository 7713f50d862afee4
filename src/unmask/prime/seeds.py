"""Seed repeats of the ℓ comparison: is "ℓ > 1 lowers the ELBO perplexity" larger than the
spread between training seeds?

For every training seed s and every ℓ the pipeline's own training and evaluation
(:func:`unmask.prime.pipeline.train_ell`, :func:`~unmask.prime.evaluation.evaluate_ell`) run in
``<out>/s<s>/`` (with ``data`` linked to the pipeline's prepared data, so every run scores the
*same* held-out sequences with the same Monte-Carlo times). The summary gives, per ℓ,

* PPL mean ± std over seeds (std with ddof = 1: the seed-to-seed spread),
* the paired per-seed NELBO difference Δ_s = NELBO(ℓ) − NELBO(ℓ = 1) (nats / token, same
  sequences) and its mean ± std over seeds, with t = mean / (std / √S): |t| > 4.3 is the
  two-sided 5 % level of Student's t with S − 1 = 2 degrees of freedom,

and logs one MLflow ``summary`` run (tags :func:`unmask.tracking_tags.prime_l_tags`) beside
the per-seed ``evaluate`` runs (which carry ``prime.l`` and ``train.seed``). Run it as the
``prime.seeds`` stage (:mod:`unmask.prime.stages`) from the pipeline's folder::

    cd pipelines/text-default
    python -m unmask.stages prime.seeds --seeds 0,1,2 --ells 1,2,4 --out seeds \\
        --set train.steps=150 --set evaluate.n_sequences=128 --set evaluate.num_samples=8

Finished (seed, ℓ) cells (``eval/l<ℓ>/metrics.json`` present, same settings) are reused, so an
interrupted study resumes; ``--jobs`` runs that many seeds in parallel processes;
``prime.seeds-summary`` only summarises the finished cells.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from unmask.prime.config import PrimeParams
from unmask.prime.evaluation import evaluate_ell
from unmask.prime.pipeline import ESTIMATOR, train_ell
from unmask.runtime import configure_threads
from unmask.tracking import make_tracker
from unmask.tracking_tags import prime_l_tags

__all__ = ["cell_params", "run_seed", "summarise", "study"]


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def cell_params(params: PrimeParams, seed: int, ells: Sequence[int], pipeline: Path,
                ) -> PrimeParams:
    """``params`` with training seed ``seed``, ``prime.ells = ells`` and the tracking store
    resolved against the pipeline folder (the cells run in another working directory)."""
    raw = params.flat()
    raw["train"]["seed"] = seed
    raw["prime"]["ells"] = list(ells)
    raw["tracking"]["root"] = str((pipeline / params.tracking.root).resolve())
    return PrimeParams.model_validate(raw)


def run_seed(params: PrimeParams, seed: int, ells: Sequence[int], out: str | Path,
             ) -> dict[int, dict[str, Any]]:
    """Train + evaluate every ℓ at training seed ``seed`` in ``<out>/s<seed>`` (cwd = the
    pipeline folder, which holds ``data/``). Returns {ℓ: evaluate metrics}."""
    configure_threads()  # a spawned worker starts with torch's default thread count
    pipeline = Path.cwd()
    params = cell_params(params, seed, ells, pipeline)
    work = Path(out).resolve() / f"s{seed}"
    work.mkdir(parents=True, exist_ok=True)
    link = work / "data"
    if not link.exists():
        link.symlink_to((pipeline / "data").resolve(), target_is_directory=True)
    done: dict[int, dict[str, Any]] = {}
    settings = work / "settings.json"
    # what a cell depends on (not the list of ℓ, where MLflow goes or the report title)
    key = {k: v for k, v in params.flat().items() if k not in ("prime", "tracking", "report")}
    same = settings.is_file() and json.loads(settings.read_text()) == key
    settings.write_text(json.dumps(key, indent=1))
    with _cwd(work):
        for ell in ells:
            tj, ej = Path(f"models/l{ell}/train.json"), Path(f"eval/l{ell}/metrics.json")
            fresh = (
                same
                and tj.is_file()
                and ej.is_file()
                and json.loads(tj.read_text())["step"] == params.train.steps
            )
            if not fresh:
                train_ell(params, ell)
                evaluate_ell(params, ell)
            done[ell] = json.loads(ej.read_text())
    return done


def summarise(out: str | Path, seeds: Sequence[int], ells: Sequence[int]) -> dict[str, Any]:
    """Mean ± std over seeds of PPL and of the paired NELBO difference to ℓ = 1."""
    out = Path(out)
    per: dict[int, dict[int, dict[str, Any]]] = {}
    for s in seeds:
        per[s] = {}
        for ell in ells:
            m = json.loads((out / f"s{s}" / "eval" / f"l{ell}" / "metrics.json").read_text())
            m["nelbo"] = np.load(out / f"s{s}" / "eval" / f"l{ell}" / "nelbo.npy")
            per[s][ell] = m
    rows: dict[str, Any] = {}
    for ell in ells:
        ppl = np.array([per[s][ell]["perplexity"] for s in seeds])
        isr = np.array([per[s][ell]["isr"] for s in seeds])
        row: dict[str, Any] = {
            "ell": ell,
            "base": per[seeds[0]][ell]["base"],
            "seeds": seeds,
            "ppl": ppl.tolist(),
            "ppl_mean": float(ppl.mean()),
            "ppl_std": float(ppl.std(ddof=1)) if len(seeds) > 1 else 0.0,
            "isr_mean": float(isr.mean()),
            "isr_std": float(isr.std(ddof=1)) if len(seeds) > 1 else 0.0,
            "isr_expected": per[seeds[0]][ell].get("isr_expected"),
        }
        if ell != 1 and 1 in ells:
            L = per[seeds[0]][ell]["tokens_per_sequence"]
            d = np.array(
                [float((per[s][ell]["nelbo"] - per[s][1]["nelbo"]).mean()) / L for s in seeds]
            )
            sd = float(d.std(ddof=1)) if len(seeds) > 1 else 0.0
            row.update(
                {
                    "delta_nelbo_vs_l1": d.tolist(),
                    "delta_mean": float(d.mean()),
                    "delta_std": sd,
                    "t_stat": float(d.mean() / (sd / math.sqrt(len(d)))) if sd > 0 else None,
                }
            )
        rows[f"l{ell}"] = row
    summary = {
        "seeds": seeds,
        "ells": ells,
        "estimator": ESTIMATOR,
        "per_ell": rows,
        "train_steps": per[seeds[0]][ells[0]]["train_step"],
        "n_sequences": per[seeds[0]][ells[0]]["n_sequences"],
        "num_mc_samples": per[seeds[0]][ells[0]]["num_mc_samples"],
        "verdict": _verdict(rows, len(seeds)),
    }
    return summary


#: two-sided 5 % critical values of Student's t by degrees of freedom (scipy.stats.t.ppf(0.975))
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _verdict(rows: dict[str, Any], n: int) -> str:
    parts = []
    crit = _T975.get(n - 1, 1.96)
    for key, r in rows.items():
        if "delta_mean" not in r:
            continue
        t = r["t_stat"]
        if t is None:
            word = "untested (one seed)"
        elif t < -crit:
            word = "better than"
        elif t > crit:
            word = "worse than"
        else:
            word = "not distinguishable (5 %) from"
        parts.append(
            f"{key.replace('l', 'ℓ=')} PPL {r['ppl_mean']:.1f} ± {r['ppl_std']:.1f} is "
            f"{word} ℓ=1 (ΔNELBO {r['delta_mean']:+.4f} ± {r['delta_std']:.4f} "
            f"nats/token over {n} seeds, t = {t if t is None else round(t, 2)})"
        )
    return "; ".join(parts)


def _log(summary: dict[str, Any], params: PrimeParams) -> None:
    tracker = make_tracker(params.tracking)
    flat: dict[str, float] = {}
    for key, r in summary["per_ell"].items():
        for k in ("ppl_mean", "ppl_std", "isr_mean", "delta_mean", "delta_std", "t_stat"):
            if r.get(k) is not None:
                flat[f"{k}_{key}"] = r[k]
    with tracker.start_run(
        params.tracking.experiment,
        "seeds-summary",
        params={**params.flat(), "seeds": summary["seeds"], "ells": summary["ells"]},
        tags={**prime_l_tags("summary"), "estimator": ESTIMATOR,
              "verdict": summary["verdict"][:4900]},
    ):
        tracker.log_metrics(flat, step=0)


def study(params: PrimeParams, seeds: Sequence[int], ells: Sequence[int], out: str | Path,
          *, jobs: int = 1, train: bool = True) -> dict[str, Any]:
    """Run (``train``) or reuse every (seed, ℓ) cell under ``out``, then write
    ``<out>/summary.json`` (:func:`summarise`) and log the MLflow summary run."""
    if len(set(seeds)) != len(seeds) or len(set(ells)) != len(ells):
        raise ValueError(f"seeds {list(seeds)} and ells {list(ells)} must be distinct values")
    if train and jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for f in [pool.submit(run_seed, params, s, ells, out) for s in seeds]:
                f.result()
    elif train:
        for s in seeds:
            run_seed(params, s, ells, out)
    summary = summarise(out, list(seeds), list(ells))
    Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _log(summary, params)
    print(f"seeds: {summary['verdict']}")
    return summary
