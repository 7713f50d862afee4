"""Each paper pipeline's params.yaml holds the paper's settings (issue 18 item 2).

``SETTINGS`` lists, per pipeline, the values set from Discrete Interpolants (DI) and MDM-Prime with
the citation that must stand in the yaml comment next to each (on the key's line or in the
comment block right above it). The params are read with the pipeline's own schema through
:func:`unmask.config.load_params`, so a value is checked as the stages see it.

The ``test_*_paper`` tests derive the values from the paper texts instead of this table (DI
Tab. S7 parsed column by column, MDM-Prime App. A.4 sentences, Tab. 2/3/4), so a wrong
transcription in both the yaml and the table still fails. The texts come from
``$UNMASK_PAPERS`` or ``<repo>/../shared/papers``; without them those tests skip with the reason.

Guidance convention: ``cfg_scale`` = w with logits (1 + w)·ℓ_c − w·ℓ_u; DI's ω (eq. 5, ω = 1 no
guidance) is w + 1. MDM-Prime's α_t (t = 0 data) is the project's κ_{1−t} (t = 1 data).
"""

from __future__ import annotations

import importlib
import math
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from unmask.config import load_params

REPO = Path(__file__).resolve().parents[2]
PAPERS = Path(os.environ.get("UNMASK_PAPERS") or REPO.parent / "shared" / "papers")
needs_papers = pytest.mark.skipif(
    not PAPERS.is_dir(), reason=f"paper texts not found at {PAPERS} (set $UNMASK_PAPERS)"
)

# The schema classes are moving between modules (issue 19): the first importable candidate wins.
_SCHEMAS = {
    "experiment": ("unmask.stages.experiment:ExperimentParams",
                   "unmask.stages.experiment.params:ExperimentParams"),
    "joint": ("unmask.joint.stages:JointParams", "unmask.joint:JointParams",
              "unmask.joint.params:JointParams"),
    "prime": ("unmask.prime.config:PrimeParams", "unmask.prime:PrimeParams"),
}
FAMILY = {
    "imagenet256-di": "experiment", "coco": "experiment", "cc12m": "experiment",
    "cifar10-s8": "experiment", "cityscapes": "joint", "owt": "prime", "text-default": "prime",
    "cifar10-prime": "prime", "fmnist-prime": "prime", "imagenet32-prime": "prime",
}

