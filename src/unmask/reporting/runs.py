"""Runs from MLflow as one pandas table, with the ablation each run belongs to.

Tagging convention (the names of :mod:`unmask.tracking_tags` plus those of
:mod:`unmask.orchestration.runs`; the writers are the ``ablations`` / ``t_min`` flows, the default
pipeline's stages, :mod:`unmask.prime` and :mod:`unmask.emigm`):

==========================  ==================================================================
tag / param / metric        meaning
==========================  ==================================================================
``unmask.ablation``         the axis: ``nfe``, ``temperature``, ``cfg``, ``schedule``,
                            ``t_min``, ``prime_l`` (plotted); ``sampler``, ``top_p``,
                            ``cfg_interval``, ``weighting``, ... (tabled)
``unmask.kind``             ``trial`` (a grid point) or ``sweep`` (its parent; never plotted)
``unmask.paper``            ``discrete-interpolants`` / ``emigm`` / ``mdm-prime``
``unmask.stage`` / ``stage``  ``train`` / ``evaluate`` / ``summary`` (pipeline stages:
                            ``evaluate`` runs carry ``fid`` etc.)
``unmask.primary_metric``   the trial's headline metric (``fid`` when computed)
``unmask.fid_unavailable``  why a run has no ``fid`` (shown, never replaced)
``git_commit``              the commit a run was made from
``unmask.device``           the device (``cpu ...``, ``cuda:0 NVIDIA H100``, ...)
``unmask.dataset_manifest`` sha256 of the dataset manifest (else the ``fid.reference`` param)
``point.<dotted key>``      param: the grid point's value of the swept key (orchestration)
``<section>.<key>``         param: resolved params (``sample.steps``, ``train.t_min``,
                            ``prime.l``, ``train.seed``: repeats over seeds are averaged)
metrics                     ``fid`` (FID plots), ``ppl`` / ``bits_per_dim`` (ℓ plot),
                            ``train_seconds`` (t_min cost), ``nfe`` (x of the NFE plot)
==========================  ==================================================================

Older MDM-Prime runs without ``unmask.ablation`` (tag/param ``ell`` and a ``perplexity`` or
``ppl`` metric) are read as ``prime_l`` points.

:func:`load_runs` returns ``mlflow.search_runs``'s frame (columns ``run_id``,
``experiment_id``, ``status``, ``start_time``, ``params.*``, ``metrics.*``, ``tags.*``) plus
``experiment`` (name) and ``ablation`` (the axis, or ``""``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from unmask.tracking import tracking_uri as default_uri

__all__ = ["ABLATION_TAG", "download_artifact", "fetch_artifact", "list_artifacts", "load_runs",
           "no_runs", "infer_ablation", "param", "metric", "tag"]

ABLATION_TAG = "unmask.ablation"
KIND_TAG = "unmask.kind"


def param(df: pd.DataFrame, key: str) -> pd.Series:
    """Param ``key`` of every row (the grid point's ``point.<key>`` first), as strings (NaN if
    absent)."""
    out = pd.Series([None] * len(df), index=df.index, dtype=object)
    for col in (f"params.point.{key}", f"params.{key}"):
        if col in df:
            out = out.where(out.notna(), df[col])
    return out


def metric(df: pd.DataFrame, key: str) -> pd.Series:
    """Metric ``key`` of every row as floats (NaN if absent)."""
    col = f"metrics.{key}"
    if col not in df:
        return pd.Series([float("nan")] * len(df), index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce")


def tag(df: pd.DataFrame, key: str) -> pd.Series:
    """Tag ``key`` of every row (NaN if absent)."""
    col = f"tags.{key}"
    if col not in df:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    return df[col]


def infer_ablation(df: pd.DataFrame) -> pd.Series:
    """The ablation of each run: the ``unmask.ablation`` tag (sweep parents excluded), else
    ``prime_l`` for older MDM-Prime evaluate runs (``ell`` and a ``perplexity``/``ppl`` metric),
    else ``""``."""
    abl = tag(df, ABLATION_TAG).fillna("").astype(str)
    kind = tag(df, KIND_TAG).fillna("").astype(str)
    abl = abl.where(kind != "sweep", "")
    ell = tag(df, "ell").where(tag(df, "ell").notna(), param(df, "ell"))
    ppl = metric(df, "perplexity").notna() | metric(df, "ppl").notna()
    prime = (abl == "") & ell.notna() & ppl
    return abl.where(~prime, "prime_l")


def load_runs(
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    *,
    finished_only: bool = True,
) -> pd.DataFrame:
    """All runs of ``experiments`` (names; default: every experiment) in the store at
    ``tracking_uri`` (default :func:`unmask.tracking.tracking_uri`).

    Args:
        finished_only: keep only FINISHED runs (a failed or running trial has no valid metrics).

    Raises:
        ValueError: an experiment name that does not exist in the store.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient  # heavy (~1 s): only when the store is read

    uri = tracking_uri or default_uri()
    client = MlflowClient(tracking_uri=uri)
    if experiments:
        exps = []
        for name in experiments:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                known = sorted(e.name for e in client.search_experiments())
                raise ValueError(f"experiment {name!r} not found in {uri}; known: {known}")
            exps.append(exp)
    else:
        exps = list(client.search_experiments())
    names = {e.experiment_id: e.name for e in exps}
    if not names:
        return no_runs()
    import mlflow  # heavy (~1 s): only when the store is read

    # mlflow.set_tracking_uri also exports $MLFLOW_TRACKING_URI: restore both, or every later
    # unmask.tracking.tracking_uri() in this process would silently follow this store.
    prev, prev_env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        filt = "attributes.status = 'FINISHED'" if finished_only else ""
        df = mlflow.search_runs(
            experiment_ids=list(names),
            filter_string=filt,
            output_format="pandas",
            max_results=50_000,
        )
    finally:
        mlflow.set_tracking_uri(prev)
        if prev_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = prev_env
    if df.empty:
        return no_runs()
    df = df.copy()
    df["experiment"] = df["experiment_id"].map(names)
    df["ablation"] = infer_ablation(df)
    return df.reset_index(drop=True)


