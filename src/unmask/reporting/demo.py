"""A demo MLflow store with runs of every ablation kind, logged the way the writers log them.

:func:`populate` fills a sqlite store: orchestration trials (``unmask.ablation`` /
``unmask.kind`` tags, ``point.*`` and resolved params, metrics, ``samples/grid.png`` +
``samples/chain.png`` artifacts), MDM-Prime evaluate runs and eMIGM t_min runs with the names of
:mod:`unmask.tracking_tags` (two training seeds at ℓ = 1; a pixel experiment with bits/dim; one
t_min run whose FID was unavailable), a default-pipeline evaluate run (drawn on the NFE plot),
a sweep parent and a FAILED trial; the nfe trials log ``fid_std`` (error bars). The numbers
are made up so that each claim of ``references.yaml`` has a verdict known by construction
(:data:`EXPECTED_VERDICTS`): the report's tests use it, and ``python -m unmask.reporting.demo
OUT`` shows what a report looks like.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from unmask.reporting.build import build_report
from unmask.tracking import Tracker
from unmask.tracking_tags import prime_l_tags, t_min_tags

# (axis, point params, metrics, group params)
NFE = [
    ("mdm", 4, 30.0),
    ("mdm", 16, 20.0),
    ("mdm", 64, 15.0),
    ("maskgit", 4, 25.0),
    ("maskgit", 16, 22.0),
    ("maskgit", 64, 28.0),
]
TEMPERATURE = [(0.5, 20.0), (0.8, 15.0), (1.0, 17.0), (1.5, 25.0)]
CFG = [
    ("constant", 0.0, 20.0),
    ("constant", 1.0, 15.0),
    ("constant", 3.0, 18.0),
    ("linear", 0.0, 20.0),
    ("linear", 1.0, 16.0),
]
SCHEDULE = [("linear", 10.0), ("cosine", 12.0), ("exp", 9.0)]
T_MIN = [(0.0, 10.0, 100.0), (0.2, 9.5, 90.0), (0.4, 12.0, 70.0)]  # eMIGM §4 grid
PRIME = [(1, 30.0), (2, 25.0), (4, 22.0)]  # ℓ=1: seeds 0 and 1 log 29 and 31 (mean 30)
PRIME_PIXELS = [(1, 3.0), (2, 2.8)]
PIPELINE_FID = 41.5
PIPELINE_STEPS = 8  # its sampler: mdm, 8 steps × 2 (CFG) = NFE 16 (the evaluate stage's sample_nfe)
NFE_FID_STD = 0.8  # fid_std of each nfe trial (drawn as error bars)

EXPECTED_VERDICTS = {
    "schedule_linear_vs_cosine": "reproduced",  # 10 < 12
    "schedule_linear_best": "reproduced",  # linear 10 lowest of linear/cosine (exp not in S8)
    "emigm_exp_schedule": "reproduced",  # 9 < 10
    "emigm_cosine_schedule": "not reproduced",  # cosine 12 > linear 10
    "emigm_logexp_schedule": "not covered",  # no logexp run
    "temperature_sweet_spot": "reproduced",  # mdm: argmin 0.8 ∈ [0.6, 1.0]
    "temperature_sweet_spot_maskgit": "not covered",  # no maskgit temperature runs
    "nfe_lowers_fid": "not reproduced",  # maskgit: 25 → 28, beyond 2·√(0.8² + 0.8²) = 2.26
    "cfg_helps": "reproduced",  # 15 < 20 and 16 < 20
    "top_p_best": "not covered",  # no top_p section
    "emigm_t_min": "reproduced",  # 9.5 at 0.2 is the lowest of 0 / 0.2 / 0.4
    "emigm_t_min_excessive": "reproduced",  # 10 at 0 < 12 at 0.4
    "emigm_cfg_interval": "not covered",  # no cfg_interval section
    "emigm_dpm_solver": "not covered",  # no diffusion_sampler section
    "prime_l_improves_ppl": "reproduced",  # 22 < 30
    "prime_isr_falls": "not covered",  # no isr metric on the ℓ plot
    "prime_pixels_fid": "not covered",  # the pixel runs log bits/dim, not FID
}


def _png(path: Path, seed: int, size: tuple[int, int] = (40, 60)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _trial(
    tr: Tracker,
    tmp: Path,
    axis: str,
    point: dict,
    params: dict,
    metrics: dict,
    seed: int,
    images: bool = True,
) -> None:
    exp = f"ablations/{axis}"
    tags = {
        "unmask.ablation": axis,
        "unmask.kind": "trial",
        "unmask.primary_metric": "fid",
        "git_commit": "abc123def456",
        "unmask.device": "cpu",
    }
    with tr.start_run(exp, f"{axis}-{seed}", params=params, tags=tags):
        tr.log_params({f"point.{k}": v for k, v in point.items()})
        tr.log_params({"data.dataset": "fashion_mnist"})
        tr.log_metrics(metrics, step=0)
        if images:
            d = tmp / f"img{seed}"
            d.mkdir()
            tr.log_artifact(_png(d / "grid.png", seed), "samples")
            tr.log_artifact(_png(d / "chain.png", seed + 1000), "samples")


def populate(root: Path, axes: set[str] | None = None) -> str:
    """Fill a sqlite store under ``root`` and return its URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tr = Tracker(uri)
    tmp = root / "png"
    tmp.mkdir(parents=True)
    want = axes or {"nfe", "temperature", "cfg", "schedule", "t_min", "prime_l", "pipeline"}
    seed = 0
    if "nfe" in want:
        for method, steps, fid in NFE:
            seed += 1
            _trial(
                tr,
                tmp,
                "nfe",
                {"sample.steps": steps},
                {"sample": {"steps": steps, "method": method}},
                {"fid": fid, "fid_std": NFE_FID_STD, "nfe": float(steps)},
                seed,
            )
    if "temperature" in want:
        for t, fid in TEMPERATURE:
            seed += 1
            _trial(
                tr,
                tmp,
                "temperature",
                {"sample.temperature": t},
                {"sample": {"temperature": t, "method": "mdm"}},
                {"fid": fid},
                seed,
            )
    if "cfg" in want:
        for sched, w, fid in CFG:
            seed += 1
            _trial(
                tr,
                tmp,
                "cfg",
                {"sample.cfg_scale": w, "sample.cfg_schedule": sched},
                {"sample": {"cfg_scale": w, "cfg_schedule": sched}},
                {"fid": fid},
                seed,
                images=False,
            )
    if "schedule" in want:
        for s, fid in SCHEDULE:
            seed += 1
            _trial(
                tr,
                tmp,
                "schedule",
                {"train.schedule": s},
                {"train": {"schedule": s}},
                {"fid": fid, "train_seconds": 50.0},
                seed,
                images=False,
            )
    if "t_min" in want:  # as unmask.emigm.t_min.log_point logs (unmask.tracking_tags)
        for t, fid, secs in T_MIN:
            with tr.start_run(
                "ablations/t_min",
                f"t_min={t:g}",
                params={"train": {"t_min": t, "seed": 0}, "kind": "discrete"},
                tags=t_min_tags("evaluate"),
            ):
                tr.log_metrics({"fid": fid, "train_seconds": secs}, step=10)
        with tr.start_run(
            "ablations/t_min",
            "t_min=0.5",
            params={"train": {"t_min": 0.5}, "kind": "discrete"},
            tags={**t_min_tags("evaluate"), "unmask.fid_unavailable": "no weights"},
        ):
            tr.log_metrics({"train_seconds": 60.0}, step=10)
    if "prime_l" in want:  # as unmask.prime.stages logs (unmask.tracking_tags); 2 seeds at ℓ=1
        for ell, ppl in PRIME:
            for seed, shift in ((0, -1.0), (1, 1.0)) if ell == 1 else ((0, 0.0),):
                with tr.start_run(
                    "prime-text",
                    f"evaluate-l{ell}-s{seed}",
                    params={"prime": {"l": ell}, "train": {"seed": seed}},
                    tags=prime_l_tags("evaluate"),
                ):
                    tr.log_metrics({"ppl": ppl + shift}, step=0)
        for ell, bpd in PRIME_PIXELS:  # a pixel-token experiment: bits per dimension
            with tr.start_run(
                "prime-pixels",
                f"evaluate-l{ell}",
                params={"prime": {"l": ell}, "train": {"seed": 0}},
                tags=prime_l_tags("evaluate"),
            ):
                tr.log_metrics({"bits_per_dim": bpd}, step=0)
    if "pipeline" in want:
        with tr.start_run(
            "default",
            "evaluate",
            params={"data": {"dataset": "fashion_mnist"},
                    "sample": {"method": "mdm", "steps": PIPELINE_STEPS}},
            tags={"stage": "evaluate", "git_commit": "feedbeef0001"},
        ):
            tr.log_params({"fid.num_samples": 1000, "fid.reference": "fashion_mnist-test"})
            tr.log_metrics({"fid": PIPELINE_FID, "fid_std": 1.2, "sample_nfe": 2.0 * PIPELINE_STEPS,
                            "nelbo_bpt": 1.5}, step=10)
    # a sweep parent and a failed trial: neither is plotted
    with tr.start_run(
        "ablations/nfe", "nfe-sweep", tags={"unmask.ablation": "nfe", "unmask.kind": "sweep"}
    ):
        tr.log_metrics({"points": 6}, step=0)
    with tr.start_run(
        "ablations/nfe", "failed", tags={"unmask.ablation": "nfe", "unmask.kind": "trial"}
    ):
        tr.log_params({"point.sample.steps": 8, "sample.method": "mdm"})
        tr.log_metrics({"fid": 1.0}, step=0)
        tr.end_run("FAILED")
    return uri


def main(argv: list[str] | None = None) -> Path:  # pragma: no cover - manual demo
    out = Path((argv or sys.argv[1:] or ["demo-report"])[0])
    uri = populate(out / "store")
    path = build_report(uri, out, title="unmask — demo report (made-up numbers)")
    print(f"report: {path}")
    return path


if __name__ == "__main__":  # pragma: no cover
    main()