S7, DI41, C1 = "DI Tab. S7", "DI §4.1", "DI App. C.1"
A42, A43 = "MDM-Prime App. A.4.2", "MDM-Prime App. A.4.3"
# ω → w: DI's guidance strength (Tab. S7) minus one
_DI_BASE = [
    ("train.t_min", 1e-3, DI41), ("train.t_max", 1 - 1e-3, DI41),
    ("train.grad_clip", 2.0, C1), ("train.normalize", "masked", DI41),
    ("model.cond_dropout", 0.1, "DI"), ("sample.method", "euler", "DI §3.3 Alg. 1"),
    ("sample.cfg_schedule", "constant", "DI §3.5 eq. 5"), ("tokenizer.kind", "sd_vq", "DI §4.1"),
]
_PRIME_IMAGE = [
    ("data.levels", 256, "MDM-Prime §4.2"), ("train.batch_size", 512, A42),
    ("train.lr", 1e-4, A42), ("train.betas", (0.9, 0.999), A42),
    ("train.weight_decay", 0.0, A42), ("train.schedule", "cubic", A42),
    ("train.schedule_kwargs", {"a": 0.0, "b": 3.0}, A42), ("train.weighting", "constant", A42),
    ("sample.num_samples", 50_000, "MDM-Prime App. A.5.1"),
]
SETTINGS: dict[str, list[tuple[str, Any, str]]] = {
    "imagenet256-di": [
        *_DI_BASE,
        ("data.image_size", 256, S7), ("model.preset", "di-546m", S7),
        ("model.timestep", "implicit", "DI Tab. 3"), ("train.schedule", "linear", DI41),
        ("train.weighting", "constant", DI41), ("train.steps", 500_000, S7),
        ("train.batch_size", 1024, S7), ("train.lr", 2e-4, S7), ("train.weight_decay", 0.0, S7),
        ("train.warmup_steps", 5000, S7), ("sample.steps", 20, S7),
        ("sample.temperature", 1.3, S7), ("sample.cfg_scale", 2.0 - 1.0, S7),
        ("sample.top_p", 0.9, S7),
    ],
    "coco": [
        *_DI_BASE,
        ("data.image_size", 256, S7), ("model.timestep", "implicit", "DI Tab. 2"),
        ("model.dim", 512, S7), ("train.schedule", "linear", DI41),
        ("train.weighting", "constant", DI41), ("train.steps", 1_000_000, S7),
        ("train.batch_size", 1024, S7), ("train.lr", 2e-4, S7), ("train.weight_decay", 0.0, S7),
        ("train.warmup_steps", 5000, S7), ("sample.steps", 20, S7),
        ("sample.temperature", 0.7, S7), ("sample.cfg_scale", 4.5 - 1.0, S7),
        ("sample.top_p", 0.9, S7),
        ("heldout.split", "val", "DI App. C.2"), ("evaluate.fid", True, "DI Tab. 2"),
    ],
    "cc12m": [
        *_DI_BASE,
        ("model.timestep", "implicit", "DI Tab. 4"), ("heldout.count", 10_000, "DI Tab. 4"),
        ("heldout.root", "/data/cc12m-heldout", "DI App. C.3"),
    ],
    "cifar10-s8": [
        ("schedules", ["linear", "cosine", "cubic", "arccos", "quadratic", "root"], "DI Tab. S8"),
        ("model.timestep", "explicit", "DI Tab. S8"), ("model.cond_dropout", 0.1, DI41),
        ("train.normalize", "masked", DI41), ("train.t_min", 1e-3, DI41),
        ("train.t_max", 1 - 1e-3, DI41), ("train.grad_clip", 2.0, C1),
        ("sample.steps", 1000, DI41), ("sample.method", "mdm", DI41),
        ("sample.n_per_class", 500, "DI Tab. S8"),
    ],
    "cityscapes": [
        ("data.image_size", (256, 256), S7), ("data.mask_size", (32, 64), "DI App. C.3"),
        ("tokenizer.kind", "sd_vq", "DI §4.1"), ("model.depth", 9, S7),
        ("model.timestep", "implicit", "DI Tab. 6"), ("train.steps", 400_000, S7),
        ("train.batch_size", 128, S7), ("train.lr", 1e-4, S7), ("train.weight_decay", 0.0, S7),
        ("train.warmup_steps", 5000, S7), ("train.grad_clip", 2.0, C1),
        ("train.t_min", 1e-3, DI41), ("train.t_max", 1 - 1e-3, DI41),
        ("sample.method", "euler", "DI §3.3 Alg. 1"), ("sample.steps", 20, S7),
        ("sample.schedule", "linear", DI41), ("sample.temperature", 1.0, S7),
        ("sample.choice_temperature", 4.5, S7), ("sample.seg_method", "euler", "DI §3.3 Alg. 1"),
        ("sample.seg_steps", 20, S7), ("sample.seg_temperature", 1.0, S7),
        ("sample.top_p", 0.9, S7),
        ("evaluate.fid", True, "DI Tab. 6"),
    ],
    "owt": [
        ("data.kind", "owt", "MDM-Prime §4.1"), ("data.block_size", 1024, "MDM-Prime §4.1"),
        ("data.valid_docs", 100_000, A43), ("data.compact_vocab", False, "MDM-Prime §4.1"),
        ("model.preset", "mdlm-small", A43), ("model.dropout", 0.1, A43),
        ("model.timestep", "implicit", "MDM-Prime App. A.5.3"),
        ("prime.ells", [1, 2, 3, 4, 6, 8], "MDM-Prime Tab. 2"), ("train.steps", 1_000_000, A43),
        ("prime.carry_over", True, "MDM-Prime Tab. A2"),
        ("train.batch_size", 128, A43), ("train.lr", 3e-4, A43),
        ("train.betas", (0.9, 0.999), A43), ("train.lr_schedule", "constant", A43),
        ("train.schedule", "linear", A43), ("train.weighting", "elbo", "MDM-Prime §4.1"),
        ("evaluate.n_sequences", 1_000_000, "MDM-Prime Tab. 2"),
        ("sample.steps", 1024, "MDM-Prime Fig. 1"), ("sample.temperature", 1.0, "MDM-Prime §4.1"),
    ],
    "text-default": [  # CPU-sized: only the scale-free method settings are the paper's
        ("train.schedule", "linear", A43), ("train.weighting", "elbo", "MDM-Prime §4.1"),
        ("sample.temperature", 1.0, "MDM-Prime §4.1"),
    ],
    "fmnist-prime": [  # CPU-sized: only the scale-free objective is the paper's
        ("data.levels", 256, "MDM-Prime §4.2"), ("train.betas", (0.9, 0.999), A42),
        ("train.schedule", "cubic", A42), ("train.schedule_kwargs", {"a": 0.0, "b": 3.0}, A42),
        ("train.weighting", "constant", A42), ("prime.ells", [1, 2, 4], "MDM-Prime Fig. 7"),
    ],
    "cifar10-prime": [
        *_PRIME_IMAGE, ("train.steps", 415_039, A42),
        ("prime.ells", [1, 2, 3, 4], "MDM-Prime Fig. 7"), ("sample.steps", 512, "MDM-Prime Tab. 3"),
    ],
    "imagenet32-prime": [
        *_PRIME_IMAGE, ("train.steps", 2_502_244, A42),
        ("prime.ells", [1, 2], "MDM-Prime Tab. 4"), ("sample.steps", 1024, "MDM-Prime Tab. 4"),
    ],
}