def no_runs() -> pd.DataFrame:
    """The frame :func:`load_runs` returns when there are no runs."""
    return pd.DataFrame(
        columns=["run_id", "experiment_id", "experiment", "status", "start_time", "ablation"]
    )


def download_artifact(uri: str, run_id: str, candidates: Sequence[str],
                      dst: Path) -> Path | None:
    """The first artifact of ``candidates`` the run has, downloaded; None if it has none."""
    from mlflow.tracking import MlflowClient  # heavy (~1 s): only when the store is read

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri=uri)
    for path in candidates:
        folder, _, name = path.rpartition("/")
        try:
            listed = {Path(f.path).name for f in client.list_artifacts(run_id, folder or None)}
        except Exception:  # an unreachable artifact store: no image, the report still builds
            return None
        if name in listed:
            out = dst / run_id
            out.mkdir(parents=True, exist_ok=True)
            return Path(client.download_artifacts(run_id, path, str(out)))
    return None


def list_artifacts(uri: str, run_id: str) -> list[str]:
    """Every artifact file of the run (paths relative to its artifact root), sorted; empty when
    the artifact store cannot be read (the report still builds)."""
    from mlflow.tracking import MlflowClient  # heavy (~1 s): only when the store is read

    client = MlflowClient(tracking_uri=uri)
    out, todo = [], [None]
    while todo:
        folder = todo.pop()
        try:
            infos = client.list_artifacts(run_id, folder)
        except Exception:  # an unreachable artifact store: no images, the report still builds
            return []
        for f in infos:
            (todo if f.is_dir else out).append(f.path)
    return sorted(out)


def fetch_artifact(uri: str, run_id: str, path: str, dst: Path) -> Path | None:
    """Download the run's artifact ``path`` under ``dst/<run_id>``; None if that fails."""
    from mlflow.tracking import MlflowClient  # heavy (~1 s): only when the store is read

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    out = dst / run_id
    out.mkdir(parents=True, exist_ok=True)
    try:
        return Path(MlflowClient(tracking_uri=uri).download_artifacts(run_id, path, str(out)))
    except Exception:  # a missing or unreadable artifact: shown as absent, never invented
        return None
