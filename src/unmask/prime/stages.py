"""Stages of the MDM-Prime pipelines (``pipelines/text-default``, ``pipelines/owt``,
``pipelines/*-prime``): thin shells over the library, run from the pipeline's folder::

    python -m unmask.prime.stages prepare                 → data/{train,valid}, data/meta.json
    python -m unmask.prime.stages train --ell 2           → models/l2/{model.pt,train.json}
    python -m unmask.prime.stages evaluate --ell 2        → eval/l2/{metrics.json,nelbo.npy,
                                                             samples.txt | samples.png}
    python -m unmask.prime.stages report                  → metrics.json, reports/index.html

Options: ``--params FILE`` (default params.yaml), ``--set key=value`` (repeatable);
``$UNMASK_THREADS`` sets torch's intra-op threads (default 1, :mod:`unmask.runtime`). Training
resumes from ``runs/l<ℓ>/checkpoints`` (wiped, with a one-line message, when the model, training
params, data or code change). Wall-clock values go to ``runs/timings/`` and MLflow, never to the
DVC outputs, so a rerun writes the same bytes.
Every stage logs an MLflow run (experiment ``tracking.experiment``) and shows progress bars.

``evaluate`` estimates the NELBO (MDM-Prime eq. 6, :func:`unmask.prime.likelihood.prime_nelbo`)
of the first ``evaluate.n_sequences`` valid sequences, in nats / token, perplexity and bits per
token (bits per dimension for pixels), and samples ``sample.num_samples`` sequences measuring
the idle-step ratio next to its closed form. ``report`` puts every ℓ side by side, with the
paired (same sequences) NELBO difference to ℓ = 1 and its standard error.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask.models import ConditionedDenoiser
from unmask.prime.config import PrimeParams, load_prime_params
from unmask.prime.data import load_split, prepare
from unmask.prime.likelihood import prime_nelbo
from unmask.prime.model import (
    JointView,
    PrimeConfig,
    PrimeTransformer,
    load_prime_model,
    save_prime_model,
)
from unmask.prime.sampling import expected_isr, expected_isr_token, sample_prime
from unmask.prime.subtokens import SubTokenView
from unmask.runtime import (
    code_fingerprint,
    configure_threads,
    prepare_run_dir,
    read_timings,
    run_key_parts,
    seed_everything,
    write_timings,
)
from unmask.schedules import get as get_schedule
from unmask.tracking_tags import (
    METRIC_BITS_PER_DIM,
    METRIC_ISR,
    METRIC_PPL,
    METRIC_TRAIN_SECONDS,
    PARAM_PRIME_L,
    prime_l_tags,
)
from unmask.training import train

__all__ = ["run_prepare", "run_train", "run_evaluate", "run_report", "main", "model_config"]

DATA, RUNS, MODELS, EVAL = Path("data"), Path("runs"), Path("models"), Path("eval")
TIMINGS = RUNS / "timings"  # wall-clock records: no stage declares them (git-ignored)
REPORTS, METRICS = Path("reports"), Path("metrics.json")


def _tracker(params: PrimeParams):
    from unmask.tracking import NullTracker, Tracker

    return Tracker(root=params.tracking.root) if params.tracking.enabled else NullTracker()


def model_config(params: PrimeParams, meta: dict, ell: int) -> PrimeConfig:
    """The token-level trunk config: params.model plus the shape of the prepared data."""
    m = dict(params.model)
    m["vocab_size"] = meta["vocab_size"]
    m["num_classes"] = 0  # unconditional, as MDM-Prime's text and pixel experiments
    shape = meta["shape"]
    if len(shape) == 1:
        m["seq_len"] = shape[0]
    else:
        m["grid"] = tuple(shape)
        m.setdefault("pos", "learned2d")
    return PrimeConfig(model=m, ell=ell)


# -- prepare --------------------------------------------------------------------------------------
def run_prepare(params: PrimeParams) -> dict:
    t0 = time.perf_counter()
    meta = prepare(params.data, DATA)
    print(f"prepare: {meta['counts']} sequences of shape {meta['shape']}, C = "
          f"{meta['vocab_size']} ({time.perf_counter() - t0:.0f}s) → {DATA}")
    return meta


# -- train ----------------------------------------------------------------------------------------
def run_key(cfg: PrimeConfig, params: PrimeParams, meta: dict) -> dict[str, str]:
    """What a resumable run in ``runs/l<ℓ>`` must match: model and training params, the
    prepared data and the code of this module's import closure."""
    return run_key_parts(
        params=[cfg.model_dump(mode="json"), params.train.model_dump(mode="json")],
        data=[meta["counts"], meta["vocab_size"], meta["data"]],
        code=code_fingerprint("unmask.prime.stages"),
    )


