"""Runs of a pipeline in MLflow: the parent run, its children, params, batched metrics,
tags, dataset inputs and artifacts, by explicit run id; models and champion promotion are
delegated to :mod:`pdmlens.tracking.models` and :mod:`pdmlens.tracking.champion`.

Everything goes through one ``MlflowClient`` and explicit run ids, never MLflow's "active
run": that is per thread, and Prefect runs tasks in threads, so a run started in one task is
invisible to the next. A pipeline run is a parent run (tags: dataset hash, code version,
Prefect flow-run id, owner process) with child runs (``lstm``, ``random_forest``,
``signatures``) created with the parent's id.

Writes are batched (``log_batch``): on the SQLite store one call costs ~10 ms whatever it
carries. :meth:`Tracker.tracked_run` closes runs orphaned by killed processes first
(:mod:`pdmlens.tracking.orphans`), defers registration to the very end, so a run that fails
midway registers nothing and leaves its parent and children FAILED.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException

import pdmlens.tracking.champion as champion_rules
import pdmlens.tracking.models as models
from pdmlens.config import TrackingConfig
from pdmlens.results import FOREST_FILE, LSTM_FILE
from pdmlens.tracking.champion import Registration
from pdmlens.tracking.orphans import close_orphaned_runs, owner_tags
from pdmlens.tracking.store import (
    check_tracking_reachable,
    open_client,
    resolve_artifact_root,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
"""the run's description in the MLflow UI (Markdown)"""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow 3's UI opens an experiment of this kind on its runs list, not on Traces"""
TAG_DATASET_HASH = champion_rules.TAG_DATASET_HASH
TAG_DATASET = "pdmlens.dataset"
TAG_VERSION = "pdmlens.version"
TAG_GIT_COMMIT = "pdmlens.git_commit"
TAG_FLOW_RUN = "pdmlens.flow_run_id"
MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_KEY_BAD = re.compile(r"[^\w\-. /]")


@lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    """pdmlens's version and, when the package sits in a git checkout, its commit."""
    out = {TAG_VERSION: models.package_version("pdmlens") or "unknown"}
    here = Path(__file__).resolve().parent
    if any((p / ".git").exists() for p in here.parents):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            res = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=here,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if res.returncode == 0 and res.stdout.strip():
                out[TAG_GIT_COMMIT] = res.stdout.strip()
    return out


