"""``pdmlens serve`` against a local Prefect server: the deployment exists with its cron
schedule, and a run triggered from the server completes and is recorded in MLflow."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_pipeline import tiny_args

pytestmark = pytest.mark.slow
CRON = "0 2 * * *"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pdmlens serve exited ({proc.returncode}) before {what}")
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_registers_the_cron_deployment_and_runs_it(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    exe = Path(sys.executable).parent / "pdmlens"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(exe), "serve", "--cron", CRON, "--port", str(port), *tiny_args(tmp_path)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with (
            temporary_settings(updates={PREFECT_API_URL: api}),
            get_client(sync_client=True) as client,
        ):
            dep = wait_for(
                lambda: client.read_deployment_by_name("pdmlens/scheduled"),
                240,
                "the deployment",
                proc,
            )
            assert [s.schedule.cron for s in dep.schedules] == [CRON]
            triggered = run_deployment("pdmlens/scheduled", timeout=0)

            def done():
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
                )
                mine = [r for r in runs if r.id == triggered.id]
                if mine and mine[0].state and mine[0].state.is_final():
                    return mine[0]
                return None

            final = wait_for(done, 400, "the triggered run to finish", proc)
            assert final.state.is_completed(), final.state
        text = (tmp_path / "serve.log").read_text()
        assert f"started one at http://127.0.0.1:{port}" in text
        from mlflow import MlflowClient

        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        runs = MlflowClient(tracking_uri=uri).search_runs(
            [
                MlflowClient(tracking_uri=uri)
                .get_experiment_by_name("pdmlens-simulated")
                .experiment_id
            ],
            filter_string=f"tags.`pdmlens.flow_run_id` = '{triggered.id}'",
        )
        assert runs and {r.info.status for r in runs} == {"FINISHED"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
