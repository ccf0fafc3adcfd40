"""``pdmlens run`` killed outright (SIGKILL) during training, end to end.

What must survive: no process the command started lives on (Prefect's temporary server
included: the command's watchdog ends it); the next run completes and reuses the cached
ingest and prepare folders; the killed run's MLflow parent and children do not stay
RUNNING (the next run marks them KILLED: their owner process is gone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from tests.servers import OutputLines
from tests.tiny import TINY_RUN

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TIMEOUT = 300  # seconds any one wait may take on a busy machine (never reached normally)
PDMLENS = str(Path(sys.executable).parent / "pdmlens")


def _sets(root: Path, *extra: str) -> list[str]:
    sets = [
        *TINY_RUN,
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"pipeline.work_dir={root / 'runs'}",
        f"pipeline.cache_dir={root / 'cache'}",
        *extra,
    ]
    return [a for s in sets for a in ("--set", s)]


def _env(root: Path) -> dict[str, str]:
    repo = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(repo / "src"), str(repo), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PREFECT_HOME": str(root / "prefect")}


def test_a_run_killed_during_training_leaves_nothing_running(tmp_path: Path) -> None:
    root = tmp_path
    # many epochs: the run is still training when it is killed after the first one
    proc = subprocess.Popen(
        [PDMLENS, "run", *_sets(root, "model.lstm.epochs=500")],
        cwd=root,
        env=_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = OutputLines(proc.stderr, TIMEOUT)
    started: list[psutil.Process] = []
    try:
        out.wait_for("LSTM epoch 1/500")
        started = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [" ".join(p.cmdline()) for p in started]
        assert any("uvicorn" in c and "prefect" in c for c in cmdlines), cmdlines
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        _, alive = psutil.wait_procs(started, timeout=60)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in started:  # never leak a process from a failed assertion
            if p.is_running():
                p.kill()

    again = subprocess.run(
        [PDMLENS, "run", "--json", *_sets(root)],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert summary["cached"] == {"ingest": True, "prepare": True}

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(summary["experiment"])
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    mine = {summary["mlflow_run_id"], *summary["children"].values()}
    status = {r.info.run_id: r.info.status for r in runs}
    assert {status[r] for r in mine} == {"FINISHED"}
    killed = [r for r in runs if r.info.run_id not in mine]
    names = sorted(r.data.tags["mlflow.runName"] for r in killed)
    assert len(killed) == 4 and {"lstm", "random_forest", "signatures"} < set(names), names
    assert {r.info.status for r in killed} == {"KILLED"}
    assert all(r.info.end_time is not None for r in killed)
    assert all(f"owner process {proc.pid} " in r.data.tags["pdmlens.killed_reason"] for r in killed)
