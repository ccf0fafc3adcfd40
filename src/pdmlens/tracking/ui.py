"""The MLflow web UI over a pdmlens store: the command line ``pdmlens ui`` starts."""

from __future__ import annotations

import sys

from pdmlens.config import TrackingConfig
from pdmlens.tracking.store import resolve_artifact_root, resolve_tracking_uri


def mlflow_ui_command(
    cfg: TrackingConfig | None = None, port: int = 5000, host: str = "127.0.0.1"
) -> tuple[list[str], str, str]:
    """``(argv, tracking URI, UI address)`` of ``mlflow ui`` serving the store of ``cfg``
    (resolved as a run resolves it) on ``host:port``, with the SQLite store's artifact
    root as the default for new experiments."""
    uri = resolve_tracking_uri(cfg)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        uri,
    ]
    root = resolve_artifact_root(uri, cfg)
    if root:
        cmd += ["--default-artifact-root", root]
    return cmd, uri, f"http://{host}:{port}"


def runs_list_urls(uri: str, address: str) -> list[tuple[str, str]]:
    """``(experiment name, URL of its runs list)`` for each experiment of the store at
    ``uri`` served at ``address``. MLflow 3's UI may open an experiment on its (empty)
    Traces tab; ``#/experiments/<id>/runs`` opens the runs list itself. An empty list when
    the store holds no experiment yet or cannot be read (the UI reports that itself)."""
    from pdmlens.tracking.store import open_client

    try:
        experiments = open_client(uri).search_experiments()
    except Exception:  # the UI itself will say what is wrong with the store
        return []
    named = [e for e in experiments if e.name != "Default"] or list(experiments)
    return [(e.name, f"{address}/#/experiments/{e.experiment_id}/runs") for e in named]
