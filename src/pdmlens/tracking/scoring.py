"""MLflow side of scoring: a registered model that takes raw data, and scoring runs.

- :class:`ScoringPyfunc`: a pyfunc model whose one artifact is a scoring bundle
  (``pdmlens.scoring``). ``predict`` takes a raw fleet table (a DataFrame with ``unit``,
  ``time``, ``setting_*``, ``sensor_*``: the columns the source gave) and returns one row
  per unit at its latest time (``prediction``: this model's RUL, or P(failure within the
  horizon), plus the whole score table); float32 windows [N, W, F] still return the
  estimator's ``predict`` as before. ``params={"explain": "all" | "alerts" | "none"}``.
  It loads in any process with pdmlens installed, through ``mlflow.pyfunc.load_model`` and
  ``mlflow models serve``.
- :func:`log_scoring_model`: log a bundle as such a model on a run; returns its URI.
- :func:`load_bundle`: the bundle behind a model URI (``models:/name@champion``, a
  version, a logged model id, ``runs:/``), or a training run's (``run_bundle``).
- :func:`scoring_run`: one scoring run in experiment ``pdmlens-score-<dataset>``, tagged
  with the model versions used; metrics (units scored, alerts per level, units novel) and
  artifacts (table, board) logged when it ends well, FAILED (nothing finished) otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, RunTag
from mlflow.models import Model
from mlflow.pyfunc import PythonModel

from pdmlens.results import BUNDLE_ARTIFACT
from pdmlens.scoring.bundle import ScoringBundle
from pdmlens.scoring.score import ScoreTable, score_fleet
from pdmlens.tracking.tags import (
    KIND_TAG,
    MODEL_TAG_PREFIX,
    SCORING_RUN,
    SCORING_TAG,
    TRAINING_RUN_KEY,
    score_experiment,
)

log = logging.getLogger(__name__)


def registered_name(kind: str, dataset: str) -> str:
    """``pdmlens-<kind>-<dataset>`` as the training flow registers it."""
    from pdmlens.tracking.runs import registered_model_name

    return registered_model_name(kind, dataset)


# ----------------------------------------------------------------------------- pyfunc


class ScoringPyfunc(PythonModel):
    """Raw fleet table in, one row per unit out (see the module docstring)."""

    def __init__(self, kind: str = "lstm") -> None:
        if kind not in ("lstm", "forest"):
            raise ValueError("kind must be 'lstm' or 'forest'")
        self.kind = kind
        self.bundle: ScoringBundle | None = None

    def load_context(self, context: Any) -> None:
        self.bundle = ScoringBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        bundle = self.bundle
        if bundle is None:
            raise RuntimeError("the scoring model is not loaded")
        est = bundle.lstm if self.kind == "lstm" else bundle.forest
        if isinstance(model_input, pd.DataFrame) and "unit" in model_input.columns:
            explain = str((params or {}).get("explain", "all"))
            table = score_fleet(bundle, model_input, explain=explain, keep_frames=False).table
            col = bundle.task.prediction_column(self.kind)
            table.insert(1, "prediction", table[col])
            return table
        x = np.asarray(model_input, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(
                "input must be a raw fleet table (a DataFrame with a 'unit' column) or "
                f"windows [N, W, F], got shape {x.shape}"
            )
        return np.asarray(est.predict(x))


def log_scoring_model(
    tracker: Any, run_id: str, bundle_dir: str | Path, kind: str = "lstm", name: str | None = None
) -> str:
    """Log the bundle in ``bundle_dir`` as a :class:`ScoringPyfunc` model on ``run_id``
    (``tracker``: a pdmlens Tracker, for its client); returns ``models:/<model_id>``.
    No signature is logged: the model takes both a table and windows."""
    client = tracker.client
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
        experiment_id,
        name=name or kind,
        source_run_id=run_id,
        tags={SCORING_TAG: "1", KIND_TAG: kind},
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mlflow_model = Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                model_id=logged.model_id,
            )
            local = Path(tmp) / "model"
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore")
                mlflow.pyfunc.save_model(
                    path=str(local),
                    python_model=ScoringPyfunc(kind),
                    artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                    mlflow_model=mlflow_model,
                    pip_requirements=_requirements(),
                )
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"


def _requirements() -> list[str]:
    from importlib import metadata

    out = []
    for pkg in ("mlflow", "torch", "scikit-learn", "numpy", "pandas", "pyarrow", "shap"):
        try:
            out.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(pkg)
    return out


# ----------------------------------------------------------------------------- loading


@dataclass
class ResolvedModel:
    """A bundle and where it came from (for the scoring run's tags)."""

    bundle: ScoringBundle
    uri: str
    versions: dict[str, str] = field(default_factory=dict)


def load_bundle(tracker: Any, model_uri: str) -> ResolvedModel:
    """The scoring bundle behind ``model_uri``; a model logged without one (windows only)
    is refused with a message saying how to get one."""
    location = tracker.model_location(model_uri)
    model = mlflow.pyfunc.load_model(location)
    inner = model.unwrap_python_model()
    bundle = getattr(inner, "bundle", None)
    if not isinstance(bundle, ScoringBundle):
        raise LookupError(
            f"{model_uri} takes windows only (it carries no scoring bundle): score with a "
            "model logged by a run that logs its bundle, or pass --bundle DIR"
        )
    versions = {"model_uri": model_uri}
    if model_uri.startswith("models:/") and "@" in model_uri:
        name, alias = model_uri[len("models:/") :].split("@", 1)
        mv = tracker.client.get_model_version_by_alias(name, alias)
        versions[name] = str(mv.version)
    trained_by = training_run_of(tracker.client, model_uri)
    if trained_by:
        versions[TRAINING_RUN_KEY] = trained_by
    return ResolvedModel(bundle, model_uri, versions)


def training_run_of(client: Any, model_uri: str) -> str | None:
    """The pipeline run (the parent, not the child that logged it) that trained the model
    behind ``model_uri`` (``models:/<id>``, ``models:/<name>@<alias>``,
    ``models:/<name>/<version>``, ``runs:/<id>/...``); None where the store cannot say."""
    try:
        if model_uri.startswith("runs:/"):
            source = model_uri[len("runs:/") :].split("/", 1)[0]
        elif model_uri.startswith("models:/"):
            ref = model_uri[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                source = client.get_model_version_by_alias(name, alias).run_id
            elif "/" in ref:
                name, version = ref.split("/", 1)
                source = client.get_model_version(name, version).run_id
            else:
                source = client.get_logged_model(ref).source_run_id
        else:
            return None
        if not source:
            return None
        return str(client.get_run(source).data.tags.get("mlflow.parentRunId", source))
    except Exception as exc:  # an older store, a model from elsewhere: the tag is a help
        log.debug("no training run for %s: %s", model_uri, exc)
        return None


def champion_uri(dataset: str, kind: str = "lstm") -> str:
    return f"models:/{registered_name(kind, dataset)}@champion"


def run_bundle(tracker: Any, run_id: str, kind: str = "lstm") -> ResolvedModel:
    """The bundle a training run (its parent id, or the child that logged the model)
    logged: the scoring model of ``kind`` whose source run is it or one of its children."""
    client = tracker.client
    run = client.get_run(run_id)
    ids = {run_id}
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    ids.update(c.info.run_id for c in children)
    found = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    for m in found:
        tags = m.tags or {}
        if m.source_run_id in ids and tags.get(SCORING_TAG) and tags.get(KIND_TAG) == kind:
            return load_bundle(tracker, f"models:/{m.model_id}")
    raise LookupError(f"run {run_id} logged no scoring model ({kind})")


# ----------------------------------------------------------------------------- runs


@dataclass
class ScoringRun:
    """Handle of a scoring run inside :func:`scoring_run`."""

    tracker: Any
    run_id: str
    experiment: str
    logged: bool = False

    def log(
        self,
        scores: ScoreTable,
        files: Mapping[str, str | Path],
        tags: dict[str, str] | None = None,
    ) -> None:
        """Metrics (units scored, alerts per level, units novel, seconds), tags and the
        artifact files (artifact path -> local file)."""
        client = self.tracker.client
        now = int(time.time() * 1000)
        counts = {**scores.counts(), **{f"seconds_{k}": v for k, v in scores.seconds.items()}}
        client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()],
            tags=[RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()],
        )
        for art, local in files.items():
            parent = Path(art).parent.as_posix()
            client.log_artifact(self.run_id, str(local), None if parent in ("", ".") else parent)
        self.logged = True


