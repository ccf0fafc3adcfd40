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
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pandas as pd

from pdmlens.results import BUNDLE_ARTIFACT, MODELS
from pdmlens.tracking.sqlite_index import PARENT_TAG, IndexUnavailable, SqliteIndex
from pdmlens.tracking.store import sqlite_path
from pdmlens.tracking.tags import (
    KIND_TAG,
    MODEL_TAG_PREFIX,
    SCORING_RUN,
    SPLIT_TAG,
    TRAINING_RUN_KEY,
    score_experiment,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

SCORE_COUNTS = ("units_scored", "alerts_act", "alerts_watch", "alerts_ok", "units_novel")
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
    """Read runs, params, tables and model files from one MLflow tracking store.

    A local SQLite store answers the run list, params, metrics, children and artifact
    places through :class:`~pdmlens.tracking.sqlite_index.SqliteIndex` (milliseconds, no
    mlflow import) unless ``use_index=False``; everything else, and any store the index
    cannot read, goes through MLflow's client, made on first use.
    """

    def __init__(
        self,
        tracking_uri: str,
        download_dir: str | Path | None = None,
        use_index: bool = True,
    ) -> None:
        self.uri = tracking_uri
        self._downloads = Path(download_dir or tempfile.mkdtemp(prefix="pdmlens-explore-"))
        db = sqlite_path(tracking_uri) if use_index else None
        self.index = SqliteIndex(db) if db and Path(db).is_file() else None

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _indexed(self, name: str, *args: Any) -> Any:
        """The index's answer to ``name(*args)``, or None where there is no index or it
        cannot read the store now (then the client answers)."""
        if self.index is None:
            return None
        try:
            return getattr(self.index, name)(*args)
        except IndexUnavailable as exc:
            log.info("reading through MLflow's client: %s", exc)
            return None

    # ------------------------------------------------------------------------- runs

    def runs(self, max_results: int = 500) -> pd.DataFrame:
        """Pipeline runs (parents) of every experiment, newest first: ``run_id,
        experiment, dataset, name, start_time (UTC), status`` and the headline metrics.
        Scoring runs are listed by :meth:`scoring_runs`."""
        rows: list[dict[str, Any]] = []
        for r in self._runs(max_results):
            tags = r["tags"]
            if PARENT_TAG in tags or tags.get(KIND_TAG) == SCORING_RUN:
                continue
            row: dict[str, Any] = {
                "run_id": r["run_id"],
                "experiment": r["experiment"],
                "dataset": tags.get("pdmlens.dataset", ""),
                "name": tags.get("mlflow.runName", r["name"] or ""),
                "start_time": pd.Timestamp(r["start_time"], unit="ms", tz="UTC"),
                "status": r["status"],
            }
            for m in HEADLINE_METRICS:
                row[m] = r["metrics"].get(m, float("nan"))
            rows.append(row)
        cols = ["run_id", "experiment", "dataset", "name", "start_time", "status"]
        return pd.DataFrame(rows, columns=[*cols, *HEADLINE_METRICS])

    def _runs(
        self, max_results: int, experiment: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Active runs (of one experiment, with one status), newest first, as plain dicts:
        ``run_id, experiment, name, start_time (ms), status, tags, metrics``."""
        found = self._indexed("runs", max_results, experiment, status)
        if found is not None:
            return list(found)
        from mlflow.entities import ViewType

        exps: list[Any]
        if experiment is None:
            exps = list(self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        else:
            exp = self.client.get_experiment_by_name(experiment)
            exps = [exp] if exp is not None and exp.lifecycle_stage == "active" else []
        names = {e.experiment_id: e.name for e in exps}
        if not names:
            return []
        found = self.client.search_runs(
            list(names),
            filter_string=f"attributes.status = '{status}'" if status else "",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
        return [
            {
                "run_id": r.info.run_id,
                "experiment": names.get(r.info.experiment_id, r.info.experiment_id),
                "name": r.info.run_name,
                "start_time": r.info.start_time,
                "status": r.info.status,
                "tags": dict(r.data.tags),
                "metrics": dict(r.data.metrics),
            }
            for r in found
        ]

    def dataset(self, run_id: str) -> str:
        """The dataset a pipeline run trained on (its ``pdmlens.dataset`` tag)."""
        tags = self._indexed("tags", run_id)
        if tags is None:
            tags = self.client.get_run(run_id).data.tags
        return str(tags.get("pdmlens.dataset", ""))

    def params(self, run_id: str) -> dict[str, str]:
        found = self._indexed("params", run_id)
        return dict(self.client.get_run(run_id).data.params if found is None else found)

    def metrics(self, run_id: str) -> dict[str, float]:
        found = self._indexed("metrics", run_id)
        return dict(self.client.get_run(run_id).data.metrics if found is None else found)

    def children(self, run_id: str) -> dict[str, str]:
        """Child run name -> run id (``lstm``, ``random_forest``, ``signatures``)."""
        found = self._indexed("children", run_id)
        if found is not None:
            return dict(found)
        from mlflow.entities import ViewType

        run = self.client.get_run(run_id)
        kids = self.client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
        )
        return {k.data.tags.get("mlflow.runName", k.info.run_id): k.info.run_id for k in kids}

    def scoring_runs(self, dataset: str, max_results: int = 200) -> pd.DataFrame:
        """Finished scoring runs (``pdmlens score``, the scoring flow) of ``dataset``,
        newest first: ``run_id, name, start_time, split, training_run, models`` (what
        scored it, as tagged) and the counts (units scored, alerts per level, novel)."""
        cols = ["run_id", "name", "start_time", "split", "training_run", "models", *SCORE_COUNTS]
        rows = []
        for r in self._runs(max_results, score_experiment(dataset), "FINISHED"):
            tags = r["tags"]
            models = {
                k[len(MODEL_TAG_PREFIX) :]: v
                for k, v in tags.items()
                if k.startswith(MODEL_TAG_PREFIX) and k != MODEL_TAG_PREFIX + TRAINING_RUN_KEY
            }
            row: dict[str, Any] = {
                "run_id": r["run_id"],
                "name": tags.get("mlflow.runName", r["name"] or ""),
                "start_time": pd.Timestamp(r["start_time"], unit="ms", tz="UTC"),
                "split": tags.get(SPLIT_TAG, ""),
                "training_run": tags.get(MODEL_TAG_PREFIX + TRAINING_RUN_KEY, ""),
                "models": ", ".join(f"{k} {v}" for k, v in sorted(models.items())),
            }
            for m in SCORE_COUNTS:
                row[m] = int(r["metrics"].get(m, 0))
            rows.append(row)
        return pd.DataFrame(rows, columns=cols)

    def scored_table(self, run_id: str) -> pd.DataFrame | None:
        """The score table (one row per scored machine) a scoring run logged."""
        from pdmlens.scoring.outputs import TABLE

        return self.table(run_id, f"scores/{TABLE}.parquet")

    # ------------------------------------------------------------------------- files

    def artifact(self, run_id: str, path: str) -> Path | None:
        """A local copy (or the file itself, for a local store) of one run artifact."""
        base = (
            self._indexed("artifact_uri", run_id) or self.client.get_run(run_id).info.artifact_uri
        )
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
