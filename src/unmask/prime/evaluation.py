"""Evaluation of one ℓ of the MDM-Prime pipeline, run in the pipeline's folder:
:func:`evaluate_ell` — NELBO of the first ``evaluate.n_sequences`` valid sequences
(:func:`unmask.prime.likelihood.prime_nelbo`, see :data:`unmask.prime.pipeline.ESTIMATOR`) in
nats / token, perplexity and bits per token (bits per dimension for pixels); ``sample.num_samples``
samples with the idle-step ratio (MDM-Prime eq. (A6)) next to its closed form →
``eval/l<ℓ>/{metrics.json, nelbo.npy, samples.txt | samples.png}``. The ``prime.evaluate`` stage
(``python -m unmask.stages prime.evaluate --ell 2``) and the seed study call it.

Wall-clock values go to ``runs/timings/`` and MLflow, never to the DVC outputs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unmask.models import ConditionedDenoiser
from unmask.prime.config import PrimeParams
from unmask.prime.data import DATA, load_split
from unmask.prime.likelihood import prime_nelbo
from unmask.prime.model import JointView, PrimeTransformer, load_prime_model
from unmask.prime.pipeline import ESTIMATOR, EVAL, MODELS, TIMINGS, run_params
from unmask.prime.sampling import expected_isr, expected_isr_token, sample_prime
from unmask.reporting.images import image_grid, save_png
from unmask.runtime import read_timings, write_timings
from unmask.schedules import get as get_schedule
from unmask.tokenizers.bpe import GPT2BPE
from unmask.tokenizers.pixel import PixelTokenizer
from unmask.tracking import make_tracker
from unmask.tracking_tags import METRIC_BITS_PER_DIM, METRIC_ISR, METRIC_PPL, prime_l_tags

__all__ = ["evaluate_ell"]


def _decode_text(tokens: torch.Tensor, meta: dict) -> list[str]:
    ids = tokens.numpy()
    if meta.get("id_map") is not None:
        ids = np.asarray(meta["id_map"])[ids]
    bpe = GPT2BPE()
    return [bpe.decode(row) for row in ids]


def _save_images(tokens: torch.Tensor, meta: dict, path: Path) -> None:
    data = meta["data"]
    tok = PixelTokenizer(data["levels"], data["size"], channels=meta.get("channels", 1))
    imgs = tok.decode(tokens.reshape(tokens.shape[0], *meta["shape"]))
    n = imgs.shape[0]
    cols = min(8, n)
    rows = math.ceil(n / cols)
    pad = np.zeros((rows * cols - n, *imgs.shape[1:]), dtype=imgs.dtype)
    grid = np.concatenate([imgs, pad]).reshape(rows, cols, *imgs.shape[1:])
    save_png(image_grid(grid, scale=2 if imgs.shape[1] >= 28 else 4), path)


def _nelbo(den: ConditionedDenoiser, x: torch.Tensor, model: PrimeTransformer,
           params: PrimeParams, ell: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence NELBO (nats) of ``x`` and its Monte-Carlo stderr, in batches of
    ``evaluate.batch_size``."""
    ev = params.evaluate
    schedule = get_schedule(params.train.schedule, **params.train.schedule_kwargs)
    g = torch.Generator().manual_seed(ev.seed)
    nel, se = [], []
    for i in tqdm(range(0, x.shape[0], ev.batch_size), desc=f"nelbo ℓ={ell}", leave=False):
        est = prime_nelbo(den, x[i:i + ev.batch_size], codec=model.codec, schedule=schedule,
                          num_samples=ev.num_samples, generator=g, max_batch=ev.batch_size)
        nel.append(est.nelbo)
        se.append(est.stderr)
    return torch.cat(nel), torch.cat(se)


