"""MLflow layer: runs, params, metrics, artifacts, models and the registry, by explicit id.

The only module of the library that imports mlflow. Everything goes through one
``MlflowClient`` and explicit run ids, never MLflow's "active run": that is per thread, and
Prefect runs tasks in threads, so a run started in one task is invisible to the next. A
pipeline run is a parent run (tags: dataset hash, code version, Prefect flow-run id) with
child runs (``lstm``, ``random_forest``, ``signatures``) created with the parent's id.

Writes are batched (``log_batch``): on the SQLite store one call costs ~10 ms whatever it
carries. Models are logged as pyfunc models whose wrapper reloads the estimator's own save
file, so the LSTM accepts any window length; logging them does not touch MLflow's global
tracking URI either. Registration moves the alias ``champion`` only when the new model
beats the current champion on the same data (see :meth:`Tracker.register_model`), and
:meth:`Tracker.tracked_run` defers registration to the very end, so a run that fails
midway registers nothing and leaves its parent and children FAILED.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import re
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import (
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import Schema, TensorSpec

from pdmlens.config import TrackingConfig, env

log = logging.getLogger(__name__)
# no tqdm bars in pipeline logs while models are copied (unless the user asked for them)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
CHAMPION = "champion"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TAG_DATASET_HASH = "pdmlens.dataset_hash"
TAG_DATASET = "pdmlens.dataset"
TAG_VERSION = "pdmlens.version"
TAG_GIT_COMMIT = "pdmlens.git_commit"
TAG_FLOW_RUN = "pdmlens.flow_run_id"
MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_INPUT_EXAMPLE_ROWS = 2
_KEY_BAD = re.compile(r"[^\w\-. /]")


# ----------------------------------------------------------------------------- locations


def resolve_tracking_uri(
    cfg: TrackingConfig | None = None, base_dir: str | Path | None = None
) -> str:
    """``cfg.uri``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store; a relative
    SQLite path is made absolute against ``base_dir`` (default: the working directory)
    and its folder created."""
    uri = cfg.uri if cfg is not None else None
    uri = uri or env("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    db = _sqlite_path(uri)
    if db is None:
        return uri
    query = uri[uri.index("?") :] if "?" in uri else ""
    path = Path(db)
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()).resolve() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}{query}"


def resolve_artifact_root(
    tracking_uri: str, cfg: TrackingConfig | None = None, base_dir: str | Path | None = None
) -> str | None:
    """Artifact location root for new experiments: ``cfg.artifact_root`` (a URI, or a path
    made absolute), else ``artifacts/`` beside a SQLite database; None lets a tracking
    server choose."""
    root = cfg.artifact_root if cfg is not None else None
    if root:
        if "://" in root:
            return root.rstrip("/")
        path = Path(root)
        if not path.is_absolute():
            path = Path(base_dir or Path.cwd()).resolve() / path
        return path.as_uri()
    db = _sqlite_path(tracking_uri)
    if db is None or db == ":memory:":
        return None
    return (Path(db).parent / "artifacts").resolve().as_uri()


def _sqlite_path(uri: str) -> str | None:
    if not uri.startswith("sqlite:///"):
        return None
    return uri[len("sqlite:///") :].split("?", 1)[0]


@lru_cache(maxsize=1)
def code_version() -> dict[str, str]:
    """pdmlens's version and, when the package sits in a git checkout, its commit."""
    out = {TAG_VERSION: _package_version("pdmlens") or "unknown"}
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


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def registered_model_name(kind: str, dataset: str) -> str:
    """``pdmlens-<kind>-<dataset>`` with characters the registry dislikes replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"pdmlens-{kind}-{dataset}")


# ----------------------------------------------------------------------------- values


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


# ----------------------------------------------------------------------------- models


class EstimatorPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper around a pdmlens estimator saved in its own format.

    The model's one artifact is what ``estimator.save(path)`` wrote (the LSTM: params and
    state dict, so windows of any length work; the forest: a joblib file); loading calls the
    class's ``load(path)``. The estimator class must be importable where the model loads
    (pdmlens installed). Input: float32 windows [N, W, F]; output: ``estimator.predict``.
    """

    def __init__(self, estimator_class: str) -> None:
        self.estimator_class = estimator_class
        self.estimator_: Any = None

    def load_context(self, context) -> None:
        module, _, qualname = self.estimator_class.partition(":")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        self.estimator_ = cls.load(context.artifacts["estimator"])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        x = np.asarray(model_input, dtype=np.float32)
        return np.asarray(self.estimator_.predict(x))


def _requirements(*packages: str) -> list[str]:
    out = []
    for name in packages:
        version = _package_version(name)
        out.append(f"{name}=={version}" if version else name)
    return out


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Registration:
    """Outcome of registering one model version."""

    name: str
    version: str
    champion: bool
    reason: str
    previous_champion: str | None = None


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


