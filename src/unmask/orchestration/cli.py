"""``unmask stack up|down|status|env``: the local Prefect + MLflow stack (typer sub-app).

Mounted in the main CLI with ``app.add_typer(stack_app, name="stack")``; also runnable alone as
``python -m unmask.orchestration.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unmask.orchestration import stack

__all__ = ["stack_app"]

stack_app = typer.Typer(
    name="stack",
    help="Local services on 127.0.0.1: Prefect server + worker, MLflow tracking server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Pids, logs and databases (default .unmask/stack)."),
]


def _state_dir(state_dir: Path | None) -> Path:
    return state_dir.resolve() if state_dir is not None else stack.default_state_dir()


@stack_app.command()
def up(
    state_dir: StateOpt = None,
    prefect_port: Annotated[int, typer.Option(help="Preferred port (0: any free).")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="Preferred port (0: any free).")] = 5000,
    deploy: Annotated[bool, typer.Option(help="Register flows/prefect.yaml.")] = True,
    set_profile: Annotated[
        bool, typer.Option(help="Activate a Prefect profile pointing at this server.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait per service.")] = 240.0,
) -> None:
    """Start the Prefect server, the MLflow server and a Prefect worker; print the UI URLs."""
    cfg = stack.StackConfig(repo=Path.cwd(), state_dir=_state_dir(state_dir),
                            prefect_port=prefect_port, mlflow_port=mlflow_port, deploy=deploy,
                            set_profile=set_profile, timeout=timeout)
    try:
        state = stack.up(cfg, echo=typer.echo)
    except stack.StackError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"\nPrefect UI: {state.prefect_url}\nMLflow UI:  {state.mlflow_url}\n")
    typer.echo("Run an ablation from another shell:  prefect deployment run ablations/nfe --watch")
    if not state.profile:
        typer.echo(f'(first: eval "$(unmask stack env --state-dir {cfg.state_dir})")')
    typer.echo("Stop everything:                     unmask stack down")


@stack_app.command()
def down(
    state_dir: StateOpt = None,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 10.0,
) -> None:
    """Stop exactly the processes `unmask stack up` started (by pid)."""
    stack.down(_state_dir(state_dir), echo=typer.echo, grace=grace)


@stack_app.command()
def status(state_dir: StateOpt = None) -> None:
    """Show the recorded services, their pids and whether they still run."""
    info = stack.status(_state_dir(state_dir))
    if not info:
        typer.echo("no stack recorded")
        raise typer.Exit(1)
    for name, s in info.items():
        state = "running" if s["running"] else "DEAD"
        typer.echo(f"{name:8s} pid {s['pid']:<8d} {state:8s} {s['url'] or ''}  log {s['log']}")
    if not all(s["running"] for s in info.values()):
        raise typer.Exit(1)


@stack_app.command()
def env(state_dir: StateOpt = None) -> None:
    """Print `export` lines for PREFECT_API_URL and MLFLOW_TRACKING_URI (for `eval`)."""
    state = stack.load_state(_state_dir(state_dir))
    if state is None:
        typer.echo("no stack recorded", err=True)
        raise typer.Exit(1)
    for k, v in state.client_env.items():
        typer.echo(f"export {k}={v}")


if __name__ == "__main__":
    stack_app()
