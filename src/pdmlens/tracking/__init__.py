"""The tracking layer: the only part of pdmlens that imports mlflow.

- :mod:`~pdmlens.tracking.store`: where the store is, preflight, bounded HTTP retries,
  opening a SQLite store under a lock;
- :mod:`~pdmlens.tracking.runs`: :class:`Tracker`, runs, children, params, metrics, tags,
  artifacts of a pipeline run;
- :mod:`~pdmlens.tracking.models`: the pyfunc wrapper, logging and loading estimators;
- :mod:`~pdmlens.tracking.champion`: registration and the alias ``champion``;
- :mod:`~pdmlens.tracking.orphans`: owner tags and closing runs of killed processes;
- :mod:`~pdmlens.tracking.ui`: the ``mlflow ui`` command line for ``pdmlens ui``;
- :mod:`~pdmlens.tracking.scoring`: the scoring pyfunc (raw fleet tables in), loading a
  bundle from a model URI or a training run, and scoring runs;
- :mod:`~pdmlens.tracking.explorer_reader`: the explorer's read-only view of the store;
- :mod:`~pdmlens.tracking.cleanup`: marking KILLED the runs of a cancelled flow run.

Importing the package bounds MLflow's HTTP retries (:func:`store.bound_http_retries`), so
a tracking server that dies mid-run fails the run in seconds, not minutes.
"""

from __future__ import annotations

import os

from pdmlens.tracking.store import (
    DEFAULT_TRACKING_URI,
    bound_http_retries,
    check_tracking_reachable,
    resolve_artifact_root,
    resolve_tracking_uri,
)

# no tqdm bars in pipeline logs while models are copied (unless the user asked for them)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
bound_http_retries()

from pdmlens.errors import TrackingUnavailableError  # noqa: E402
from pdmlens.tracking.champion import CHAMPION, Registration  # noqa: E402
from pdmlens.tracking.models import EstimatorPyfunc  # noqa: E402
from pdmlens.tracking.orphans import close_orphaned_runs  # noqa: E402
from pdmlens.tracking.runs import (  # noqa: E402
    MAX_PARAM_LENGTH,
    NOTE_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    TAG_DATASET,
    TAG_DATASET_HASH,
    TAG_FLOW_RUN,
    TAG_GIT_COMMIT,
    TAG_VERSION,
    TrackedRun,
    Tracker,
    code_version,
    registered_model_name,
)
from pdmlens.tracking.ui import mlflow_ui_command  # noqa: E402

__all__ = [
    "CHAMPION",
    "DEFAULT_TRACKING_URI",
    "MAX_PARAM_LENGTH",
    "NOTE_TAG",
    "PARENT_TAG",
    "RUN_NAME_TAG",
    "TAG_DATASET",
    "TAG_DATASET_HASH",
    "TAG_FLOW_RUN",
    "TAG_GIT_COMMIT",
    "TAG_VERSION",
    "EstimatorPyfunc",
    "Registration",
    "TrackedRun",
    "Tracker",
    "TrackingUnavailableError",
    "bound_http_retries",
    "check_tracking_reachable",
    "close_orphaned_runs",
    "code_version",
    "mlflow_ui_command",
    "registered_model_name",
    "resolve_artifact_root",
    "resolve_tracking_uri",
]
