"""The pipeline against a real MLflow tracking server on PostgreSQL (tests/servers.py):
``mlflow server`` with a throw-away PostgreSQL cluster as its backend and registry store
and a served artifact store, all on 127.0.0.1, started and stopped by the module fixture.

One run of the real command (``pdmlens run --json``, ``tracking.uri=http://...``) is
inspected through the server: parent and nested child runs, artifacts served by the
server, both registered models with their champion alias, and the LSTM champion loaded
from ``models:/...@champion`` predicting on its own input example as the trained model
does. (Eight runs queued at once on one Prefect server against such a server:
benchmarks/scale.py, part (c), with the same harness; too slow for the suite.)

Without PostgreSQL installed the module skips, except under CI (``CI=true``) where it
fails: CI must install it (.ci/run does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pdmlens.results import EXAMPLE_FILE, LSTM_FILE
from tests.servers import mlflow_on_postgres, postgres_bin
from tests.tiny import TINY_RUN

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LSTM, FOREST = "pdmlens-lstm-simulated", "pdmlens-forest-simulated"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """``http://127.0.0.1:<port>``: mlflow server on PostgreSQL, for this module."""
    if postgres_bin() is None:
        msg = "PostgreSQL is not installed (apt-get install postgresql; .ci/run does)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    with mlflow_on_postgres(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture(scope="module")
def run(server: str, root: Path) -> dict:
    sets = [
        *TINY_RUN,
        f"tracking.uri={server}",
        f"pipeline.work_dir={root / 'runs'}",
        f"pipeline.cache_dir={root / 'cache'}",
    ]
    exe = Path(sys.executable).parent / "pdmlens"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [str(exe), "run", "--json", *[a for s in sets for a in ("--set", s)]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def client(server: str) -> MlflowClient:
    return MlflowClient(tracking_uri=server, registry_uri=server)


def test_runs_and_nested_children_are_on_the_server(
    run: dict, client: MlflowClient, server: str
) -> None:
    assert run["tracking_uri"] == server
    parent = client.get_run(run["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:/")  # served by the server
    exp = client.get_experiment_by_name("pdmlens-simulated")
    assert parent.info.experiment_id == exp.experiment_id
    kids = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    by_name = {r.data.tags["mlflow.runName"]: r for r in kids}
    assert set(by_name) == {"lstm", "random_forest", "signatures"}
    assert {r.info.status for r in kids} == {"FINISHED"}
    assert {k: r.info.run_id for k, r in by_name.items()} == run["children"]
    assert by_name["lstm"].data.metrics["test_rmse"] == pytest.approx(run["lstm"]["rmse"])
    assert len(client.get_metric_history(by_name["lstm"].info.run_id, "train_loss")) == 2
    # an artifact written through the server comes back through it
    page = Path(client.download_artifacts(parent.info.run_id, "report.html")).read_text()
    assert "pdmlens run on simulated" in page


def test_registered_models_and_champion_alias(run: dict, client: MlflowClient) -> None:
    regs = {r["name"]: r for r in run["registered"]}
    assert set(regs) == {LSTM, FOREST}
    assert all(r["champion"] and r["version"] == "1" for r in regs.values())
    for name, child in ((LSTM, "lstm"), (FOREST, "random_forest")):
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.version == "1"
        assert champion.run_id == run["children"][child]


def test_champion_loads_from_the_server_and_predicts_as_trained(run: dict, server: str) -> None:
    import mlflow

    from pdmlens.models.lstm import LSTMEstimator

    mlflow.set_tracking_uri(server)
    mlflow.set_registry_uri(server)
    model = mlflow.pyfunc.load_model(f"models:/{LSTM}@champion")
    lstm_dir = Path(run["work_dir"]) / "lstm"
    example = np.load(lstm_dir / EXAMPLE_FILE)  # windows [N, W, F], as the step saved them
    assert example.ndim == 3 and len(example) > 0
    trained = LSTMEstimator.load(lstm_dir / LSTM_FILE)
    pred = np.asarray(model.predict(example)).reshape(-1)
    np.testing.assert_array_equal(pred, trained.predict(example))
