"""Child processes that never outlive the command that started them.

A long-running command (``pdmlens ui``, ``pdmlens serve``) starts servers that spawn
workers of their own. Started in their own process group (session), they are out of reach
of a terminal's Ctrl-C, so the command forwards the stop itself: SIGTERM to the whole group,
SIGKILL to what is left after a bounded grace period. POSIX only (the servers run on Linux
and macOS).

A command killed outright (SIGKILL, the OOM killer) forwards nothing, and what it started
(Prefect's temporary server, which Prefect starts as a plain subprocess; Dask workers)
would live on, adopted by init. :func:`start_watchdog` guards against that: a small
process of its own session notes the command's descendants every
:data:`WATCH_INTERVAL` seconds and, once the command is gone however it ended, ends every
one still alive (SIGTERM, SIGKILL after a grace period). A process is covered once it has
lived one interval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from types import FrameType

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def pid_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


# ----------------------------------------------------------------------------- watchdog

WATCH_INTERVAL = 0.5
"""seconds between two looks at the watched command's descendants"""
WATCHDOG_GRACE = 5.0
"""seconds a leftover process gets between SIGTERM and SIGKILL"""


def start_watchdog(pid: int | None = None) -> subprocess.Popen[bytes]:
    """Start the watchdog of process ``pid`` (default: this one): once ``pid`` has ended,
    however it ended, every descendant it had is ended too. The watchdog runs in its own
    session (a terminal's Ctrl-C does not stop it) and exits after its cleanup."""
    target = os.getpid() if pid is None else pid
    return subprocess.Popen(
        [sys.executable, "-m", "pdmlens.processes", str(target)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def watch(pid: int, interval: float = WATCH_INTERVAL, grace: float = WATCHDOG_GRACE) -> int:
    """The watchdog's loop: note ``pid``'s descendants (with their start times, so a
    recycled pid is never taken for one) every ``interval`` s until ``pid`` is gone, then
    end those still alive and their own descendants. Returns how many it ended."""
    me = os.getpid()
    known: dict[int, float] = {}
    try:
        target = psutil.Process(pid)
        start = target.create_time()
    except psutil.NoSuchProcess:
        return 0
    while _alive(target, start):
        for p in descendants(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.pid != me:
                    known.setdefault(p.pid, p.create_time())
        for gone in [q for q in known if not psutil.pid_exists(q)]:
            del known[gone]
        time.sleep(interval)
    left: dict[int, psutil.Process] = {}
    for q, created in known.items():
        try:
            proc = psutil.Process(q)
            if proc.create_time() != created:
                continue  # the pid was recycled: not ours
            for p in (proc, *proc.children(recursive=True)):
                if p.pid != me:
                    left[p.pid] = p
        except psutil.NoSuchProcess:
            continue
    if left:
        print(
            f"pdmlens: process {pid} ended; ending {len(left)} process(es) it left behind: "
            + ", ".join(str(q) for q in sorted(left)),
            file=sys.stderr,
            flush=True,
        )
        end_processes(left.values(), grace=grace)
    return len(left)


def _alive(proc: psutil.Process, start: float) -> bool:
    """Whether ``proc`` (started at ``start``) still runs (a zombie has ended)."""
    try:
        return proc.create_time() == start and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":  # the watchdog: python -m pdmlens.processes <pid>
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]))