def _sample(model: PrimeTransformer, params: PrimeParams, L: int) -> dict[str, Any]:
    """``sample.num_samples`` sequences with their idle-step ratios (sub-token and token)."""
    sp = params.sample
    schedule = get_schedule(params.train.schedule, **params.train.schedule_kwargs)
    g = torch.Generator().manual_seed(sp.seed)
    jd = ConditionedDenoiser(JointView(model))
    toks, idle, idle_tok, nfe, steps, secs = [], [], [], 0, 0, 0.0
    for i in range(0, sp.num_samples, sp.batch_size):
        bs = min(sp.batch_size, sp.num_samples - i)
        r = sample_prime(jd, codec=model.codec, batch_size=bs, seq_len=L, method=sp.method,
                         steps=sp.steps, schedule=schedule, temperature=sp.temperature,
                         top_p=sp.top_p, generator=g, fp64_gumbel=sp.fp64_gumbel,
                         progress=True)
        toks.append(r.tokens)
        idle.append(r.idle_steps.double() / max(r.steps, 1))
        idle_tok.append(r.idle_steps_token.double() / max(r.steps, 1))
        nfe, steps, secs = nfe + r.nfe, r.steps, secs + r.seconds
    return {"tokens": torch.cat(toks), "isr": torch.cat(idle), "isr_token": torch.cat(idle_tok),
            "nfe": nfe, "steps": steps, "seconds": secs}


def evaluate_ell(params: PrimeParams, ell: int) -> dict[str, Any]:
    """NELBO, perplexity and ISR of ``models/l<ℓ>`` → ``eval/l<ℓ>``; returns its metrics."""
    model, state = load_prime_model(MODELS / f"l{ell}" / "model.pt")
    tokens, _, meta = load_split(DATA, "valid")
    ev, sp = params.evaluate, params.sample
    n = min(ev.n_sequences, tokens.shape[0])
    x = torch.from_numpy(np.asarray(tokens[:n], dtype=np.int64))
    codec, L = model.codec, int(np.prod(meta["shape"]))
    schedule = get_schedule(params.train.schedule, **params.train.schedule_kwargs)
    out = EVAL / f"l{ell}"
    out.mkdir(parents=True, exist_ok=True)
    tracker = make_tracker(params.tracking)
    tags = {"stage": "evaluate", "ell": ell, "estimator": ESTIMATOR,
            **prime_l_tags("evaluate")}
    with tracker.start_run(params.tracking.experiment, f"evaluate-l{ell}",
                           params=run_params(params, ell), tags=tags), torch.no_grad():
        t0 = time.perf_counter()
        nelbo, stderr = _nelbo(ConditionedDenoiser(model), x, model, params, ell)
        t_nelbo = time.perf_counter() - t0
        per_tok = float(nelbo.mean()) / L
        # stderr over sequences; one sequence: its Monte-Carlo stderr over times
        per_tok_se = float(nelbo.std()) / math.sqrt(n) / L if n > 1 else float(stderr[0]) / L
        np.save(out / "nelbo.npy", nelbo.numpy())

        s = _sample(model, params, L)
        if meta["kind"] == "pixels":
            _save_images(s["tokens"], meta, out / "samples.png")
        else:
            texts = _decode_text(s["tokens"], meta)
            (out / "samples.txt").write_text("".join(
                f"===== sample {k} =====\n{t}\n\n" for k, t in enumerate(texts)))
        isr, isr_tok = s["isr"], s["isr_token"]
        grid_method = sp.method if sp.method != "first_hitting" else None
        metrics = {
            "ell": ell, "base": codec.base, "vocab_size": codec.vocab_size,
            "train_step": int(state.get("step", 0)),
            "n_sequences": n, "num_mc_samples": ev.num_samples, "tokens_per_sequence": L,
            "estimator": ESTIMATOR,
            "nelbo_nats_per_token": per_tok, "nelbo_stderr": per_tok_se,
            "perplexity": math.exp(per_tok), "bits_per_token": per_tok / math.log(2.0),
            "sample_method": sp.method, "sample_steps": s["steps"],
            "isr": float(isr.mean()), "isr_stderr": float(isr.std() / math.sqrt(len(isr)))
            if len(isr) > 1 else 0.0,
            "isr_token": float(isr_tok.mean()),
            "isr_expected": expected_isr(schedule, sp.steps, L * ell, grid_method)
            if grid_method == "mdm" else None,
            "isr_token_expected": expected_isr_token(schedule, sp.steps, L, ell, grid_method)
            if grid_method == "mdm" else None,
            "sample_nfe_per_batch": s["nfe"] / math.ceil(sp.num_samples / sp.batch_size),
        }
        timings = {"sample_seconds": round(s["seconds"], 2), "nelbo_seconds": round(t_nelbo, 2)}
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
          f"{math.exp(per_tok):.2f}, {per_tok / math.log(2):.4f} {unit} ({ESTIMATOR}); ISR "
          f"{metrics['isr']:.3f} (expected {metrics['isr_expected']}), token-level "
          f"{metrics['isr_token']:.3f}")
    return metrics