def _schema(family: str) -> type:
    errors = []
    for ref in _SCHEMAS[family]:
        module, _, name = ref.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            errors.append(f"{ref}: {e}")
    raise AssertionError(f"no params schema for {family!r}: " + "; ".join(errors))


@cache
def _params(pipeline: str) -> Any:
    return load_params(REPO / "pipelines" / pipeline / "params.yaml",
                       schema=_schema(FAMILY[pipeline]))


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(want, tuple | list) and isinstance(got, tuple | list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    return type(got) is type(want) and got == want if isinstance(want, bool) else got == want


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key → the comment on its line plus the comment-only lines right above it.

    Block-style YAML only (what params files use): nesting comes from indentation.
    """
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            above = []
            continue
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*)$", line)
        if m is None:
            above = []
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        own = rest.split(" #", 1)[1] if " #" in rest else ""
        out[path] = " ".join([*above, own])
        stack.append((indent, key))
        above = []
    return out


CASES = [(p, key, want, cite) for p, rows in SETTINGS.items() for key, want, cite in rows]


@pytest.mark.parametrize("pipeline", sorted(SETTINGS))
def test_values_are_the_papers(pipeline: str) -> None:
    p = _params(pipeline)
    wrong = [f"{key} = {_get(p, key)!r}, paper: {want!r} ({cite})"
             for key, want, cite in SETTINGS[pipeline] if not _same(_get(p, key), want)]
    assert not wrong, f"pipelines/{pipeline}/params.yaml: " + "; ".join(wrong)


@pytest.mark.parametrize("pipeline", sorted(SETTINGS))
def test_each_paper_value_cites_its_source(pipeline: str) -> None:
    comments = yaml_comments((REPO / "pipelines" / pipeline / "params.yaml").read_text())
    missing = [f"{key} (needs '{cite}')" for key, _, cite in SETTINGS[pipeline]
               if cite not in comments.get(key, "")]
    assert not missing, f"pipelines/{pipeline}/params.yaml lacks citations: " + ", ".join(missing)


def test_comment_reader_and_checks_can_fail() -> None:
    text = "a:\n  # DI Tab. S7: above\n  b: 1\n\n  c: 2   # MDM-Prime §4.1\nd: 3\n"
    got = yaml_comments(text)
    assert "DI Tab. S7" in got["a.b"] and "MDM-Prime §4.1" in got["a.c"] and got["d"] == ""
    assert not _same(2e-4, 1e-4) and not _same([1, 2], [1, 2, 4]) and not _same(1, True)
    assert _same((0.9, 0.999), [0.9, 0.999]) and _same(1.0 - 1e-3, 0.999)


def test_root_params_name_the_paper_value_where_they_depart() -> None:
    """The default pipeline keeps its values (the committed results use them); its comments name
    the paper value wherever CPU scale forces a departure."""
    text = (REPO / "params.yaml").read_text()
    comments = yaml_comments(text)
    for key in ("train.steps", "train.batch_size", "train.lr", "train.warmup_steps",
                "sample.steps", "model.dim", "evaluate.fid_num_samples"):
        assert "CPU scale" in comments[key] and "DI" in comments[key], key
    for key in ("sample.cfg_scale", "sample.temperature", "sample.top_p", "train.grad_clip"):
        assert "DI Tab. S7" in comments[key] or "DI App. C.1" in comments[key], key


# -- the values derived from the paper texts, not from the table above ------------------------
@cache
def _paper(name: str) -> str:
    return (PAPERS / name).read_text()


def _squash(text: str) -> str:
    return " ".join(text.split())


def _tab_s7() -> dict[str, dict[str, str]]:
    """DI Tab. S7 as {row label: {column: cell}} (the text holds it tab-separated)."""
    lines = _paper("discrete-interpolants.txt").splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("\tImageNet256\t"))
    cols = lines[head].strip("\t").split("\t")
    rows: dict[str, dict[str, str]] = {}
    for ln in lines[head + 1:]:
        if ln.startswith("Table S7"):
            break
        cells = ln.split("\t")
        if len(cells) == len(cols) + 1:
            rows[cells[0]] = dict(zip(cols, cells[1:], strict=True))
    assert {"Learning rate", "Batch size", "Guidance strength"} <= set(rows), sorted(rows)
    return rows


def _num(cell: str) -> float:
    """'2e-4' → 2e-4, '1,024' → 1024, '500K' / '1k' → 500000 / 1000, '1M' → 1e6."""
    cell = cell.replace(",", "").strip()
    scale = {"K": 1e3, "k": 1e3, "M": 1e6}.get(cell[-1], 1.0)
    return float(cell.rstrip("KkM")) * scale


@needs_papers
@pytest.mark.parametrize(("pipeline", "column"), [
    ("imagenet256-di", "ImageNet256"), ("coco", "MS-COCO"), ("cityscapes", "Cityscapes"),
])
def test_tab_s7_column_from_the_paper(pipeline: str, column: str) -> None:
    s7 = {row: cells[column] for row, cells in _tab_s7().items()}
    p = _params(pipeline)
    assert p.train.lr == _num(s7["Learning rate"])
    assert p.train.weight_decay == _num(s7["Weight decay"])
    assert p.train.steps == _num(s7["Training iterations"])
    assert p.train.warmup_steps == _num(s7["Warm-up steps"])
    assert p.train.batch_size == _num(s7["Batch size"])
    itm, etm = (_num(x) for x in s7["Sampling steps-ITM/ETM"].split("/"))
    assert p.sample.steps == (itm if p.model["timestep"] == "implicit" else etm)
    assert p.sample.temperature == _num(s7["Softmax temperature"])
    assert p.sample.top_p == _num(s7["top-p"])
    if pipeline == "cityscapes":  # CFG on the other modality is a TODO(issue 18) of the yaml
        assert p.sample.choice_temperature == _num(s7["Gumbel noise temperature"])
        assert p.sample.seg_temperature == _num(s7["Softmax temperature"])
        assert "Guidance strength" in s7 and "cfg_scale w = 1" in _squash(
            (REPO / "pipelines" / pipeline / "params.yaml").read_text())
        return
    assert p.model["cond_dropout"] == _num(s7["$p_{ m uncond}$"])
    omega = _num(s7["Guidance strength"])
    assert p.sample.cfg_scale == omega - 1.0  # DI eq. 5's ω = 1 + w


@needs_papers
def test_di_training_details_from_the_paper() -> None:
    di = _squash(_paper("discrete-interpolants.txt"))
    eps = re.search(r"\\epsilon = 10\^\{-(\d+)\}", di)
    clip = re.search(r"Gradient clipping with a norm of (\d+)", di)
    assert eps and clip
    for name in ("imagenet256-di", "coco", "cc12m", "cifar10-s8", "cityscapes"):
        t = _params(name).train
        assert t.t_min == pytest.approx(10.0 ** -int(eps.group(1)), abs=0)
        assert t.t_max == pytest.approx(1 - 10.0 ** -int(eps.group(1)), abs=1e-15)
        assert t.grad_clip == float(clip.group(1)), name
    # Tab. S8 reports FID5k: 5,000 class-conditional samples
    s8 = _params("cifar10-s8")
    assert "FID5k" in di and s8.sample.n_per_class * 10 == 5000


@needs_papers
def test_mdm_prime_image_recipe_from_the_paper() -> None:
    text = _squash(_paper("mdm-prime.txt"))
    a42 = text[text.index("A.4.2 Image Generation"):text.index("A.4.3 Text Generation")]
    lr = re.search(r"learning rate of (\d+) × 10−(\d+)", a42)
    batch = re.search(
        r"batch size of (\d+) for ([\d, ]+) epochs on CIFAR-10 and ([\d, ]+) epochs", a42)
    n_cifar = re.search(r"CIFAR-10 training set contains ([\d, ]+) images", a42)
    n_in32 = re.search(r"comprises ([\d, ]+) training images", a42)
    assert lr and batch and n_cifar and n_in32 and "αt = (1 − t)3" in a42

    def n(s: str) -> int:
        return int(s.replace(",", "").replace(" ", ""))

    size = n(batch.group(1))
    for name, epochs, images in (("cifar10-prime", batch.group(2), n_cifar.group(1)),
                                 ("imagenet32-prime", batch.group(3), n_in32.group(1))):
        t = _params(name).train
        assert t.lr == float(f"{lr.group(1)}e-{lr.group(2)}") and t.batch_size == size
        assert t.steps == n(epochs) * n(images) // size, name  # epochs → optimiser steps
    t3 = re.search(r"MDM-Prime \(NFE=([\d,]+)\)", text[text.index("Table 3: FID"):])
    t4 = re.search(r"MDM-Prime \(NFE=([\d,]+)\)", text[text.index("Table 4: FID"):])
    assert t3 and t4
    assert _params("cifar10-prime").sample.steps == n(t3.group(1))
    assert _params("imagenet32-prime").sample.steps == n(t4.group(1))


@needs_papers
def test_mdm_prime_owt_recipe_from_the_paper() -> None:
    text = _squash(_paper("mdm-prime.txt"))
    a43 = text[text.index("A.4.3 Text Generation"):text.index("Table A1: Zero-shot")]
    batch = re.search(r"batch size of (\d+) for (\d+) million steps", a43)
    lr = re.search(r"warm-up from 0 to (\d+)× 10−(\d+)", a43)
    drop = re.search(r"dropout rate of ([\d.]+)", a43)
    arch = re.search(r"(\d+) DiT blocks with a hidden dimension of (\d+) and (\d+) attention", a43)
    assert batch and lr and drop and arch and "αt = 1− t" in a43
    p = _params("owt")
    assert (p.train.batch_size, p.train.steps) == (int(batch.group(1)), int(batch.group(2)) * 10**6)
    assert p.train.lr == float(f"{lr.group(1)}e-{lr.group(2)}")  # '3 × 10−4' → 3e-4
    assert p.model["dropout"] == float(drop.group(1))
    from unmask.prime.model import PRESETS  # why: the preset table of the Prime trunk

    preset = PRESETS[p.model["preset"]]
    assert (preset["depth"], preset["dim"], preset["heads"]) == tuple(map(int, arch.groups()))
    # Tab. 2: the ℓ rows next to MDLM (ℓ = 1); MDLM's ISR 36.77% = (1 − 1/T)^L with T = L = 1,024
    tab2 = text[text.index("Table 2: PPL and ISR"):text.index("Improvements to Likelihood")]
    ells = [int(e) for e in re.findall(r"MDLM-Prime \(ℓ = (\d+)\)", tab2)]
    assert p.prime.ells == [1, *ells]
    isr = re.search(r"MDLM \[9\] ≤[\d.]+ ([\d.]+)%", tab2)
    assert isr is not None
    ratio = (1 - 1 / p.sample.steps) ** p.data.block_size
    assert round(100 * ratio, 2) == float(isr.group(1))


@pytest.mark.parametrize("pipeline", ["cifar10-prime", "imagenet32-prime", "fmnist-prime"])
def test_prime_image_schedule_is_alpha_one_minus_t_cubed(pipeline: str) -> None:
    """MDM-Prime App. A.4.2: α_t = (1 − t)³ with t = 0 data, i.e. κ_t = α_{1−t} in this project's
    time (t = 1 data); checked against that formula and its finite-difference derivative."""
    from unmask import schedules  # why: only this test builds a schedule

    t = _params(pipeline).train
    sched = schedules.get(t.schedule, **t.schedule_kwargs)
    grid = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)

    def alpha(s: torch.Tensor) -> torch.Tensor:
        return (1.0 - s) ** 3

    torch.testing.assert_close(sched.kappa(grid), alpha(1.0 - grid), rtol=0, atol=1e-12)
    h = 1e-6
    inner = grid[1:-1]
    fd = (alpha(1.0 - (inner + h)) - alpha(1.0 - (inner - h))) / (2 * h)
    torch.testing.assert_close(sched.dkappa(inner), fd, rtol=0, atol=1e-7)
    torch.testing.assert_close(sched.inverse(alpha(1.0 - inner)), inner, rtol=0, atol=1e-9)


def test_sized_models_match_the_parameter_counts() -> None:
    """DI Tab. S7 gives Cityscapes 38M and MS-COCO 77M parameters but no architecture: the yaml's
    dim / depth are sized to the count (within 5 %); SD-VQ-F8 vocabulary 16,384 (+[MASK])."""
    from unmask.models import ModelConfig, Transformer  # why: torch model build
    from unmask.tokenizers.text import TextConditionedTransformer  # why: torch model build

    city = _params("cityscapes")
    joint = ModelConfig(**city.model, vocab_size=16_384 + 8, seq_len=32 * 32 + 32 * 64,
                        num_classes=0)
    coco = _params("coco")
    text = coco.model_cfg(16_384, (32, 32), 1)  # the stage's own shapes: 32×32 SD-VQ-F8 tokens
    with torch.device("meta"):
        n_joint = Transformer(joint).num_params()
        n_coco = TextConditionedTransformer(text, coco.text.dim).num_params()
    assert abs(n_joint - 38e6) / 38e6 < 0.05, n_joint
    assert abs(n_coco - 77e6) / 77e6 < 0.05, n_coco
