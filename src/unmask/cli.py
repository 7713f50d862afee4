"""The ``unmask`` command line (typer).

    unmask train    [--params params.yaml] [--set key=value ...]
    unmask sample   [--ckpt models/model.pt] [--method --steps --temperature --top-p --cfg-scale
                     --cfg-schedule --n --seed --out]
    unmask evaluate | report | stage <name> | params

Every command reads the same typed params (:func:`unmask.config.load_params`); options are
overrides of them. A user error (mistyped key, bad value, unknown method, missing file or
checkpoint) prints one ``error: ...`` line on stderr and exits with status 2, no traceback
(``UNMASK_DEBUG=1`` shows it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from unmask.config import load_params  # noqa: E402
from unmask.dvcdeps import dvc_app  # noqa: E402
from unmask.errors import user_errors  # noqa: E402
from unmask.metrics.cli import evaluate_app  # noqa: E402
from unmask.orchestration.cli import stack_app  # noqa: E402
from unmask.runtime import configure_threads  # noqa: E402
from unmask.stages import DEFAULT, run  # noqa: E402
from unmask.stages.common import PATHS  # noqa: E402
from unmask.stages.sample import generate  # noqa: E402

app = typer.Typer(
    name="unmask",
    help="Masked discrete generative models: train, sample, evaluate (see dvc.yaml).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(stack_app, name="stack")
app.add_typer(evaluate_app, name="evaluate")  # `unmask evaluate` (stage) + one per metric
app.add_typer(dvc_app, name="dvc")  # `unmask dvc deps --check|--write`

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Params file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a param (repeatable)."),
]


def _stage(name: str, params: Path, overrides: list[str] | None) -> Any:
    with user_errors():
        configure_threads()  # as `python -m unmask.stages <name>`: the same bits either way
        return run(name, load_params(params, overrides or []))


@app.command()
def train(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Train the denoiser described by params (model, train); writes models/model.pt."""
    _stage("train", params, set_)


@app.command()
def sample(
    ckpt: Annotated[Path, typer.Option(help="Checkpoint file or run folder.")] = PATHS.checkpoint,
    method: Annotated[str | None, typer.Option(help="euler|mdm|maskgit|first_hitting")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampling steps.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Softmax temperature (> 0).")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus mass in (0, 1].")] = None,
    cfg_scale: Annotated[float | None, typer.Option(help="Guidance scale w (0: none).")] = None,
    cfg_schedule: Annotated[str | None, typer.Option(help="constant | linear | interval")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Samples per class.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = PATHS.samples,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Sample a class grid from a checkpoint; writes samples.npz, grid.png, chain.png, info.json."""
    given = {
        "method": method, "steps": steps, "temperature": temperature, "top_p": top_p,
        "cfg_scale": cfg_scale, "cfg_schedule": cfg_schedule, "n_per_class": n, "seed": seed,
    }
    overrides = [*(set_ or []), *(f"sample.{k}={v}" for k, v in given.items() if v is not None)]
    with user_errors():
        p = load_params(params, overrides)
        if not Path(ckpt).exists():
            raise FileNotFoundError(f"checkpoint {ckpt} not found (run `unmask train` first)")
        info = generate(ckpt, p, out, class_names=p.data.class_names)
    typer.echo(json.dumps(info, indent=2))


@app.command()
def report(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Build reports/index.html and reports/metrics.csv from the pipeline outputs."""
    _stage("report", params, set_)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(DEFAULT)}.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Run one pipeline stage (what `dvc repro` runs)."""
    _stage(name, params, set_)


@app.command("params")
def show_params(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Validate params (with overrides) and print the resolved values as JSON."""
    with user_errors():
        typer.echo(json.dumps(load_params(params, set_ or []).flat(), indent=2))


def main() -> None:  # pragma: no cover - console script alternative
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
