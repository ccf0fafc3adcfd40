"""Child processes that never outlive the command that started them.

A long-running command (``pdmlens ui``, ``pdmlens serve``) starts servers that spawn
workers of their own. Started in their own process group (session), they are out of reach
of a terminal's Ctrl-C, so the command forwards the stop itself: SIGTERM to the whole group,
SIGKILL to what is left after a bounded grace period. POSIX only (the servers run on Linux
and macOS).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from types import FrameType

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member we may not signal still exists
        return True
    return True


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group led by ``proc``, SIGKILL after ``grace`` seconds to
    whatever of the group is left; reaps ``proc``. Returns once the group is empty (or
    after a further 5 s)."""
    pgid = proc.pid
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(pgid):
            return
        time.sleep(0.1)
    _killpg(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5.0
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every living descendant of ``pid`` (default: this process)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def end_processes(procs: Iterable[psutil.Process], grace: float = 0.0) -> list[psutil.Process]:
    """Terminate ``procs`` (SIGKILL at once when ``grace`` is 0, else SIGTERM and SIGKILL
    after ``grace`` s); returns those still alive afterwards (normally none)."""
    procs = list(procs)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate() if grace > 0 else p.kill()
    _, alive = psutil.wait_procs(procs, timeout=grace if grace > 0 else 5.0)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _, alive = psutil.wait_procs(alive, timeout=5.0)
    return alive


def run_forwarding_stops(
    cmd: Sequence[str], grace: float = 10.0, env: Mapping[str, str] | None = None
) -> int:
    """Run ``cmd`` in its own process group until it exits; SIGINT or SIGTERM to this
    process stops the whole group (SIGTERM, then SIGKILL after ``grace`` s). Returns the
    command's exit code, or 0 when it was stopped by such a signal."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, env=dict(env) if env else None)
    stopped: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        while proc.poll() is None and not stopped:
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_group(proc, grace)
    return 0 if stopped else int(proc.returncode)
