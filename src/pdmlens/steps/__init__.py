"""The pipeline's steps as plain functions: folders in, folders out, small results back.

Each step reads what earlier steps wrote (Parquet, saved models), writes its own outputs
into one folder and returns a :class:`~pdmlens.results.StepResult`: the metrics to log, the
figures (PNG) and tables (Parquet) it wrote, and a few headline values. Nothing here
imports Prefect or MLflow: ``pipelines/`` wraps these functions in tasks and the tracking
layer logs their results, so a notebook can run the same steps with neither.

The order and the inputs of the steps are defined once, in :mod:`pdmlens.steps.graph`
(:data:`PIPELINE`; :func:`run_steps` runs it): ingest -> prepare -> train LSTM and train
forest -> evaluate -> explain and signatures. ``ingest_key`` and ``prepare_key`` name the
content (input files and the config sections that shape the result), so a cache keyed by
them is reused exactly when the inputs are the same.

One module per concern: :mod:`.keys` (cache keys), :mod:`.cache` (cached folders, written
whole and verified before reuse), :mod:`.data_steps` (ingest, prepare), :mod:`.training`,
:mod:`.evaluation`, :mod:`.explanation`, :mod:`.profiling` (signatures).
"""

from __future__ import annotations

from pdmlens.results import EXAMPLE_FILE, OUTPUT_FILE, StepOutput, StepResult
from pdmlens.steps.common import EpochCallback, Progress
from pdmlens.steps.data_steps import dataset_name, ingest, load_fleets, prepare
from pdmlens.steps.evaluation import evaluate
from pdmlens.steps.explanation import explain
from pdmlens.steps.graph import PIPELINE, STEP_NAMES, StepSpec, call_step, run_steps, step
from pdmlens.steps.keys import file_digest, ingest_key, input_files, prepare_key
from pdmlens.steps.profiling import signatures
from pdmlens.steps.training import (
    load_example,
    load_models,
    refit_lstm,
    train_forest,
    train_lstm,
)
from pdmlens.task import LSTM_TARGET, eval_split

__all__ = [
    "EXAMPLE_FILE",
    "LSTM_TARGET",
    "OUTPUT_FILE",
    "PIPELINE",
    "STEP_NAMES",
    "EpochCallback",
    "Progress",
    "StepOutput",
    "StepResult",
    "StepSpec",
    "call_step",
    "dataset_name",
    "eval_split",
    "evaluate",
    "explain",
    "file_digest",
    "ingest",
    "ingest_key",
    "input_files",
    "load_example",
    "load_fleets",
    "load_models",
    "prepare",
    "prepare_key",
    "refit_lstm",
    "run_steps",
    "signatures",
    "step",
    "train_forest",
    "train_lstm",
]
