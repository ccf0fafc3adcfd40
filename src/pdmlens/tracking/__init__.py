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

Importing the package is light (no mlflow until a name that needs it is used) and bounds
MLflow's HTTP retries (:func:`store.bound_http_retries`), so
a tracking server that dies mid-run fails the run in seconds, not minutes.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

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

# The names below load their module (and mlflow, about a second) on first use, so that a
# command that only needs the store's address (``pdmlens explore`` serving its page while
# the store opens) does not wait for MLflow.
_HOMES = (
    "pdmlens.errors",
    "pdmlens.tracking.runs",
    "pdmlens.tracking.champion",
    "pdmlens.tracking.models",
    "pdmlens.tracking.orphans",
    "pdmlens.tracking.ui",
)
"""where the names of ``__all__`` not imported above live"""

if TYPE_CHECKING:
    from pdmlens.errors import TrackingUnavailableError
    from pdmlens.tracking.champion import CHAMPION, Registration
    from pdmlens.tracking.models import EstimatorPyfunc
    from pdmlens.tracking.orphans import close_orphaned_runs
    from pdmlens.tracking.runs import (
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
    from pdmlens.tracking.ui import mlflow_ui_command


def __getattr__(name: str) -> Any:
    if name in __all__:
        for home in _HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