@contextlib.contextmanager
def scoring_run(
    tracker: Any, dataset: str, name: str | None = None, tags: dict[str, str] | None = None
) -> Iterator[ScoringRun]:
    """A run in ``pdmlens-score-<dataset>``: FINISHED when the block ends without error
    (and logged), FAILED otherwise, so a bad input never leaves a finished scoring run."""
    experiment = score_experiment(dataset)
    exp_id = tracker.ensure_experiment(experiment)
    all_tags = {
        "mlflow.runName": name or time.strftime("score-%Y%m%d-%H%M%S"),
        "pdmlens.dataset": dataset,
        KIND_TAG: SCORING_RUN,
        **(tags or {}),
    }
    run = tracker.client.create_run(exp_id, tags=all_tags)
    handle = ScoringRun(tracker, run.info.run_id, experiment)
    try:
        yield handle
    except BaseException:
        tracker.client.set_terminated(run.info.run_id, "FAILED")
        raise
    tracker.client.set_terminated(run.info.run_id, "FINISHED" if handle.logged else "FAILED")


def model_tags(versions: dict[str, str]) -> dict[str, str]:
    """Scoring-run tags naming the models used (``pdmlens.model.<name>`` = version/URI)."""
    return {f"{MODEL_TAG_PREFIX}{k}": v for k, v in versions.items()}