def run_train(params: PrimeParams, ell: int) -> dict:
    tokens, _, meta = load_split(DATA, "train")
    cfg = model_config(params, meta, ell)
    run_dir, out = RUNS / f"l{ell}", MODELS / f"l{ell}"
    prepare_run_dir(run_dir, run_key(cfg, params, meta), label=f"train ℓ={ell}")
    seed_everything(params.train.seed)  # the initialisation draws from the global RNG
    model = PrimeTransformer(cfg)
    tracker = _tracker(params)
    tags = {"stage": "train", "ell": ell, "base": model.codec.base, **prime_l_tags("train")}
    with tracker.start_run(params.tracking.experiment, f"train-l{ell}",
                           params={**params.flat(), "ell": ell, PARAM_PRIME_L: ell}, tags=tags):
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


# -- evaluate -------------------------------------------------------------------------------------
def _decode_text(tokens: torch.Tensor, meta: dict) -> list[str]:
    from unmask.tokenizers.bpe import GPT2BPE

    ids = tokens.numpy()
    if meta.get("id_map") is not None:
        ids = np.asarray(meta["id_map"])[ids]
    bpe = GPT2BPE()
    return [bpe.decode(row) for row in ids]


def _save_images(tokens: torch.Tensor, meta: dict, path: Path) -> None:
    from unmask.reporting.images import image_grid, save_png
    from unmask.tokenizers.pixel import PixelTokenizer

    data = meta["data"]
    tok = PixelTokenizer(data["levels"], data["size"], channels=meta.get("channels", 1))
    imgs = tok.decode(tokens.reshape(tokens.shape[0], *meta["shape"]))
    n = imgs.shape[0]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    pad = np.zeros((rows * cols - n, *imgs.shape[1:]), dtype=imgs.dtype)
    grid = np.concatenate([imgs, pad]).reshape(rows, cols, *imgs.shape[1:])
    save_png(image_grid(grid, scale=2 if imgs.shape[1] >= 28 else 4), path)


