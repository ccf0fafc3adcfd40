"""pdmlens.processes: a command run in its own process group goes away, workers and all,
when its parent is told to stop, even when it ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

# a "server" that starts a worker, writes both pids, and waits; IGNORE: it ignores SIGTERM
SERVER = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {worker.pid}")
time.sleep(120)
"""
PARENT = """
import sys
from pdmlens.processes import run_forwarding_stops
code = run_forwarding_stops([sys.executable, "-c", *sys.argv[1:]], grace=1.0)
print("exit", code)
"""


def _run(tmp_path: Path, mode: str) -> None:
    pids_file = tmp_path / "pids"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, SERVER, str(pids_file), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (pids_file.is_file() and len(pids_file.read_text().split()) == 2):
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        procs = [psutil.Process(int(p)) for p in pids_file.read_text().split()]
        assert all(p.is_running() for p in procs)
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=30)
        assert parent.returncode == 0 and "exit 0" in out
        _, alive = psutil.wait_procs(procs, timeout=5)
        assert alive == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_sigterm_to_the_parent_ends_the_server_and_its_worker(tmp_path: Path) -> None:
    _run(tmp_path, "obey")


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    _run(tmp_path, "ignore")


# a "command" that starts its watchdog and a worker (in a session of its own, as Prefect's
# temporary server is not but a Dask worker may be), writes the pids, and waits
WATCHED = """
import os, subprocess, sys, time
from pdmlens.processes import WATCH_INTERVAL, start_watchdog
dog = start_watchdog()
worker = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
)
time.sleep(4 * WATCH_INTERVAL)  # the watchdog has noted the worker
open(sys.argv[1], "w").write(f"{dog.pid} {worker.pid}")
time.sleep(120)
"""


def test_a_command_killed_outright_leaves_no_process_behind(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    command = subprocess.Popen(
        [sys.executable, "-c", WATCHED, str(pids_file)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    procs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not (pids_file.is_file() and len(pids_file.read_text().split()) == 2):
            assert time.monotonic() < deadline and command.poll() is None
            time.sleep(0.1)
        procs = [psutil.Process(int(p)) for p in pids_file.read_text().split()]
        command.send_signal(signal.SIGKILL)  # no handler runs: only the watchdog can act
        command.wait(timeout=30)
        _, alive = psutil.wait_procs(procs, timeout=30)  # the worker, then the watchdog
        assert alive == []
    finally:
        if command.poll() is None:
            command.kill()
        for p in procs:  # never leak a process from a failed assertion
            if p.is_running():
                p.kill()
