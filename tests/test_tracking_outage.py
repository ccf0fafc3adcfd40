"""The tracking server dies during training and comes back, end to end: a real
``mlflow server`` (SQLite backend, served artifacts) on a loopback port, killed (SIGKILL)
while ``pdmlens run`` trains, restarted on the same port once the run has given up.

What must hold: the run's MLflow calls fail after bounded retries (the test bounds them
lower still, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=1``), the run fails with exit code 1, and it
waits for the store (``tracking.end_patience``) so that its parent and children end
FAILED once the server is back, not RUNNING; no model version is registered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.servers import OutputLines, _stop_group, free_port, start_mlflow_server
from tests.tiny import TINY_RUN

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TIMEOUT = 300  # seconds any one wait may take on a busy machine (never reached normally)


def test_a_server_killed_mid_run_and_back_leaves_the_runs_failed_and_nothing_registered(
    tmp_path: Path,
) -> None:
    port = free_port()
    backend = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    (tmp_path / "server").mkdir()
    artifacts = tmp_path / "server" / "artifacts"
    server = start_mlflow_server(backend, artifacts, port, workers=1)
    uri = f"http://127.0.0.1:{port}"
    sets = [
        *TINY_RUN,
        "model.lstm.epochs=500",  # still training when the server is killed
        f"tracking.uri={uri}",
        f"pipeline.work_dir={tmp_path / 'runs'}",
        f"pipeline.cache_dir={tmp_path / 'cache'}",
    ]
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo / "src"), str(repo)]),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",  # the user's choice is kept: a quick test
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "pdmlens"), "run"]
        + [a for s in sets for a in ("--set", s)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = OutputLines(proc.stderr, TIMEOUT)
    try:
        out.wait_for("LSTM epoch 1/500")
        os.killpg(server.pid, signal.SIGKILL)  # the server crashes
        server.wait(timeout=TIMEOUT)
        # the run gives up on its calls, then waits for the store to mark its runs
        out.wait_for("still trying to mark run")
        server = start_mlflow_server(backend, artifacts, port, workers=1)
        proc.wait(timeout=TIMEOUT)
        seen = out.rest()
        assert proc.returncode == 1, out.tail()
        error = [line for line in seen if line.startswith("error: the run failed")]
        assert len(error) == 1 and "marked FAILED and no model was registered" in error[0]

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = client.get_experiment_by_name("pdmlens-simulated")
        assert exp is not None
        runs = client.search_runs([exp.experiment_id])
        names = sorted(r.data.tags["mlflow.runName"] for r in runs)
        assert len(runs) == 4 and {"lstm", "random_forest", "signatures"} < set(names), names
        assert {r.info.status for r in runs} == {"FAILED"}
        assert client.search_model_versions() == []
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop_group(server)
