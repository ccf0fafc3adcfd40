"""What the steps hand on: their result type, the names of their metrics and files.

A step's result is small (paths, numbers, short lists), picklable (Prefect passes it
between tasks) and saved beside the step's files as JSON (:data:`OUTPUT_FILE`), so the report
and a notebook need nothing but the folder. This module imports neither the steps nor the
report: both build on it.

Metric names are made here and taken apart here: evaluate logs ``<model>_test_<metric>``
(:func:`score_name`) on the parent run and each model's own part (:func:`model_metrics`)
on that model's child run. The two models, their files and the MLflow runs they are
logged to are :data:`MODELS`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT_FILE = "output.json"
EXAMPLE_FILE = "input_example.npy"
"""a couple of validation windows beside a saved model: its logged input example"""
LSTM_FILE = "lstm.pt"
FOREST_FILE = "forest.joblib"
PREDICTIONS_FILE = "predictions.parquet"
REPORT_FILE = "report.html"
BUNDLE_ARTIFACT = "bundle"
"""the scoring pyfunc's artifact key: the run's scoring bundle folder, at
``artifacts/<key>/`` in each logged model's artifact folder (MLflow keeps a pyfunc's
artifacts there under ``artifacts/``)"""
AT_RISK_FILE = "machines_at_risk.csv"
"""every evaluated machine at its latest window, most urgent first (a run artifact)"""
LATE_FILE = "late_predictions.csv"
"""the machines predicted more than 20 cycles late, worst first (a run artifact)"""


@dataclass(frozen=True)
class ModelKind:
    """One of the two models: its short name (metric prefix), the step that trains it, the
    file it is saved to, its MLflow child run and its registered-model kind."""

    name: str
    train_step: str
    file: str
    child_run: str
    registered_kind: str
    label: str


LSTM = ModelKind("lstm", "train_lstm", LSTM_FILE, "lstm", "lstm", "LSTM")
FOREST = ModelKind(
    "forest", "train_forest", FOREST_FILE, "random_forest", "forest", "random forest"
)
MODELS: tuple[ModelKind, ...] = (LSTM, FOREST)


def model_kind(name: str) -> ModelKind:
    """The model called ``name`` (``lstm`` or ``forest``)."""
    for kind in MODELS:
        if kind.name == name:
            return kind
    raise KeyError(f"no model {name!r}; the models are {[k.name for k in MODELS]}")


def model_file(kind: ModelKind, model_dir: str | Path) -> Path:
    """Where the train step of ``kind`` saved its model inside ``model_dir``."""
    return Path(model_dir) / kind.file


# ----------------------------------------------------------------------------- metric names

TEST = "test_"
"""evaluate's metrics are ``<model>_test_<name>``"""
TEST_ALL = "test_all_"
"""... and over every evaluated window ``<model>_test_all_<name>``"""


def score_name(model: str, name: str) -> str:
    """evaluate's metric ``name`` of ``model`` (``lstm``, ``forest``): ``lstm_test_rmse``."""
    return f"{model}_{TEST}{name}"


def model_metrics(metrics: dict[str, float], model: str) -> dict[str, float]:
    """The metrics of ``model`` among evaluate's, without the model prefix: what its child
    run logs (``lstm_test_rmse`` -> ``test_rmse``)."""
    prefix = f"{model}_"
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


def model_scores(metrics: dict[str, float], model: str) -> dict[str, float]:
    """evaluate's test metrics of ``model`` without ``<model>_test_`` (``rmse``,
    ``all_pr_auc``, ...)."""
    prefix = score_name(model, "")
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------- results


@dataclass
class StepResult:
    """What one step leaves behind, small enough to pass between tasks (JSON).

    ``metrics``: finite floats logged to the step's MLflow run; ``figures`` / ``tables``:
    MLflow artifact path (``figures/predictions.png``) -> local file; ``info``: headline
    values (short lists, strings, numbers) for the summary and the report."""

    step: str
    dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    """artifact path (e.g. ``figures/predictions.png``) -> local PNG file."""
    tables: dict[str, str] = field(default_factory=dict)
    """artifact path (e.g. ``explain/attributions_lstm.parquet``) -> local Parquet file."""
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)
    """a cached step's files: relative path -> ``{"size", "sha256"}``, checked before the
    folder is reused (:mod:`pdmlens.steps.cache`); empty for the other steps."""

    def save(self, directory: str | Path | None = None) -> StepResult:
        """Write ``output.json`` into ``directory`` (default: the step's folder); returns
        self."""
        path = Path(directory if directory is not None else self.dir) / OUTPUT_FILE
        path.write_text(json.dumps(asdict(self), indent=1, default=_json_default))
        return self

    @classmethod
    def load(cls, directory: str | Path) -> StepResult:
        """The result a step saved into ``directory``."""
        return cls(**json.loads((Path(directory) / OUTPUT_FILE).read_text()))

    @classmethod
    def coerce(cls, value: StepResult | dict[str, Any]) -> StepResult:
        """A result from itself or its dict (an older cached Prefect result)."""
        return value if isinstance(value, StepResult) else cls(**value)

    @property
    def files(self) -> dict[str, str]:
        """Every artifact the step wrote: figures and tables."""
        return {**self.figures, **self.tables}


StepOutput = StepResult
"""the former name, kept for callers of ``pdmlens.steps.StepOutput``"""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def clean_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Finite floats only (MLflow and JSON both dislike NaN)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (bool, np.bool_)):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            out[k] = float(v)
    return out
