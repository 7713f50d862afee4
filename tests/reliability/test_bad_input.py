"""Bad input, each case: one clear ``error: ...`` line naming the key / file / shape, exit
status 2, no traceback, nothing half-written. Every case runs as a separate process: the
``unmask`` console script where a command takes the input, else the stage entry point
(``bad_input_driver.py``, through :func:`unmask.stages.main`). The processes run a few at a
time (each pays Python + torch start-up)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from reliability_helpers import BIN, PYTHON, REPO, assert_user_error, subprocess_env

from unmask.models import ModelConfig, Transformer
from unmask.training import TrainConfig, train

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # 18 processes, ~2.5 min on 2 cores

DRIVER = Path(__file__).with_name("bad_input_driver.py")
PIXEL = ["--set", "tokenizer.kind=pixel"]

# id -> (command, needles in the error line, paths (relative to the case folder) that must not
# exist afterwards)
CLI_CASES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "unknown_key": (
        ["params", "--set", "train.stpes=3"],
        ["train.stpes", "did you mean 'train.steps'"],
        [],
    ),
    "unknown_key_in_file": (["params", "--params", "bad.yaml"], ["bad.yaml", "trainn"], []),
    "mistyped_value": (["params", "--set", "train.lr=fast"], ["train.lr", "fast"], []),
    "negative_steps": (["params", "--set", "train.steps=-5"], ["train.steps", "-5"], []),
    "temperature_zero": (
        ["params", "--set", "sample.temperature=0"],
        ["sample.temperature", "> 0"],
        [],
    ),
    "top_p_above_one": (["params", "--set", "sample.top_p=1.5"], ["sample.top_p", "1.5"], []),
    "top_p_zero": (["params", "--set", "sample.top_p=0"], ["sample.top_p"], []),
    "t_min_ge_t_max": (
        ["params", "--set", "train.t_min=0.6", "--set", "train.t_max=0.4"],
        ["t_min", "t_max"],
        [],
    ),
    "unknown_schedule": (
        ["params", "--set", "train.schedule=cosinus"],
        ["train.schedule", "cosinus"],
        [],
    ),
    "unknown_sampler": (["params", "--set", "sample.method=eulr"], ["eulr", "euler"], []),
    "dataset_wrong_layout": (
        ["stage", "prepare", *PIXEL, "--set", "data.root=not-fmnist"],
        ["not-fmnist"],
        ["data/prepared"],
    ),
    "checkpoint_other_model": (
        ["sample", "--ckpt", "other/ckpt.pt", "--out", "out", *PIXEL],
        ["other/ckpt.pt", "vocab 5", "does not match the tokenizer"],
        ["out"],
    ),
}
DRIVER_CASES: dict[str, list[str]] = {
    "x_init_out_of_vocab": ["x_init", "mask_id=4"],
    "likelihood_out_of_vocab": ["x0 (2, 4)", "[0, 4)", "found [0, 7]"],
    "imagenet_wrong_layout": ["imagenet", "missing train/ folder", "Expected layout"],
    "image_does_not_decode": ["n01440764_2.JPEG"],
    "video_too_short": ["000.mp4", "5 frames", "16 frames"],
    "shard_hash_mismatch": ["shard_hash_mismatch/shard", "tokens.npy", "manifest hash"],
}


def _other_checkpoint(folder: Path) -> None:
    """A valid checkpoint of a model that does not fit the params (vocab 5, no grid)."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=5, seq_len=4, dim=16, depth=1, heads=2))
    cfg = TrainConfig(steps=1, batch_size=4, ckpt_every=1, device="cpu")
    res = train(model, torch.randint(0, 5, (8, 4)), None, cfg, folder / "run", progress=False)
    (folder / "other").mkdir()
    res.checkpoint.rename(folder / "other" / "ckpt.pt")
    Path(f"{res.checkpoint}.sha256").rename(folder / "other" / "ckpt.pt.sha256")


def _run_cli(case: str, root: Path) -> subprocess.CompletedProcess:
    args, _, _ = CLI_CASES[case]
    work = root / case
    work.mkdir()
    (work / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (work / "bad.yaml").write_text((REPO / "params.yaml").read_text() + "trainn: {steps: 3}\n")
    if case == "checkpoint_other_model":
        _other_checkpoint(work)
    return subprocess.run(
        [str(BIN / "unmask"), *args],
        cwd=work,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run_driver(case: str, root: Path) -> subprocess.CompletedProcess:
    work = root / case
    work.mkdir()
    (work / "params.yaml").write_text((REPO / "params.yaml").read_text())
    return subprocess.run(
        [PYTHON, str(DRIVER), case, str(work), *PIXEL],
        cwd=work,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    root = tmp_path_factory.mktemp("bad-input")
    jobs = [(c, _run_cli) for c in CLI_CASES] + [(c, _run_driver) for c in DRIVER_CASES]
    with ThreadPoolExecutor(3) as pool:
        futures = {c: pool.submit(fn, c, root) for c, fn in jobs}
        return {c: (f.result(), root / c) for c, f in futures.items()}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_command_line_bad_input(outcomes, case):
    out, work = outcomes[case]
    _, needles, absent = CLI_CASES[case]
    assert_user_error(out, *needles)
    for rel in absent:
        assert not (work / rel).exists(), rel


@pytest.mark.parametrize("case", list(DRIVER_CASES))
def test_stage_entry_bad_input(outcomes, case):
    out, _ = outcomes[case]
    assert_user_error(out, *DRIVER_CASES[case])
