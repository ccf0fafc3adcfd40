"""Where the MLflow store lives, whether it can be reached, and opening it safely.

- :func:`resolve_tracking_uri` / :func:`resolve_artifact_root`: the configured store, else
  ``$MLFLOW_TRACKING_URI``, else a SQLite database with an ``artifacts`` folder beside it
  (MLflow has no plain-folder store worth using: the registry needs a database).
- :func:`check_tracking_reachable`: a preflight that fails within seconds, with a
  :class:`~pdmlens.errors.TrackingUnavailableError` naming the URI, instead of MLflow's own
  retries (seven, about four minutes) after the data steps have already run.
- :func:`bound_http_retries`: MLflow's HTTP client retries every request with exponential
  backoff; the bound set here (at import of :mod:`pdmlens.tracking`, unless the user set the
  variables) makes a server that dies mid-run fail the run after ~15 s per request, so the
  run ends FAILED instead of hanging.
- :func:`open_client`: an ``MlflowClient``; for a SQLite store its tables are created under
  an inter-process file lock (two processes migrating one fresh database at once fail with
  "Online migration expected to match one row").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pdmlens.config import TrackingConfig, env
from pdmlens.errors import TrackingUnavailableError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"

#: MLflow's own HTTP retry settings (environment variables it reads on every request)
HTTP_RETRY_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",  # default 7: ~4 minutes against a dead server
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # sleeps 0, 2, 4, 8 s (+ up to 1 s jitter)
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # default 120 s per attempt on a hung server
}


def resolve_tracking_uri(
    cfg: TrackingConfig | None = None, base_dir: str | Path | None = None
) -> str:
    """``cfg.uri``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store; a relative
    SQLite path is made absolute against ``base_dir`` (default: the working directory)
    and its folder created."""
    uri = cfg.uri if cfg is not None else None
    uri = uri or env("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    db = sqlite_path(uri)
    if db is None:
        return uri
    query = uri[uri.index("?") :] if "?" in uri else ""
    path = Path(db)
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()).resolve() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}{query}"


def resolve_artifact_root(
    tracking_uri: str, cfg: TrackingConfig | None = None, base_dir: str | Path | None = None
) -> str | None:
    """Artifact location root for new experiments: ``cfg.artifact_root`` (a URI, or a path
    made absolute), else ``artifacts/`` beside a SQLite database; None lets a tracking
    server choose."""
    root = cfg.artifact_root if cfg is not None else None
    if root:
        if "://" in root:
            return root.rstrip("/")
        path = Path(root)
        if not path.is_absolute():
            path = Path(base_dir or Path.cwd()).resolve() / path
        return path.as_uri()
    db = sqlite_path(tracking_uri)
    if db is None or db == ":memory:":
        return None
    return (Path(db).parent / "artifacts").resolve().as_uri()


def sqlite_path(uri: str) -> str | None:
    """The database path of a ``sqlite:///`` URI (query string dropped), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return uri[len("sqlite:///") :].split("?", 1)[0]