def registered_model_name(kind: str, dataset: str) -> str:
    """``pdmlens-<kind>-<dataset>`` with characters the registry dislikes replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"pdmlens-{kind}-{dataset}")


def _param_value(value: Any) -> str:
    seq = isinstance(value, (list, tuple, dict))
    text = json.dumps(value, default=str) if seq else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _key(key: str) -> str:
    return _KEY_BAD.sub("_", str(key))


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TrackedRun:
    """Handle of a parent run inside :meth:`Tracker.tracked_run`."""

    tracker: Tracker
    run_id: str
    children: dict[str, str] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)

    def child(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        """Start (once) and return the child run ``name``."""
        if name not in self.children:
            self.children[name] = self.tracker.start_child(self.run_id, name, tags)
        return self.children[name]

    def register_later(
        self,
        model_uri: str,
        name: str,
        run_id: str,
        metric_name: str,
        metric_value: float,
        higher_is_better: bool = False,
    ) -> None:
        """Queue a registration; it happens when the ``with`` block ends without error."""
        self.pending.append(
            dict(
                model_uri=model_uri,
                name=name,
                run_id=run_id,
                metric_name=metric_name,
                metric_value=metric_value,
                higher_is_better=higher_is_better,
            )
        )


class Tracker:
    """All MLflow writes of a pipeline run, by explicit run id (thread-safe use)."""

    def __init__(self, cfg: TrackingConfig | None = None, base_dir: str | Path | None = None):
        self.cfg = cfg or TrackingConfig()
        self.uri = resolve_tracking_uri(self.cfg, base_dir)
        self.artifact_root = resolve_artifact_root(self.uri, self.cfg, base_dir)
        self.client = open_client(self.uri)

    def preflight(self, timeout: float = 5.0) -> None:
        """Raise :class:`~pdmlens.errors.TrackingUnavailableError` within about ``timeout``
        seconds when the store cannot be used (see
        :func:`~pdmlens.tracking.store.check_tracking_reachable`)."""
        check_tracking_reachable(self.uri, timeout)

    def close_orphaned_runs(self, experiment: str | None = None) -> list[str]:
        """Mark KILLED the RUNNING runs of ``experiment`` (default: every experiment) whose
        owner process on this host is gone; returns their ids (the rule:
        :mod:`pdmlens.tracking.orphans`)."""
        if experiment is None:
            return close_orphaned_runs(self.client)
        exp = self.client.get_experiment_by_name(experiment)
        return [] if exp is None else close_orphaned_runs(self.client, [exp.experiment_id])

    # -- experiments and runs

    def ensure_experiment(self, name: str) -> str:
        """Id of experiment ``name``, created (artifacts under the artifact root) if absent."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older pdmlens
                self.client.set_experiment_tag(
                    exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                )
            return exp.experiment_id
        location = None
        if self.artifact_root is not None:
            location = f"{self.artifact_root}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        try:
            return self.client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:  # created meanwhile by another process
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def start_parent(
        self,
        experiment: str,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        *,
        dataset_hash: str | None = None,
        dataset: str | None = None,
        flow_run_id: str | None = None,
    ) -> str:
        """Create the parent run of a pipeline run; returns its id."""
        all_tags: dict[str, str] = {RUN_NAME_TAG: run_name, **code_version(), **owner_tags()}
        for key, value in (
            (TAG_DATASET_HASH, dataset_hash),
            (TAG_DATASET, dataset),
            (TAG_FLOW_RUN, flow_run_id),
        ):
            if value is not None:
                all_tags[key] = str(value)
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        run = self.client.create_run(self.ensure_experiment(experiment), tags=all_tags)
        log.info("MLflow parent run %s (%s) in %s", run.info.run_id, run_name, experiment)
        return run.info.run_id

    def start_child(self, parent_id: str, name: str, tags: Mapping[str, Any] | None = None) -> str:
        """Create child run ``name`` under ``parent_id``; it inherits the parent's
        ``pdmlens.*`` tags (dataset hash, version, flow-run id)."""
        parent = self.client.get_run(parent_id)
        all_tags = {k: v for k, v in parent.data.tags.items() if k.startswith("pdmlens.")}
        all_tags.update({PARENT_TAG: parent_id, RUN_NAME_TAG: name})
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        run = self.client.create_run(parent.info.experiment_id, tags=all_tags)
        return run.info.run_id

    def children(self, parent_id: str) -> list[str]:
        """Ids of every child run of ``parent_id``."""
        parent = self.client.get_run(parent_id)
        runs = self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            run_view_type=ViewType.ALL,
            max_results=1000,
        )
        return [r.info.run_id for r in runs]

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark a run terminated with ``status`` (FINISHED, FAILED or KILLED)."""
        RunStatus.from_string(status)  # validates
        self.client.set_terminated(run_id, status=status)

    @staticmethod
    def _patiently(what: str, action: Callable[[], None], patience: float) -> None:
        """Run ``action`` (idempotent) until it succeeds or ``patience`` seconds have
        passed, pausing 2, 4, 8, 15, 15 ... s between tries (each try also has MLflow's
        own bounded HTTP retries); the last failure is raised."""
        deadline = time.monotonic() + patience
        pause = 2.0
        while True:
            try:
                action()
                return
            except Exception as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                log.warning(
                    "tracking store not answering (%s): still trying to %s, for up to %.0f s",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                    what,
                    left,
                )
                time.sleep(min(pause, left))
                pause = min(2 * pause, 15.0)

    def fail_tree(self, parent_id: str, status: str = "FAILED") -> None:
        """Mark the parent and all its children ``status``."""
        for run_id in [*self.children(parent_id), parent_id]:
            self.client.set_terminated(run_id, status=status)

    @contextlib.contextmanager
    def tracked_run(
        self,
        experiment: str,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        *,
        dataset_hash: str | None = None,
        dataset: str | None = None,
        flow_run_id: str | None = None,
    ) -> Iterator[TrackedRun]:
        """A parent run for the ``with`` block. On an exception, parent and children are
        marked FAILED and nothing queued with ``register_later`` is registered; otherwise
        the queued registrations run last (a failure there undoes the ones already made),
        then open children and the parent are marked FINISHED. Before the parent starts,
        runs left RUNNING by killed pdmlens processes of this host are marked KILLED."""
        try:
            self.close_orphaned_runs()
        except Exception:  # a courtesy to earlier runs: never stops this one
            log.exception("could not close orphaned runs")
        parent = self.start_parent(
            experiment,
            run_name,
            tags,
            dataset_hash=dataset_hash,
            dataset=dataset,
            flow_run_id=flow_run_id,
        )
        run = TrackedRun(self, parent)
        try:
            yield run
            if self.cfg.register:
                run.registrations = champion_rules.register_all(
                    self.client, self.uri, run.pending, self.cfg.champion_on_new_data
                )
            elif run.pending:
                log.info("registration is off: %d model(s) not registered", len(run.pending))
        except BaseException as exc:
            status = "FAILED" if isinstance(exc, Exception) else "KILLED"
            log.warning("run %s ended by %r: marking it and its children %s", parent, exc, status)
            # a store that is down for a while (a server restarting) is waited for, so
            # the runs end FAILED rather than RUNNING; an interrupt does not wait
            patience = self.cfg.end_patience if status == "FAILED" else 0.0
            try:
                self._patiently(
                    f"mark run {parent} and its children {status}",
                    lambda: self.fail_tree(parent, status),
                    patience,
                )
            except Exception:  # never hide the original error behind a tracking one
                log.exception("could not mark run %s %s", parent, status)
            if getattr(exc, "mlflow_run_id", None) is None:
                with contextlib.suppress(AttributeError, TypeError):  # e.g. a frozen exception
                    exc.mlflow_run_id = parent  # type: ignore[attr-defined]
            raise
        for child_id in self.children(parent):
            if self.client.get_run(child_id).info.status == "RUNNING":
                self.finish(child_id)
        self.finish(parent)

    # -- params, metrics, inputs

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log flat params (values stringified, truncated to MLflow's 6000 characters)."""
        items = [Param(_key(k), _param_value(v)) for k, v in params.items()]
        for batch in _chunks(items, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=batch, synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics (None skipped) in as few calls as possible."""
        ts = _now_ms()
        items = [
            Metric(_key(k), float(v), ts, int(step or 0))
            for k, v in metrics.items()
            if v is not None
        ]
        for batch in _chunks(items, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch, synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags (values stringified) in one write per 100."""
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        for batch in _chunks(items, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, tags=batch, synchronous=True)

    def describe(self, run_id: str, name: str | None = None, note: str | None = None) -> None:
        """Name a run (``mlflow.runName``, the runs list's first column) and describe it
        (``mlflow.note.content``, Markdown shown on the run's page)."""
        tags = {RUN_NAME_TAG: name, NOTE_TAG: note}
        self.set_tags(run_id, {k: v for k, v in tags.items() if v is not None})

    def make_epoch_callback(self, run_id: str, prefix: str = "") -> Callable[..., None]:
        """``callback(epoch, metrics)`` logging ``metrics`` (all but an ``epoch`` entry,
        which is the step) at step ``epoch``: one batched write per epoch."""

        def callback(epoch: int, metrics: Mapping[str, Any], *_: Any, **__: Any) -> None:
            values = {f"{prefix}{k}": v for k, v in metrics.items() if k != "epoch"}
            self.log_metrics(run_id, values, step=int(epoch))

        return callback

    def log_dataset_input(
        self,
        run_id: str,
        frame: pd.DataFrame,
        name: str,
        digest: str,
        source: str | Path,
        context: str = "training",
    ) -> None:
        """Record ``frame`` as an MLflow dataset input of the run (schema, size, digest).
        ``source`` is a path (kept as a local source) or a free description."""
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.pandas_dataset import from_pandas

        src: Any = (
            str(source)
            if Path(str(source)).exists()
            else CodeDatasetSource(tags={"pdmlens.source": str(source)})
        )
        with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways"
            warnings.filterwarnings("ignore", message=".*multiple ways.*")
            dataset = from_pandas(frame, source=src, name=name, digest=digest)
        self.client.log_inputs(
            run_id,
            [
                DatasetInput(
                    dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]
                )
            ],
        )

    # -- artifacts

    def log_figure(self, run_id: str, fig: Any, path: str) -> None:
        """A matplotlib figure as an image artifact at ``path`` (e.g. figures/loss.png)."""
        self.client.log_figure(run_id, fig, path, save_kwargs={"dpi": 100, "bbox_inches": "tight"})

    def log_frame_parquet(self, run_id: str, df: pd.DataFrame, path: str) -> None:
        """A DataFrame as a Parquet artifact at ``path`` (e.g. explain/gates.parquet)."""
        target = Path(path)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / target.name
            df.to_parquet(local)
            self.client.log_artifact(run_id, str(local), _parent_or_none(target))

    def log_artifact_file(
        self, run_id: str, local: str | Path, artifact_path: str | None = None
    ) -> None:
        """A local file or folder, under the folder ``artifact_path`` of the run."""
        self.client.log_artifact(run_id, str(local), artifact_path)

    def log_step(
        self,
        run_id: str,
        metrics: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
        prefix: str = "",
    ) -> None:
        """A pipeline step's outputs: ``metrics`` (keys prefixed) in one batch, and every
        local file of ``files`` (artifact path -> local path, e.g. ``figures/x.png``)."""
        if metrics:
            self.log_metrics(run_id, {f"{prefix}{k}": v for k, v in metrics.items()})
        for artifact, local in (files or {}).items():
            self.log_artifact_file(run_id, local, _parent_or_none(Path(artifact)))

    def run_url(self, run_id: str, ui: str = "http://127.0.0.1:5000") -> str:
        """Where the run shows in the MLflow UI: the tracking server's own address, or
        ``ui`` (what ``pdmlens ui`` serves) for a local store."""
        run = self.client.get_run(run_id)
        base = self.uri if self.uri.startswith(("http://", "https://")) else ui
        return f"{base.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def log_html(self, run_id: str, html: str, path: str = "report.html") -> None:
        """A self-contained HTML page (the MLflow UI shows it in a sandboxed frame)."""
        self.client.log_text(run_id, html, path)

    # -- models

    def log_lstm_model(
        self, run_id: str, estimator: Any, input_example: np.ndarray, name: str = "lstm"
    ) -> str:
        """Log a fitted LSTMEstimator (``save``/``load``) as a pyfunc model taking float32
        windows [N, W, F] of any length W; returns the ``models:/<model_id>`` URI."""
        return models.log_estimator(
            self.client,
            run_id,
            estimator,
            input_example,
            name=name,
            filename=LSTM_FILE,
            any_length=True,
            packages=models.LSTM_REQUIREMENTS,
        )

    def log_forest_model(
        self, run_id: str, estimator: Any, input_example: np.ndarray, name: str = "random_forest"
    ) -> str:
        """Log a fitted ForestEstimator (``save``/``load``, joblib) as a pyfunc model taking
        float32 windows [N, W, F] of the example's length W; returns its model URI."""
        return models.log_estimator(
            self.client,
            run_id,
            estimator,
            input_example,
            name=name,
            filename=FOREST_FILE,
            any_length=False,
            packages=models.FOREST_REQUIREMENTS,
        )

    def model_location(self, model_uri: str) -> str:
        """The artifact URI holding a model given as ``models:/<model_id>``,
        ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or ``runs:/<id>/<path>``."""
        return models.model_location(self.client, model_uri)

    def load_model(self, model_uri: str) -> Any:
        """``mlflow.pyfunc.load_model`` resolved against this tracker's store."""
        return models.load_model(self.client, model_uri)

    # -- registry

    def register_model(
        self,
        model_uri: str,
        name: str,
        run_id: str,
        metric_name: str,
        metric_value: float,
        higher_is_better: bool = False,
    ) -> Registration:
        """Register ``model_uri`` as a new version of ``name`` and move the alias
        ``champion`` to it when it beats the current champion; the rule, including
        ``cfg.champion_on_new_data`` and what guards racing runs, is
        :mod:`pdmlens.tracking.champion`'s."""
        return champion_rules.register_model(
            self.client,
            self.uri,
            model_uri,
            name,
            run_id,
            metric_name,
            metric_value,
            higher_is_better,
            self.cfg.champion_on_new_data,
        )


def _parent_or_none(path: Path) -> str | None:
    parent = path.parent.as_posix()
    return None if parent in ("", ".") else parent