# ----------------------------------------------------------------------------- tracker


class Tracker:
    """All MLflow writes of a pipeline run, by explicit run id (thread-safe use)."""

    def __init__(self, cfg: TrackingConfig | None = None, base_dir: str | Path | None = None):
        self.cfg = cfg or TrackingConfig()
        self.uri = resolve_tracking_uri(self.cfg, base_dir)
        self.artifact_root = resolve_artifact_root(self.uri, self.cfg, base_dir)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    # -- experiments and runs

    def ensure_experiment(self, name: str) -> str:
        """Id of experiment ``name``, created (artifacts under the artifact root) if absent."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.artifact_root is not None:
            location = f"{self.artifact_root}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        try:
            return self.client.create_experiment(name, artifact_location=location)
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
        all_tags: dict[str, str] = {RUN_NAME_TAG: run_name, **code_version()}
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
        then open children and the parent are marked FINISHED."""
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
                run.registrations = self._register_all(run.pending)
            elif run.pending:
                log.info("registration is off: %d model(s) not registered", len(run.pending))
        except BaseException as exc:
            status = "FAILED" if isinstance(exc, Exception) else "KILLED"
            log.warning("run %s ended by %r: marking it and its children %s", parent, exc, status)
            try:
                self.fail_tree(parent, status)
            except Exception:  # never hide the original error behind a tracking one
                log.exception("could not mark run %s %s", parent, status)
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
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource

        src: Any = (
            str(source)
            if Path(str(source)).exists()
            else CodeDatasetSource(tags={"pdmlens.source": str(source)})
        )
        with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways"
            warnings.filterwarnings("ignore", message=".*multiple ways.*")
            dataset = mlflow.data.from_pandas(frame, source=src, name=name, digest=digest)
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
        return self._log_estimator(
            run_id,
            estimator,
            input_example,
            name=name,
            filename="lstm.pt",
            any_length=True,
            requirements=("mlflow", "torch", "scikit-learn", "numpy", "pandas"),
        )

    def log_forest_model(
        self, run_id: str, estimator: Any, input_example: np.ndarray, name: str = "random_forest"
    ) -> str:
        """Log a fitted ForestEstimator (``save``/``load``, joblib) as a pyfunc model taking
        float32 windows [N, W, F] of the example's length W; returns its model URI."""
        return self._log_estimator(
            run_id,
            estimator,
            input_example,
            name=name,
            filename="forest.joblib",
            any_length=False,
            requirements=("mlflow", "scikit-learn", "joblib", "torch", "numpy", "pandas"),
        )

    def _log_estimator(
        self,
        run_id: str,
        estimator: Any,
        input_example: np.ndarray,
        *,
        name: str,
        filename: str,
        any_length: bool,
        requirements: tuple[str, ...],
    ) -> str:
        x = np.ascontiguousarray(np.asarray(input_example, dtype=np.float32)[:_INPUT_EXAMPLE_ROWS])
        if x.ndim != 3 or len(x) == 0:
            raise ValueError(f"input_example must be windows [N, W, F], got shape {x.shape}")
        pred = np.asarray(estimator.predict(x))
        time_steps = -1 if any_length else x.shape[1]
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, time_steps, x.shape[2]))]),
            outputs=Schema([TensorSpec(pred.dtype, (-1, *pred.shape[1:]))]),
        )
        cls = type(estimator)
        wrapper = EstimatorPyfunc(f"{cls.__module__}:{cls.__qualname__}")
        experiment_id = self.client.get_run(run_id).info.experiment_id
        logged = self.client.create_logged_model(
            experiment_id,
            name=name,
            source_run_id=run_id,
            tags={"pdmlens.estimator": wrapper.estimator_class},
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                saved = Path(tmp) / "estimator" / filename
                estimator.save(saved)
                mlflow_model = Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                )
                local = Path(tmp) / "model"
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*type hints.*")
                    mlflow.pyfunc.save_model(
                        path=str(local),
                        python_model=wrapper,
                        artifacts={"estimator": str(saved)},
                        mlflow_model=mlflow_model,
                        signature=signature,
                        input_example=x,
                        pip_requirements=_requirements(*requirements),
                    )
                self.client.log_model_artifacts(logged.model_id, str(local))
            self.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        except BaseException:
            self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return f"models:/{logged.model_id}"

    def model_location(self, model_uri: str) -> str:
        """The artifact URI holding a model given as ``models:/<model_id>``,
        ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or ``runs:/<id>/<path>``."""
        if model_uri.startswith("models:/"):
            ref = model_uri[len("models:/") :]
            if "@" in ref:
                mv = self.client.get_model_version_by_alias(*ref.split("@", 1))
            elif "/" in ref:
                mv = self.client.get_model_version(*ref.split("/", 1))
            else:
                return self.client.get_logged_model(ref).artifact_location
            if mv.model_id:
                return self.client.get_logged_model(mv.model_id).artifact_location
            return self.model_location(mv.source)
        if model_uri.startswith("runs:/"):
            run_id, _, path = model_uri[len("runs:/") :].partition("/")
            return f"{self.client.get_run(run_id).info.artifact_uri}/{path}"
        return model_uri

    def load_model(self, model_uri: str) -> Any:
        """``mlflow.pyfunc.load_model`` resolved against this tracker's store."""
        return mlflow.pyfunc.load_model(self.model_location(model_uri))

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
        ``champion`` to it when it beats the current champion.

        The champion's score is the metric ``metric_name`` of its source run; the new
        model's is ``metric_value``. Strictly better wins, a tie keeps the champion. "Same
        data" means the same ``pdmlens.dataset_hash`` tag on both source runs. When the
        champion was trained on other data the scores are not comparable and
        ``cfg.champion_on_new_data`` decides: ``replace`` (default, the model of the newest
        data takes over) or ``keep``. No champion, or a champion without the metric (or
        NaN): the new model takes the alias; a NaN new score never does.
        """
        with contextlib.suppress(MlflowException):  # already exists
            self.client.create_registered_model(name)
        new_hash = self.client.get_run(run_id).data.tags.get(TAG_DATASET_HASH)
        model_id = model_uri[len("models:/") :] if _is_logged_model_uri(model_uri) else None
        # the source is the artifact location itself: the SQL registry resolves a
        # models:/ source through MLflow's global tracking URI, not this client's
        mv = self.client.create_model_version(
            name,
            source=self.model_location(model_uri),
            run_id=run_id,
            model_id=model_id,
            tags={
                "pdmlens.metric": metric_name,
                "pdmlens.metric_value": repr(float(metric_value)),
                TAG_DATASET_HASH: new_hash or "",
            },
        )
        champion = self._champion(name)
        prev = str(champion.version) if champion is not None else None
        better, reason = self._beats(
            champion, metric_name, float(metric_value), higher_is_better, new_hash
        )
        if better:
            self.client.set_registered_model_alias(name, CHAMPION, mv.version)
        self.client.set_model_version_tag(name, mv.version, "pdmlens.champion_reason", reason)
        log.info(
            "registered %s v%s (%s): %s",
            name,
            mv.version,
            "champion" if better else "not champion",
            reason,
        )
        return Registration(name, str(mv.version), better, reason, prev)

    def _champion(self, name: str) -> Any:
        try:
            return self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None

    def _beats(
        self,
        champion: Any,
        metric_name: str,
        value: float,
        higher_is_better: bool,
        new_hash: str | None,
    ) -> tuple[bool, str]:
        if math.isnan(value):
            return False, f"new {metric_name} is NaN"
        if champion is None:
            return True, "first model"
        if not champion.run_id:
            return True, "champion has no source run"
        run = self.client.get_run(champion.run_id)
        old_hash = run.data.tags.get(TAG_DATASET_HASH)
        if new_hash and old_hash and new_hash != old_hash:
            keep = self.cfg.champion_on_new_data == "keep"
            return (not keep), (
                "champion trained on other data: " + ("kept" if keep else "replaced")
            )
        old = run.data.metrics.get(metric_name)
        if old is None or math.isnan(old):
            return True, f"champion v{champion.version} has no {metric_name}"
        better = value > old if higher_is_better else value < old
        verdict = "beats" if better else "does not beat"
        return better, f"{metric_name} {value:.6g} {verdict} v{champion.version}'s {old:.6g}"

    def _register_all(self, pending: list[dict[str, Any]]) -> list[Registration]:
        done: list[Registration] = []
        try:
            for item in pending:
                done.append(self.register_model(**item))
        except BaseException:
            for reg in reversed(done):
                self._undo(reg)
            raise
        return done

    def _undo(self, reg: Registration) -> None:
        with contextlib.suppress(MlflowException):
            self.client.delete_model_version(reg.name, reg.version)
            if reg.champion and reg.previous_champion is not None:
                self.client.set_registered_model_alias(reg.name, CHAMPION, reg.previous_champion)


def _is_logged_model_uri(uri: str) -> bool:
    ref = uri[len("models:/") :] if uri.startswith("models:/") else None
    return ref is not None and "/" not in ref and "@" not in ref


def _parent_or_none(path: Path) -> str | None:
    parent = path.parent.as_posix()
    return None if parent in ("", ".") else parent
