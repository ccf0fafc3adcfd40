"""``pdmlens serve`` against the local Prefect server it starts, and ``pdmlens ui``.

Each slow test starts the real command in a subprocess (its own PREFECT_HOME, a free port,
the tiny config), stops it with SIGTERM to the command's own process only (as ``kill`` or
systemd would), and then checks what is left: no process of its tree, no flow run left
active in the Prefect database, no MLflow run left RUNNING, the schedule paused, one Prefect
server started in all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipelines.score_flow import SCORE_DEPLOYMENT
from pipelines.score_flow import SCORE_FLOW_NAME as SCORE_FLOW
from tests.servers import free_port
from tests.test_pipeline import tiny_args

CRON = "0 2 * * *"
SCORE_CRON = "0 * * * *"
ACTIVE = ("PENDING", "RUNNING", "CANCELLING")
EXE = Path(sys.executable).parent / "pdmlens"
QUICK = ("model.lstm.epochs=1", "model.lstm.refit=false")
"""on top of the tiny config: one LSTM epoch, no refit (a run takes tens of seconds)."""


class Tree:
    """Every process that was ever seen in ``pid``'s tree (sampled from a thread), with
    its command line; ``psutil.Process`` objects, so a reused pid is not mistaken."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, tuple[psutil.Process, str]] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            if p.pid not in self.seen:
                try:
                    self.seen[p.pid] = (p, " ".join(p.cmdline()))
                except psutil.Error:
                    continue

    def _watch(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(0.3)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def alive(self, within: float = 10.0) -> list[str]:
        """The seen processes still running after waiting up to ``within`` s."""
        procs = [p for p, _ in self.seen.values()]
        _, alive = psutil.wait_procs(procs, timeout=within)
        return [f"{p.pid}: {self.seen[p.pid][1][:120]}" for p in alive]

    def prefect_servers(self) -> list[str]:
        return [
            cmd
            for _, cmd in self.seen.values()
            if ("server" in cmd and "start" in cmd and "prefect" in cmd)
            or "uvicorn" in cmd
            or "prefect.server" in cmd
        ]


class Served:
    """``pdmlens serve`` in a subprocess, with its process tree watched."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.home = root / "prefect"
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        self.log_path = root / "serve.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [str(EXE), "serve", "--port", str(self.port), *args, *tiny_args(root, *QUICK)],
            env=env,
            cwd=root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.tree = Tree(self.proc.pid)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"pdmlens serve exited ({self.proc.returncode}) before {what}:\n{self.log()}"
                )
            try:
                value = predicate()
            except Exception:
                value = None
            if value:
                return value
            time.sleep(1.0)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def flow_runs(self) -> list[dict[str, Any]]:
        """Every flow run of the deployment, from the Prefect database."""
        with sqlite3.connect(self.home / "prefect.db", timeout=30) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT r.id, r.state_type, r.state_name, r.run_count, r.start_time, r.end_time "
                "FROM flow_run r JOIN deployment d ON r.deployment_id = d.id "
                "WHERE d.name = 'scheduled' ORDER BY r.start_time"
            ).fetchall()
        return [dict(r) for r in rows]

    def paused(self) -> bool:
        """Every deployment serve served is paused."""
        with sqlite3.connect(self.home / "prefect.db", timeout=30) as db:
            rows = db.execute("SELECT paused FROM deployment").fetchall()
        return bool(rows) and all(bool(p) for (p,) in rows)

    def stop(self, timeout: float) -> float:
        """SIGTERM to serve's own process; returns the seconds until it exited."""
        self.tree.sample()
        t0 = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not exit within {timeout} s:\n{self.log()}") from None
        return time.monotonic() - t0

    def close(self) -> None:
        """Whatever the test's outcome: nothing of the tree stays running."""
        self.tree.stop()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for p, _ in self.tree.seen.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
        self._log.close()

    def assert_stopped_cleanly(self) -> None:
        """After the stop: no process, no active flow run, no RUNNING MLflow run, schedule
        paused, one Prefect server in all, no traceback in the log."""
        assert self.tree.alive() == []
        runs = self.flow_runs()
        assert [r for r in runs if r["state_type"] in ACTIVE] == []
        assert self.paused()
        with sqlite3.connect(self.root / "mlflow.db") as db:
            statuses = [s for (s,) in db.execute("SELECT status FROM runs")]
        assert "RUNNING" not in statuses
        assert len(self.tree.prefect_servers()) == 1, self.tree.prefect_servers()
        text = self.log()
        assert "ephemeral" not in text
        assert "Traceback" not in text
        assert "was never awaited" not in text


def mlflow_statuses(root: Path) -> list[str]:
    if not (root / "mlflow.db").is_file():
        return []
    with sqlite3.connect(root / "mlflow.db", timeout=30) as db:
        try:
            return [s for (s,) in db.execute("SELECT status FROM runs")]
        except sqlite3.OperationalError:  # tables not created yet
            return []


@pytest.mark.slow
@pytest.mark.integration
def test_serve_runs_a_triggered_run_and_stops_cleanly_while_idle(tmp_path: Path) -> None:
    """Training on one cron and scoring on another, served by one server; a triggered
    training run reaches MLflow; a stop while idle pauses both schedules."""
    served = Served(tmp_path, "--cron", CRON, "--score-cron", SCORE_CRON)
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with (
            temporary_settings(updates={PREFECT_API_URL: served.api}),
            get_client(sync_client=True) as client,
        ):
            dep = served.wait_for(
                lambda: client.read_deployment_by_name("pdmlens/scheduled"), 240, "the deployment"
            )
            assert [s.schedule.cron for s in dep.schedules] == [CRON]
            assert dep.global_concurrency_limit is not None
            assert dep.global_concurrency_limit.limit == 1
            assert dep.concurrency_options.collision_strategy.value == "CANCEL_NEW"
            scoring = served.wait_for(
                lambda: client.read_deployment_by_name(f"{SCORE_FLOW}/{SCORE_DEPLOYMENT}"),
                60,
                "the scoring deployment",
            )
            assert [s.schedule.cron for s in scoring.schedules] == [SCORE_CRON]
            assert scoring.parameters["config"]["data"]["source"] == "simulated"
            triggered = run_deployment("pdmlens/scheduled", timeout=0)

            def done():
                run = client.read_flow_run(triggered.id)
                return run if run.state and run.state.is_final() else None

            final = served.wait_for(done, 400, "the triggered run to finish")
            assert final.state.is_completed(), final.state
            artifacts = client.read_artifacts()
        text = served.log()
        assert f"started one at http://127.0.0.1:{served.port}" in text
        assert "`pdmlens ui`" in text
        summary = [a for a in artifacts if a.key == "pdmlens-run-summary"]
        assert summary and "pdmlens ui" in str(summary[0].data)
        from mlflow import MlflowClient

        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        mlflow = MlflowClient(tracking_uri=uri)
        runs = mlflow.search_runs(
            [mlflow.get_experiment_by_name("pdmlens-simulated").experiment_id],
            filter_string=f"tags.`pdmlens.flow_run_id` = '{triggered.id}'",
        )
        assert runs and {r.info.status for r in runs} == {"FINISHED"}

        seconds = served.stop(timeout=60)
        served.assert_stopped_cleanly()
        assert seconds < 30
        assert [r["state_type"] for r in served.flow_runs()] == ["COMPLETED"]
    finally:
        served.close()


@pytest.mark.slow
@pytest.mark.integration
def test_serve_stopped_mid_run_cancels_the_run_and_leaves_nothing(tmp_path: Path) -> None:
    grace = 10
    served = Served(tmp_path, "--cron", "* * * * *", "--run-now", "--grace", str(grace))
    try:
        served.wait_for(lambda: "RUNNING" in mlflow_statuses(tmp_path), 300, "an MLflow run")
        seconds = served.stop(timeout=grace + 60)
        served.assert_stopped_cleanly()
        runs = served.flow_runs()
        assert runs and {r["state_type"] for r in runs} <= {"CANCELLED", "COMPLETED"}
        assert "CANCELLED" in {r["state_type"] for r in runs}
        assert "KILLED" in mlflow_statuses(tmp_path)
        assert seconds < grace + 20, seconds
    finally:
        served.close()


@pytest.mark.slow
@pytest.mark.integration
def test_serve_skips_a_run_due_while_one_runs(tmp_path: Path) -> None:
    """A schedule (every 5 s) much shorter than a run: runs never overlap, the ones due
    meanwhile end CANCELLED without starting."""
    served = Served(tmp_path, "--every", "5", "--grace", "5")
    try:

        def one_done_and_skips() -> bool:
            runs = served.flow_runs()
            skipped = [r for r in runs if r["run_count"] == 0 and r["state_type"] == "CANCELLED"]
            return "COMPLETED" in {r["state_type"] for r in runs} and len(skipped) >= 2

        served.wait_for(one_done_and_skips, 400, "a completed run and skipped ones")
        served.stop(timeout=60)
        served.assert_stopped_cleanly()
        ran = [r for r in served.flow_runs() if r["run_count"] > 0]
        skipped = [r for r in served.flow_runs() if r["run_count"] == 0]
        assert {r["state_type"] for r in skipped} == {"CANCELLED"}
        assert len(skipped) >= 2
        for before, after in zip(ran, ran[1:], strict=False):
            assert before["end_time"] is not None
            assert before["end_time"] <= after["start_time"], (before, after)
    finally:
        served.close()


@pytest.mark.slow
def test_ui_stops_with_its_workers_on_sigterm(tmp_path: Path) -> None:
    from pdmlens.config import TrackingConfig
    from pdmlens.tracking import Tracker

    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = Tracker(TrackingConfig(uri=uri)).ensure_experiment("pdmlens-simulated")
    proc = subprocess.Popen(
        [str(EXE), "ui", "--port", str(port), "--set", f"tracking.uri={uri}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tree = Tree(proc.pid)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow UI did not answer"
            time.sleep(0.5)
        tree.sample()
        assert len(tree.seen) >= 2  # pdmlens and the MLflow server (and its workers)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert f"http://127.0.0.1:{port}/#/experiments" in out
        # the runs list itself, not the experiment's Traces tab
        assert f"pdmlens-simulated: http://127.0.0.1:{port}/#/experiments/{exp_id}/runs" in out
        assert "Traceback" not in out
        tree.stop()
        assert tree.alive() == []
    finally:
        tree.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p, _ in tree.seen.values():
            with contextlib.suppress(psutil.Error):
                p.kill()


@pytest.mark.slow
def test_ui_killed_outright_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL to ``pdmlens ui``: no stop is forwarded, yet the MLflow server (its own
    session) and its workers end: the command's watchdog ends them."""
    from pdmlens.processes import WATCH_INTERVAL

    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(
        [str(EXE), "ui", "--port", str(port), "--set", f"tracking.uri={uri}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tree = Tree(proc.pid)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the MLflow UI did not answer"
            time.sleep(0.5)
        time.sleep(4 * WATCH_INTERVAL)  # the watchdog has seen the server's workers
        tree.sample()
        assert any("pdmlens.processes" in cmd for _, cmd in tree.seen.values())
        assert len(tree.seen) >= 3  # pdmlens, its watchdog, the MLflow server
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        tree.stop()
        assert tree.alive(within=30) == []
    finally:
        tree.stop()
        for p, _ in tree.seen.values():
            with contextlib.suppress(psutil.Error):
                p.kill()


def test_the_cli_and_the_serve_module_import_no_prefect() -> None:
    """serve must set PREFECT_API_URL before Prefect is first imported (it reads its
    settings once): neither the command line nor pipelines.run may import it early."""
    code = (
        "import sys, pdmlens.cli, pipelines.run; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'mlflow')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_one_run_at_a_time_skip_or_wait() -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from pipelines.serving import concurrency

    assert concurrency("skip").limit == 1
    assert concurrency("skip").collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    assert concurrency("wait").collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
    with pytest.raises(ValueError, match="overlap"):
        concurrency("pile-up")  # type: ignore[arg-type]


def test_serve_needs_exactly_one_schedule() -> None:
    from typer.testing import CliRunner

    from pdmlens.cli import app

    for args in ([], ["--cron", CRON, "--every", "60"]):
        result = CliRunner().invoke(app, ["serve", *args])
        assert result.exit_code == 2
        assert "give one of --cron and --every" in result.output


def test_the_artifact_says_how_to_open_the_mlflow_link() -> None:
    from pdmlens.report.run_report import markdown

    s = {"dataset": "FD001", "lstm": {"rmse": 12.0}, "forest": {"rmse": 13.0}}
    url = "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    local = markdown({**s, "tracking_uri": "sqlite:////data/mlflow.db"}, url)
    assert f"[{url}]({url})" in local
    assert "`pdmlens ui --set tracking.uri=sqlite:////data/mlflow.db`" in local
    remote = markdown({**s, "tracking_uri": "http://mlflow:5000"}, "http://mlflow:5000/#/x")
    assert "pdmlens ui" not in remote
    assert "[http://mlflow:5000/#/x](http://mlflow:5000/#/x)" in remote
