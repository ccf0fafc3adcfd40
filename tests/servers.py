"""Real servers on 127.0.0.1 for the integration tests and benchmarks/scale.py: PostgreSQL
on a temporary data folder, ``mlflow server`` on it, a Prefect server, and a flow served as
a deployment. Every one is a context manager that starts its process(es) in their own
session, waits until they answer, and on exit stops the whole process group and removes
its folder: nothing is left running, whatever happens inside the ``with``.

No system service is used: PostgreSQL runs from Debian's binaries
(``/usr/lib/postgresql/<version>/bin``; ``initdb`` refuses root, so as root the cluster is
created and run as the ``postgres`` user on a folder that user owns), on a free port
(found by binding port 0) with its socket in the same temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 180.0


class ServerError(RuntimeError):
    """A server did not start; the message carries the tail of its log."""


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it: bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OutputLines:
    """The lines a subprocess writes to a text pipe, read by a daemon thread (so a test can
    wait for one line with a timeout while the process runs); ``seen`` keeps them all."""

    def __init__(self, stream: Any, timeout: float = 300.0) -> None:
        self.timeout = timeout
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str) -> None:
        """Until a line containing ``text`` was written; fails if the stream ends first."""
        while not any(text in line for line in self.seen):
            line = self._lines.get(timeout=self.timeout)
            assert line is not None, f"output ended before {text!r}:\n" + self.tail()
            self.seen.append(line)

    def rest(self) -> list[str]:
        """Every line up to the end of the stream (the process has ended)."""
        while (line := self._lines.get(timeout=self.timeout)) is not None:
            self.seen.append(line)
        return self.seen

    def tail(self, n: int = 40) -> str:
        return "".join(self.seen[-n:])


def postgres_bin() -> Path | None:
    """Folder of PostgreSQL's server binaries (``initdb``, ``pg_ctl``), newest version
    first; None when PostgreSQL is not installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if found:
        return found[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _env(**extra: str) -> dict[str, str]:
    """This process's environment with the worktree importable (src and root)."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra)
    return env


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the process's session (it and every child), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # children may outlive a leader that exited on SIGTERM
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def _wait_http(proc: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode}:\n{_tail(log)}")
        if _http_ok(url):
            return
        time.sleep(0.5)
    raise ServerError(f"{what} did not answer {url} within {STARTUP_TIMEOUT:.0f} s:\n{_tail(log)}")


# ----------------------------------------------------------------------------- PostgreSQL
@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with ``database`` created; yields its
    SQLAlchemy URI ``postgresql://postgres@127.0.0.1:<port>/<database>`` (trust auth)."""
    bindir = postgres_bin()
    if bindir is None:
        raise ServerError("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    # not under pytest's tmp_path: its parents are 0700 root, which the postgres user
    # cannot enter
    top = Path(tempfile.mkdtemp(prefix="pdmlens-pg-"))
    top.chmod(0o755)
    data, sock, log = top / "data", top / "sock", top / "postgres.log"
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    for d in (data, sock):
        d.mkdir()
        if as_root:
            shutil.chown(d, "postgres", "postgres")
    log.touch()
    if as_root:
        shutil.chown(log, "postgres", "postgres")
    port = free_port()
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        try:
            subprocess.run(
                [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                check=True,
                capture_output=True,
                timeout=STARTUP_TIMEOUT,
            )
            opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
            started = True
            subprocess.run(
                [*pg_ctl, "-o", opts, "-l", str(log), "-w", "-t", str(int(STARTUP_TIMEOUT))]
                + ["start"],
                check=True,
                capture_output=True,
                timeout=STARTUP_TIMEOUT + 10,
                start_new_session=True,  # the postmaster must not belong to our session
            )
            subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
                + [database],
                check=True,
                capture_output=True,
                timeout=60,
            )
        except subprocess.CalledProcessError as exc:
            raise ServerError(
                f"{exc.cmd[len(prefix)]} failed: {exc.stderr.decode(errors='replace')[-2000:]}"
                f"\n{_tail(log)}"
            ) from exc
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


# ----------------------------------------------------------------------------- MLflow
def start_mlflow_server(
    backend_uri: str, artifacts: Path, port: int, workers: int = 2
) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port`` with ``backend_uri`` as its backend and
    registry store, serving artifacts from ``artifacts``, in its own session; returns
    once it answers ``/health`` (the caller stops it: ``_stop_group``)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    log = artifacts.parent / f"mlflow-server-{port}.log"
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [
        str(exe) if exe.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    # no background job runner: its eight huey consumers (GenAI jobs, trace archival) cost
    # ~2 GB and CPU, and tracking and the registry do not use them
    env = _env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_http(proc, f"http://127.0.0.1:{port}/health", log, "mlflow server")
    except BaseException:
        _stop_group(proc)
        raise
    return proc


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, workers: int = 2) -> Iterator[str]:
    """``mlflow server`` on a free 127.0.0.1 port with ``backend_uri`` as its backend and
    registry store, serving artifacts from ``artifacts``; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    proc = start_mlflow_server(backend_uri, artifacts, port, workers)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop_group(proc)


@contextlib.contextmanager
def mlflow_on_postgres(folder: Path) -> Iterator[str]:
    """PostgreSQL, then ``mlflow server`` on it with artifacts under ``folder``; yields the
    tracking URI (http)."""
    with postgres() as db, mlflow_server(db, folder / "artifacts") as url:
        yield url


# ----------------------------------------------------------------------------- Prefect
@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """``prefect server start`` on a free 127.0.0.1 port, its database in ``home`` (its own
    PREFECT_HOME); yields the API URL ``http://127.0.0.1:<port>/api``."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "server.log"
    exe = Path(sys.executable).parent / "prefect"
    env = _env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    cmd = [str(exe) if exe.exists() else "prefect", "server", "start"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        api = f"http://127.0.0.1:{port}/api"
        _wait_http(proc, api + "/health", log, "prefect server")
        yield api
    finally:
        _stop_group(proc)


SERVE = """
import sys
from pipelines.flow import pdmlens_flow
pdmlens_flow.serve(name=sys.argv[1], limit=int(sys.argv[2]), print_starting_message=False)
"""


def queue_runs(
    api: str,
    runs: list[list[str]],
    home: Path,
    limit: int = 2,
    name: str = "queued",
    timeout: float = 1800.0,
) -> list[str]:
    """Serve the flow as deployment ``pdmlens/<name>`` against the Prefect server at ``api``
    (``limit`` runs at a time, each in its own process, as a scheduled deployment runs),
    submit one run per entry of ``runs`` (its config overrides) at once
    (``run_deployment(..., timeout=0)``), wait until every one is final; returns their final
    state types in order (e.g. ``COMPLETED``)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    log = home / f"serve-{name}.log"
    env = _env(PREFECT_HOME=str(home), PREFECT_API_URL=api)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, name, str(limit)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deployment = f"pdmlens/{name}"
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:  # the deployment exists once the serving process has registered it
                try:
                    client.read_deployment_by_name(deployment)
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise ServerError(f"serving {deployment} failed:\n{_tail(log)}") from None
                    time.sleep(0.5)
            ids = [
                run_deployment(deployment, parameters={"overrides": overrides}, timeout=0).id
                for overrides in runs
            ]
            deadline = time.monotonic() + timeout
            while True:
                states = [client.read_flow_run(i).state for i in ids]
                if all(s is not None and s.is_final() for s in states):
                    return [s.type.value for s in states]  # type: ignore[union-attr]
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(
                        f"runs not final ({[s.type.value if s else None for s in states]}):\n"
                        f"{_tail(log)}"
                    )
                time.sleep(2.0)
    finally:
        _stop_group(proc)