def is_http(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (MLflow's REST API)."""
    return uri.startswith(("http://", "https://"))


def redact(uri: str) -> str:
    """``uri`` with a password in it replaced by ``***`` (for messages and logs)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# ----------------------------------------------------------------------------- preflight


def check_tracking_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with a :class:`TrackingUnavailableError` saying what to do, when the
    tracking store ``uri`` cannot be used; return None when it can.

    - ``http(s)://``: the server must answer ``GET <uri>/health`` (every ``mlflow server``
      does) with 200 within ``timeout`` seconds; one attempt, no retries.
    - ``sqlite:///``: the database's folder must exist or be creatable and be writable,
      and an existing database file writable.
    - a database URI with a host (``postgresql://``, ``mysql://`` ...): a TCP connection
      to its host and port must open within ``timeout``.
    Other schemes (``databricks`` ...) are not checked.
    """
    if is_http(uri):
        _check_http(uri, timeout)
    elif uri.startswith("sqlite:///"):
        _check_sqlite(uri)
    else:
        parts = urllib.parse.urlsplit(uri)
        if parts.hostname:
            _check_tcp(uri, parts.hostname, parts.port, timeout)


def _unavailable(uri: str, what: str, hint: str) -> TrackingUnavailableError:
    return TrackingUnavailableError(
        f"MLflow tracking store {redact(uri)} is not usable: {what}. {hint} "
        "(tracking.uri in the run config, or $MLFLOW_TRACKING_URI; unset both for the local "
        "store sqlite:///mlruns/mlflow.db)"
    )


def _check_http(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/health"
    hint = "Start the server (mlflow server --host 127.0.0.1 --port ...) or point pdmlens at one"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http only)
            status = resp.status
    except urllib.error.HTTPError as exc:
        raise _unavailable(uri, f"GET {redact(url)} answered HTTP {exc.code}", hint) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _unavailable(
            uri, f"no answer from {redact(url)} within {timeout:g} s ({reason})", hint
        ) from None
    if status != 200:
        raise _unavailable(uri, f"GET {redact(url)} answered HTTP {status}", hint)


def _check_sqlite(uri: str) -> None:
    db = sqlite_path(uri)
    if db is None or db == ":memory:":
        return
    path = Path(db)
    hint = "Choose a database path in a folder you can write"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".pdmlens-probe-"):
            pass
    except OSError as exc:
        raise _unavailable(uri, f"its folder {path.parent} is not writable ({exc})", hint) from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise _unavailable(uri, f"the database file {path} is not writable", hint)


def _check_tcp(uri: str, host: str, port: int | None, timeout: float) -> None:
    default = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
    scheme = urllib.parse.urlsplit(uri).scheme.split("+", 1)[0]
    port = port or default.get(scheme)
    if port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise _unavailable(
            uri,
            f"no connection to {host}:{port} within {timeout:g} s ({exc})",
            "Start the database server or point pdmlens at a reachable one",
        ) from None


def bound_http_retries(settings: dict[str, str] | None = None, *, force: bool = False) -> None:
    """Bound MLflow's HTTP retries in this process (and the processes it starts):
    ``settings`` (default :data:`HTTP_RETRY_ENV`) go into the environment MLflow reads on
    each request; a variable the user already set is kept unless ``force``."""
    for key, value in (settings or HTTP_RETRY_ENV).items():
        if force:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


# ----------------------------------------------------------------------------- locks


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive inter-process lock (``flock``) on the file ``path`` for the ``with``
    block; the kernel releases it if the holder dies, so no stale lock survives a kill."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_path(uri: str, purpose: str) -> Path | None:
    """The lock file for ``purpose`` beside a SQLite database (``mlflow.db.<purpose>.lock``),
    or None for a store without a local file."""
    db = sqlite_path(uri)
    if db is None or db == ":memory:":
        return None
    path = Path(db)
    return path.with_name(f"{path.name}.{purpose}.lock")


@contextlib.contextmanager
def store_lock(uri: str, purpose: str) -> Iterator[bool]:
    """:func:`file_lock` on :func:`lock_path` for a SQLite store (yields True); for any other
    store nothing is locked (yields False: the caller must guard itself)."""
    path = lock_path(uri, purpose)
    if path is None:
        yield False
        return
    with file_lock(path):
        yield True


def open_client(uri: str):  # -> MlflowClient (mlflow imported lazily: preflight stays light)
    """An ``MlflowClient`` on ``uri`` for tracking and registry. Creating it creates a SQLite
    store's tables when missing; that happens under :func:`store_lock` (``init``), so two
    processes opening one fresh database at once wait for each other instead of both
    running MLflow's schema migrations."""
    from mlflow import MlflowClient

    with store_lock(uri, "init"):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if sqlite_path(uri) is not None:
            # the registry store checks (and would create) the same tables: also under the lock
            client._get_registry_client().store  # noqa: B018
    return client
