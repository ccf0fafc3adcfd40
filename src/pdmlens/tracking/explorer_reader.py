"""Read-only access to the MLflow store for the explorer (``pdmlens explore``).

The explorer needs a few things a pipeline run recorded: the list of runs (parent runs,
newest first, with their headline metrics), a run's params, its child runs, its artifact
tables (Parquet), the files of its logged models and the folder its data was ingested to.
This module is the only part of the explorer that imports mlflow; everything it returns is
plain data (DataFrames, dicts, paths), so the views never see an MLflow object. It belongs
in the tracking layer (``pdmlens.tracking``) and is kept apart until that package settles.
"""

from __future__ import annotations

import json
import logging
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType

from pdmlens.results import BUNDLE_ARTIFACT, MODELS

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
HEADLINE_METRICS = ("lstm_test_rmse", "forest_test_rmse", "lstm_test_all_pr_auc")
MODEL_FILES = {kind.name: (kind.child_run, kind.file) for kind in MODELS}
"""model kind -> (child run name, the estimator's own save file inside the logged model)"""
MODEL_FILE_PLACES = (f"artifacts/{BUNDLE_ARTIFACT}", "artifacts")
"""where that file lies inside a logged model: in the scoring bundle of a scoring pyfunc
(what runs log), or beside the model's code (an estimator logged on its own)"""


def _file_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI (or a plain path); None for a remote URI."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


class StoreReader:
    """Read runs, params, tables and model files from one MLflow tracking store."""

    def __init__(self, tracking_uri: str, download_dir: str | Path | None = None) -> None:
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._downloads = Path(download_dir or tempfile.mkdtemp(prefix="pdmlens-explore-"))

    # ------------------------------------------------------------------------- runs

    def runs(self, max_results: int = 500) -> pd.DataFrame:
        """Parent runs of every experiment, newest first: ``run_id, experiment, dataset,
        name, start_time (UTC), status`` and the headline metrics."""
        exps = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        names = {e.experiment_id: e.name for e in exps}
        rows: list[dict[str, Any]] = []
        if names:
            found = self.client.search_runs(
                list(names),
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
            )
            for r in found:
                tags = r.data.tags
                if PARENT_TAG in tags:
                    continue
                row: dict[str, Any] = {
                    "run_id": r.info.run_id,
                    "experiment": names.get(r.info.experiment_id, r.info.experiment_id),
                    "dataset": tags.get("pdmlens.dataset", ""),
                    "name": tags.get("mlflow.runName", r.info.run_name or ""),
                    "start_time": pd.Timestamp(r.info.start_time, unit="ms", tz="UTC"),
                    "status": r.info.status,
                }
                for m in HEADLINE_METRICS:
                    row[m] = r.data.metrics.get(m, float("nan"))
                rows.append(row)
        cols = ["run_id", "experiment", "dataset", "name", "start_time", "status"]
        return pd.DataFrame(rows, columns=[*cols, *HEADLINE_METRICS])

    def params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def children(self, run_id: str) -> dict[str, str]:
        """Child run name -> run id (``lstm``, ``random_forest``, ``signatures``)."""
        run = self.client.get_run(run_id)
        kids = self.client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
        )
        return {k.data.tags.get("mlflow.runName", k.info.run_id): k.info.run_id for k in kids}

    # ------------------------------------------------------------------------- files

    def artifact(self, run_id: str, path: str) -> Path | None:
        """A local copy (or the file itself, for a local store) of one run artifact."""
        base = self.client.get_run(run_id).info.artifact_uri
        local = _file_path(base)
        if local is not None:
            p = local / path
            return p if p.is_file() else None
        dest = self._downloads / run_id
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dest)))
        except Exception as exc:  # a missing artifact is a normal answer here
            log.debug("no artifact %s in run %s: %s", path, run_id, exc)
            return None

    def table(self, run_id: str, path: str) -> pd.DataFrame | None:
        """A Parquet artifact of the run as a DataFrame (None when it was not logged)."""
        p = self.artifact(run_id, path)
        return pd.read_parquet(p) if p is not None else None

    def model_file(self, run_id: str, kind: str) -> Path | None:
        """The estimator's save file (``lstm.pt``, ``forest.joblib``) of the model the
        pipeline run logged for ``kind`` (``lstm`` or ``forest``)."""
        child_name, filename = MODEL_FILES[kind]
        child = self.children(run_id).get(child_name)
        if child is None:
            return None
        exp = self.client.get_run(run_id).info.experiment_id
        models = self.client.search_logged_models([exp], filter_string=f"source_run_id = '{child}'")
        for m in models:
            for place in MODEL_FILE_PLACES:
                uri = f"{m.artifact_location.rstrip('/')}/{place}/{filename}"
                local = _file_path(uri)
                if local is not None:
                    if local.is_file():
                        return local
                    continue
                import mlflow.artifacts

                dest = self._downloads / m.model_id
                try:
                    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(dest)))
                except Exception as exc:  # not in this place: try the next
                    log.debug("no %s in %s: %s", filename, uri, exc)
        return None

    def ingest_dir(self, run_id: str) -> Path | None:
        """The folder the run's data was ingested to (its dataset inputs' source)."""
        inputs = self.client.get_run(run_id).inputs
        for inp in inputs.dataset_inputs if inputs is not None else []:
            try:
                src = json.loads(inp.dataset.source)
            except (TypeError, ValueError):
                continue
            uri = src.get("uri") if isinstance(src, dict) else None
            path = _file_path(uri) if uri else None
            if path is not None and path.is_file():
                return path.parent
        return None


@lru_cache(maxsize=8)
def reader(tracking_uri: str) -> StoreReader:
    """One shared reader per store (its client and download folder are reused)."""
    return StoreReader(tracking_uri)
