"""Models in MLflow: the pyfunc wrapper around a pdmlens estimator, logging one as a
logged model of a run, and finding/loading a model by any of MLflow's URIs.

Models are logged as pyfunc models whose wrapper reloads the estimator's own save file, so
the LSTM accepts any window length; logging them does not touch MLflow's global tracking URI
(the model is built in a temporary folder and uploaded through the client).
"""

from __future__ import annotations

import importlib
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import Schema, TensorSpec

INPUT_EXAMPLE_ROWS = 2
LSTM_REQUIREMENTS = ("mlflow", "torch", "scikit-learn", "numpy", "pandas")
FOREST_REQUIREMENTS = ("mlflow", "scikit-learn", "joblib", "torch", "numpy", "pandas")


class EstimatorPyfunc(PythonModel):
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


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, None when not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def requirements(*packages: str) -> list[str]:
    """Pinned pip requirements (``name==version``) of the installed ``packages``."""
    out = []
    for name in packages:
        version = package_version(name)
        out.append(f"{name}=={version}" if version else name)
    return out


def log_estimator(
    client: MlflowClient,
    run_id: str,
    estimator: Any,
    input_example: np.ndarray,
    *,
    name: str,
    filename: str,
    any_length: bool,
    packages: tuple[str, ...],
) -> str:
    """Log ``estimator`` (``save``/``load``) as a pyfunc logged model of ``run_id``, taking
    float32 windows [N, W, F] (W free when ``any_length``); returns ``models:/<model_id>``.
    A failure while logging leaves the logged model FAILED, never READY."""
    x = np.ascontiguousarray(np.asarray(input_example, dtype=np.float32)[:INPUT_EXAMPLE_ROWS])
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
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
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
                    pip_requirements=requirements(*packages),
                )
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"


def model_location(client: MlflowClient, model_uri: str) -> str:
    """The artifact URI holding a model given as ``models:/<model_id>``,
    ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or ``runs:/<id>/<path>``;
    any other URI is returned as it is."""
    if model_uri.startswith("models:/"):
        ref = model_uri[len("models:/") :]
        if "@" in ref:
            mv = client.get_model_version_by_alias(*ref.split("@", 1))
        elif "/" in ref:
            mv = client.get_model_version(*ref.split("/", 1))
        else:
            return client.get_logged_model(ref).artifact_location
        if mv.model_id:
            return client.get_logged_model(mv.model_id).artifact_location
        if not mv.source:
            raise ValueError(f"{model_uri} has neither a logged model nor a source")
        return model_location(client, mv.source)
    if model_uri.startswith("runs:/"):
        run_id, _, path = model_uri[len("runs:/") :].partition("/")
        return f"{client.get_run(run_id).info.artifact_uri}/{path}"
    return model_uri


def load_model(client: MlflowClient, model_uri: str) -> Any:
    """``mlflow.pyfunc.load_model`` of ``model_uri`` resolved against ``client``'s store."""
    return mlflow.pyfunc.load_model(model_location(client, model_uri))


def is_logged_model_uri(uri: str) -> bool:
    """Whether ``uri`` is ``models:/<model_id>`` (a logged model, not a registry name)."""
    ref = uri[len("models:/") :] if uri.startswith("models:/") else None
    return ref is not None and "/" not in ref and "@" not in ref
