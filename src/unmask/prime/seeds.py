"""Seed repeats of the ℓ comparison: is "ℓ > 1 lowers the ELBO perplexity" larger than the
spread between training seeds?

For every training seed s and every ℓ the pipeline's own ``train`` and ``evaluate`` stages run
in ``<out>/s<s>/`` (with ``data`` linked to the pipeline's prepared data, so every run scores
the *same* held-out sequences with the same Monte-Carlo times). The summary gives, per ℓ,

* PPL mean ± std over seeds (std with ddof = 1: the seed-to-seed spread),
* the paired per-seed NELBO difference Δ_s = NELBO(ℓ) − NELBO(ℓ = 1) (nats / token, same
  sequences) and its mean ± std over seeds, with t = mean / (std / √S): |t| > 4.3 is the
  two-sided 5 % level of Student's t with S − 1 = 2 degrees of freedom,

and logs one MLflow ``summary`` run (tags :func:`unmask.tracking_tags.prime_l_tags`) beside
the per-seed ``evaluate`` runs (which carry ``prime.l`` and ``train.seed``)::

    cd pipelines/text-default
    python -m unmask.prime.seeds --seeds 0 1 2 --ells 1 2 4 --out seeds \\
        --set train.steps=150 --set evaluate.n_sequences=128 --set evaluate.num_samples=8

Finished (seed, ℓ) cells (``eval/l<ℓ>/metrics.json`` present, same run key) are reused, so an
interrupted study resumes; ``--jobs`` runs that many seeds in parallel processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_seed", "summarise", "main"]


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _overrides(base: list[str], seed: int, ells: list[int], tracking_root: str) -> list[str]:
    return [
        *base,
        f"train.seed={seed}",
        f"prime.ells={json.dumps(ells)}",
        f"tracking.root={tracking_root}",
    ]


def run_seed(
    params_path: str, overrides: list[str], seed: int, ells: list[int], out: str
) -> dict[int, dict[str, Any]]:
    """Train + evaluate every ℓ at training seed ``seed`` in ``<out>/s<seed>`` (cwd = the
    pipeline folder, which holds ``data/``). Returns {ℓ: evaluate metrics}."""
    from unmask.prime.config import load_prime_params
    from unmask.prime.stages import run_evaluate, run_train
    from unmask.runtime import configure_threads

    configure_threads()  # $UNMASK_THREADS or 1 (unmask.runtime)
    pipeline = Path.cwd()
    raw = load_prime_params(params_path, overrides)
    root = str((pipeline / raw.tracking.root).resolve())
    params = load_prime_params(params_path, _overrides(overrides, seed, ells, root))
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
                run_train(params, ell)
                run_evaluate(params, ell)
            done[ell] = json.loads(ej.read_text())
    return done


def summarise(out: str | Path, seeds: list[int], ells: list[int]) -> dict[str, Any]:
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


def _log(summary: dict[str, Any], params_path: str, overrides: list[str]) -> None:
    from unmask.prime.config import load_prime_params
    from unmask.tracking import NullTracker, Tracker
    from unmask.tracking_tags import prime_l_tags

    params = load_prime_params(params_path, overrides)
    tracker = Tracker(root=params.tracking.root) if params.tracking.enabled else NullTracker()
    flat: dict[str, float] = {}
    for key, r in summary["per_ell"].items():
        for k in ("ppl_mean", "ppl_std", "isr_mean", "delta_mean", "delta_std", "t_stat"):
            if r.get(k) is not None:
                flat[f"{k}_{key}"] = r[k]
    with tracker.start_run(
        params.tracking.experiment,
        "seeds-summary",
        params={**params.flat(), "seeds": summary["seeds"], "ells": summary["ells"]},
        tags={**prime_l_tags("summary"), "verdict": summary["verdict"][:4900]},
    ):
        tracker.log_metrics(flat, step=0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m unmask.prime.seeds", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ells", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--out", default="seeds")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained in parallel processes")
    ap.add_argument(
        "--summarise-only",
        action="store_true",
        help="no training: summarise the finished cells of --seeds × --ells under --out",
    )
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    from unmask.errors import user_errors

    with user_errors():
        if len(set(args.seeds)) != len(args.seeds) or len(set(args.ells)) != len(args.ells):
            raise ValueError("--seeds and --ells must be distinct values")
        if args.summarise_only:
            pass
        elif args.jobs > 1:
            with ProcessPoolExecutor(
                args.jobs, mp_context=multiprocessing.get_context("spawn")
            ) as pool:
                futs = [
                    pool.submit(run_seed, args.params, args.overrides, s, args.ells, args.out)
                    for s in args.seeds
                ]
                for f in futs:
                    f.result()
        else:
            for s in args.seeds:
                run_seed(args.params, args.overrides, s, args.ells, args.out)
        summary = summarise(args.out, args.seeds, args.ells)
        Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _log(summary, args.params, args.overrides)
        print(f"seeds: {summary['verdict']}")
        return summary


if __name__ == "__main__":
    main(sys.argv[1:])