def run_evaluate(params: PrimeParams, ell: int) -> dict:
    model, state = load_prime_model(MODELS / f"l{ell}" / "model.pt")
    tokens, _, meta = load_split(DATA, "valid")
    ev, sp = params.evaluate, params.sample
    n = min(ev.n_sequences, tokens.shape[0])
    x = torch.from_numpy(np.asarray(tokens[:n], dtype=np.int64))
    codec, L = model.codec, int(np.prod(meta["shape"]))
    schedule = get_schedule(params.train.schedule, **params.train.schedule_kwargs)
    den = ConditionedDenoiser(model)
    out = EVAL / f"l{ell}"
    out.mkdir(parents=True, exist_ok=True)
    tracker = _tracker(params)
    with tracker.start_run(params.tracking.experiment, f"evaluate-l{ell}",
                           params={**params.flat(), "ell": ell, PARAM_PRIME_L: ell},
                           tags={"stage": "evaluate", "ell": ell, **prime_l_tags("evaluate")}
                           ), torch.no_grad():
        g = torch.Generator().manual_seed(ev.seed)
        t0 = time.perf_counter()
        nel, se = [], []
        for i in tqdm(range(0, n, ev.batch_size), desc=f"nelbo ℓ={ell}", leave=False):
            est = prime_nelbo(den, x[i:i + ev.batch_size], codec=codec, schedule=schedule,
                              num_samples=ev.num_samples, generator=g,
                              max_batch=ev.batch_size)
            nel.append(est.nelbo)
            se.append(est.stderr)
        nelbo, stderr = torch.cat(nel), torch.cat(se)
        t_nelbo = time.perf_counter() - t0
        per_tok = float(nelbo.mean()) / L
        per_tok_se = float(nelbo.std()) / math.sqrt(n) / L if n > 1 else float(stderr[0]) / L
        np.save(out / "nelbo.npy", nelbo.numpy())

        g = torch.Generator().manual_seed(sp.seed)
        jd = ConditionedDenoiser(JointView(model))
        toks, idle, idle_tok, nfe, steps, secs = [], [], [], 0, 0, 0.0
        for i in range(0, sp.num_samples, sp.batch_size):
            bs = min(sp.batch_size, sp.num_samples - i)
            r = sample_prime(jd, codec=codec, batch_size=bs, seq_len=L, method=sp.method,
                             steps=sp.steps, schedule=schedule, temperature=sp.temperature,
                             top_p=sp.top_p, generator=g, fp64_gumbel=sp.fp64_gumbel,
                             progress=True)
            toks.append(r.tokens)
            idle.append(r.idle_steps.double() / max(r.steps, 1))
            idle_tok.append(r.idle_steps_token.double() / max(r.steps, 1))
            nfe, steps, secs = nfe + r.nfe, r.steps, secs + r.seconds
        samples = torch.cat(toks)
        isr, isr_tok = torch.cat(idle), torch.cat(idle_tok)
        if meta["kind"] == "pixels":
            _save_images(samples, meta, out / "samples.png")
        else:
            texts = _decode_text(samples, meta)
            (out / "samples.txt").write_text("".join(
                f"===== sample {k} =====\n{t}\n\n" for k, t in enumerate(texts)))
        grid_method = sp.method if sp.method != "first_hitting" else None
        metrics = {
            "ell": ell, "base": codec.base, "vocab_size": codec.vocab_size,
            "train_step": int(state.get("step", 0)),
            "n_sequences": n, "num_mc_samples": ev.num_samples, "tokens_per_sequence": L,
            "nelbo_nats_per_token": per_tok, "nelbo_stderr": per_tok_se,
            "perplexity": math.exp(per_tok), "bits_per_token": per_tok / math.log(2.0),
            "sample_method": sp.method, "sample_steps": steps,
            "isr": float(isr.mean()), "isr_stderr": float(isr.std() / math.sqrt(len(isr)))
            if len(isr) > 1 else 0.0,
            "isr_token": float(isr_tok.mean()),
            "isr_expected": expected_isr(schedule, sp.steps, L * ell, grid_method)
            if grid_method == "mdm" else None,
            "isr_token_expected": expected_isr_token(schedule, sp.steps, L, ell, grid_method)
            if grid_method == "mdm" else None,
            "sample_nfe_per_batch": nfe / math.ceil(sp.num_samples / sp.batch_size),
        }
        timings = {"sample_seconds": round(secs, 2), "nelbo_seconds": round(t_nelbo, 2)}
        train_s = read_timings(TIMINGS / f"train-l{ell}.json").get("elapsed_s")
        if train_s is not None:
            timings["train_seconds"] = train_s
        logged = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        # the names the report reads (unmask.tracking_tags): ppl for text, bits/dim for pixels
        if meta["kind"] == "pixels":
            logged[METRIC_BITS_PER_DIM] = metrics["bits_per_token"]
        else:
            logged[METRIC_PPL] = metrics["perplexity"]
        logged[METRIC_ISR] = metrics["isr"]
        logged.update(timings)  # METRIC_TRAIN_SECONDS is "train_seconds"
        tracker.log_metrics(logged, step=0)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_timings(TIMINGS / f"evaluate-l{ell}.json", timings)
        tracker.log_artifact(out)
    unit = "bits/dim" if meta["kind"] == "pixels" else "bits/token"
    print(f"evaluate ℓ={ell}: NELBO {per_tok:.4f} ± {per_tok_se:.4f} nats/token, PPL "
          f"{math.exp(per_tok):.2f}, {per_tok / math.log(2):.4f} {unit}; ISR "
          f"{metrics['isr']:.3f} (expected {metrics['isr_expected']}), token-level "
          f"{metrics['isr_token']:.3f}")
    return metrics


