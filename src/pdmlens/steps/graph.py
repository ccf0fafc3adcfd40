"""The pipeline, defined once: its steps in order, what each takes, where it is logged.

:data:`PIPELINE` is an ordered tuple of :class:`StepSpec`. A step's function is called as
``fn(cfg, *input_dirs, out_dir, **extra)``, where ``input_dirs`` are the folders of the
earlier steps named in ``inputs`` (in that order). Two walkers read it:

- :func:`run_steps`, the plain-function run (notebooks, benchmarks, tests): every step one
  after another in this process, no Prefect, no MLflow;
- ``pipelines/flow.py``, the Prefect flow: the cached steps (``cache_key``) first, each in a
  content-addressed folder, then the others as tasks that run side by side wherever their
  inputs allow (train LSTM || train forest; explain || signatures), each result logged to
  the MLflow run ``run`` names and each trained ``model`` logged and registered.

Adding a step is one more :class:`StepSpec` here (and, if it logs to a new child run, a
:class:`RunSpec` in :data:`CHILD_RUNS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pdmlens.config import RunConfig
from pdmlens.results import FOREST, LSTM, ModelKind, StepResult
from pdmlens.steps.bundling import scoring_bundle
from pdmlens.steps.data_steps import ingest, prepare
from pdmlens.steps.evaluation import evaluate
from pdmlens.steps.explanation import explain
from pdmlens.steps.keys import ingest_key, prepare_key
from pdmlens.steps.profiling import signatures
from pdmlens.steps.risk import at_risk
from pdmlens.steps.training import train_forest, train_lstm

PARENT = "parent"
"""the run of the whole pipeline; the other runs are its children"""


@dataclass(frozen=True)
class RunSpec:
    """A child MLflow run: its name and the config parameters it logs (those starting with
    ``params``, plus the seed and the task)."""

    name: str
    params: str


CHILD_RUNS: tuple[RunSpec, ...] = (
    RunSpec(LSTM.child_run, "model.lstm."),
    RunSpec(FOREST.child_run, "model.forest."),
    RunSpec("signatures", "signatures."),
)


@dataclass(frozen=True)
class StepSpec:
    """One step of the pipeline."""

    name: str
    fn: Callable[..., StepResult]
    folder: str
    """its output folder inside the run's work folder (cached steps: inside the cache)"""
    inputs: tuple[str, ...] = ()
    """earlier steps whose folders ``fn`` takes, in its argument order"""
    run: str | None = None
    """the MLflow run its metrics and files are logged to (:data:`PARENT` or a child run's
    name); None: not logged (the data steps, recorded as dataset inputs instead)"""
    after: tuple[str, ...] = ()
    """earlier steps it waits for without reading them (keeps the flow's concurrency
    to the steps that were designed to run side by side)"""
    cache_key: Callable[..., str] | None = None
    """content key from the config and the inputs' keys: the flow caches such a step and
    runs it before the MLflow run opens (the data is known good first)"""
    retry_io: bool = False
    """the flow retries it on transient I/O failures (never on bad data)"""
    model: ModelKind | None = None
    """the model it trains: the flow logs and registers it"""
    progress: Literal["epochs", "windows"] | None = None
    """the progress it reports: per epoch (``callback=``) or per explained window
    (``progress=``)"""

    @property
    def task_name(self) -> str:
        """The Prefect task's name (``train-lstm``)."""
        return self.name.replace("_", "-")

    @property
    def progress_arg(self) -> str | None:
        """The keyword ``fn`` takes its progress callback by."""
        return {"epochs": "callback", "windows": "progress", None: None}[self.progress]


PIPELINE: tuple[StepSpec, ...] = (
    StepSpec("ingest", ingest, "ingest", cache_key=ingest_key, retry_io=True),
    StepSpec(
        "prepare",
        prepare,
        "prepare",
        inputs=("ingest",),
        cache_key=lambda cfg, ingest: prepare_key(cfg, ingest),
    ),
    StepSpec(
        LSTM.train_step,
        train_lstm,
        "lstm",
        inputs=("prepare",),
        run=LSTM.child_run,
        model=LSTM,
        progress="epochs",
    ),
    StepSpec(
        FOREST.train_step,
        train_forest,
        "forest",
        inputs=("prepare",),
        run=FOREST.child_run,
        model=FOREST,
    ),
    StepSpec(
        "evaluate",
        evaluate,
        "evaluate",
        inputs=("prepare", LSTM.train_step, FOREST.train_step),
        run=PARENT,
    ),
    StepSpec(
        "explain",
        explain,
        "explain",
        inputs=("prepare", LSTM.train_step, FOREST.train_step),
        run=PARENT,
        after=("evaluate",),
        progress="windows",
    ),
    StepSpec(
        "signatures",
        signatures,
        "signatures",
        inputs=("prepare", LSTM.train_step),
        run="signatures",
        after=("evaluate",),
    ),
    StepSpec(
        "bundle",
        scoring_bundle,
        "bundle",
        inputs=("prepare", LSTM.train_step, FOREST.train_step),
        run=PARENT,
        after=("evaluate",),
    ),
    StepSpec(
        "at_risk",
        at_risk,
        "at_risk",
        inputs=("ingest", "prepare", "evaluate", "bundle"),
        run=PARENT,
    ),
)
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in PIPELINE)
BUNDLE_STEP = "bundle"
"""the step whose folder (the scoring bundle) the flow logs as each trained model"""

LOG_AFTER: tuple[str, ...] = ("evaluate",)
"""the flow logs results and models to MLflow once these steps are done: the models'
scores are never computed beside the logging's own model loading and inference"""


def step(name: str) -> StepSpec:
    """The step called ``name``."""
    for spec in PIPELINE:
        if spec.name == name:
            return spec
    raise KeyError(f"no step {name!r}; the steps are {STEP_NAMES}")


def call_step(
    spec: StepSpec,
    cfg: RunConfig,
    inputs: Mapping[str, StepResult],
    out_dir: str | Path,
    **extra: Any,
) -> StepResult:
    """Run one step on the results of its inputs (``inputs`` may hold more)."""
    return spec.fn(cfg, *(inputs[name].dir for name in spec.inputs), out_dir, **extra)


def run_steps(
    cfg: RunConfig,
    work_dir: str | Path,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    on_step: Callable[[StepSpec, StepResult, float], None] | None = None,
    until: str | None = None,
) -> dict[str, StepResult]:
    """Every step of :data:`PIPELINE` in order in this process, each writing
    ``<work_dir>/<spec.folder>``; returns the results by step name. ``extra``: keyword
    arguments per step name (e.g. ``{"train_lstm": {"callback": f}}``); ``on_step``: called
    with each step, its result and its wall seconds; ``until``: stop after that step."""
    import time

    if until is not None:
        step(until)  # a KeyError for an unknown name, before any work
    results: dict[str, StepResult] = {}
    for spec in PIPELINE:
        t0 = time.perf_counter()
        kwargs = dict((extra or {}).get(spec.name, {}))
        results[spec.name] = call_step(spec, cfg, results, Path(work_dir) / spec.folder, **kwargs)
        if on_step is not None:
            on_step(spec, results[spec.name], time.perf_counter() - t0)
        if spec.name == until:
            break
    return results