# -- report ---------------------------------------------------------------------------------------
def _paired(ell: int, base: int = 1) -> tuple[float, float] | None:
    """Mean per-token NELBO difference ℓ − base on the same sequences and its stderr."""
    a, b = EVAL / f"l{ell}" / "nelbo.npy", EVAL / f"l{base}" / "nelbo.npy"
    if ell == base or not (a.is_file() and b.is_file()):
        return None
    da, db = np.load(a), np.load(b)
    if da.shape != db.shape:
        return None
    d = (da - db) / json.loads((EVAL / f"l{ell}" / "metrics.json").read_text())[
        "tokens_per_sequence"]
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


_ROWS = [("perplexity", "ELBO perplexity (↓)"), ("nelbo_nats_per_token", "NELBO nats/token"),
         ("nelbo_stderr", "± stderr"), ("bits_per_token", "bits/token (bits/dim for pixels)"),
         ("base", "sub-token base b"), ("isr", "ISR (network input unchanged)"),
         ("isr_expected", "ISR closed form"), ("isr_token", "ISR (no token completed)"),
         ("isr_token_expected", "  closed form"), ("train_step", "training steps"),
         ("num_params", "parameters")]


def run_report(params: PrimeParams) -> dict:
    ells = params.prime.ells
    per: dict[int, dict[str, Any]] = {}
    for ell in ells:
        m = json.loads((EVAL / f"l{ell}" / "metrics.json").read_text())
        tr = json.loads((MODELS / f"l{ell}" / "train.json").read_text())
        m["num_params"] = tr["num_params"]  # wall clock: runs/timings and MLflow, not here
        paired = _paired(ell)
        if paired is not None:
            m["delta_nelbo_vs_l1"], m["delta_nelbo_vs_l1_stderr"] = paired
        per[ell] = m
    verdict = _verdict(per)
    summary = {"ells": ells, "per_ell": {f"l{e}": per[e] for e in ells}, "verdict": verdict}
    METRICS.write_text(json.dumps(summary, indent=2) + "\n")
    REPORTS.mkdir(parents=True, exist_ok=True)
    with open(REPORTS / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", *[f"l{e}" for e in ells]])
        for key, _ in _ROWS:
            w.writerow([key, *[per[e].get(key) for e in ells]])
    _write_html(params, per, verdict)
    tracker = _tracker(params)
    with tracker.start_run(params.tracking.experiment, "report", params=params.flat(),
                           tags={"stage": "report", **prime_l_tags("summary")}):
        flat = {}
        for e in ells:
            for k in ("perplexity", "nelbo_nats_per_token", "bits_per_token", "isr",
                      "isr_token", "delta_nelbo_vs_l1"):
                if per[e].get(k) is not None:
                    flat[f"{k}_l{e}"] = per[e][k]
        tracker.log_metrics(flat, step=0)
        tracker.set_tags({"verdict": verdict})
        tracker.log_artifact(REPORTS)
        tracker.log_artifact(METRICS)
    print(f"report: {verdict}")
    return summary


def _verdict(per: dict[int, dict[str, Any]]) -> str:
    if 1 not in per or len(per) < 2:
        return "no ℓ = 1 baseline to compare with"
    parts = []
    for e, m in per.items():
        if e == 1 or "delta_nelbo_vs_l1" not in m:
            continue
        d, s = m["delta_nelbo_vs_l1"], m["delta_nelbo_vs_l1_stderr"]
        z = d / s if s > 0 else float("inf") * (1 if d > 0 else -1)
        if z < -2:
            word = "better than"
        elif z > 2:
            word = "worse than"
        else:
            word = "not distinguishable from"
        parts.append(f"ℓ={e} PPL {m['perplexity']:.2f} is {word} ℓ=1 PPL "
                     f"{per[1]['perplexity']:.2f} (ΔNELBO {d:+.4f} ± {s:.4f} nats/token, "
                     f"paired, z = {z:+.1f})")
    return "; ".join(parts) + " — MDM-Prime claims ℓ > 1 is better."


def _write_html(params: PrimeParams, per: dict[int, dict[str, Any]], verdict: str) -> None:
    import base64

    ells = list(per)

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>ℓ = {e}</th>" for e in ells)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>{''.join(f'<td>{fmt(per[e].get(k))}</td>' for e in ells)}</tr>"  # noqa: E501
        for k, label in _ROWS)
    extra = []
    for e in ells:
        png, txt = EVAL / f"l{e}" / "samples.png", EVAL / f"l{e}" / "samples.txt"
        if png.is_file():
            uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
            extra.append(f"<h3>Samples, ℓ = {e}</h3><img src='{uri}'>")
        elif txt.is_file():
            first = txt.read_text().split("===== sample ")[1:3]
            shown = html.escape("===== sample " + "===== sample ".join(first))
            extra.append(f"<h3>Samples, ℓ = {e}</h3><pre>{shown}</pre>")
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(params.report.title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child{text-align:left}pre{white-space:pre-wrap;background:#f6f6f6;"
        "padding:8px}</style>"
        f"<h1>{html.escape(params.report.title)}</h1>"
        f"<p><b>Verdict:</b> {html.escape(verdict)}</p>"
        f"<table><tr><th></th>{head}</tr>{body}</table>"
        "<p>NELBO: MDM-Prime eq. 6 (sub-token ELBO with the marginals of the filtered joint), "
        "per token of the data, on the same validation sequences for every ℓ; ISR: fraction "
        "of sampling steps whose output equals the input sequence.</p>"
        + "".join(extra)
        + f"<h3>Parameters</h3><pre>{html.escape(json.dumps(params.flat(), indent=1))}</pre>"
    )
    (REPORTS / "index.html").write_text(page)


# -- CLI ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> Any:
    ap = argparse.ArgumentParser(prog="python -m unmask.prime.stages",
                                 description="MDM-Prime pipeline stages")
    ap.add_argument("stage", choices=["prepare", "train", "evaluate", "report"])
    ap.add_argument("--ell", type=int, default=None, help="ℓ (train, evaluate)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    from unmask.errors import user_errors

    with user_errors():
        # One intra-op thread unless $UNMASK_THREADS says otherwise: a fixed count gives the
        # same bits every run, and on a shared CPU box contending OpenMP threads make small ops
        # several times slower (measured: 2.6 vs 0.64 s per training step).
        configure_threads()
        params = load_prime_params(args.params, args.overrides)
        if args.stage in ("train", "evaluate"):
            if args.ell is None:
                raise ValueError(f"stage {args.stage} needs --ell")
            if args.ell not in params.prime.ells:
                raise ValueError(f"--ell {args.ell} is not in prime.ells {params.prime.ells}")
            fn = run_train if args.stage == "train" else run_evaluate
            return fn(params, args.ell)
        return run_prepare(params) if args.stage == "prepare" else run_report(params)


if __name__ == "__main__":
    main(sys.argv[1:])
