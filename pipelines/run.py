"""Run the flow by hand, or serve it on a schedule.

``run_pipeline`` picks the task runner from the config (threads, or a Dask cluster) and
runs one flow in this process. ``serve`` registers a deployment with a cron schedule on a
Prefect server and executes its runs in subprocesses; schedules need a real server, so when
none is configured (``PREFECT_API_URL`` unset) it starts one on 127.0.0.1 and says so.
Neither imports Prefect at module level: serve must set ``PREFECT_API_URL`` first.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from pdmlens.config import RunConfig
from pdmlens.processes import descendants, end_processes, stop_group

log = logging.getLogger("pdmlens.pipeline")

DEPLOYMENT = "scheduled"
DEFAULT_GRACE = 30.0
"""seconds a run in progress gets to end after serve is told to stop, before it is killed."""


def task_runner(cfg: RunConfig) -> Any:
    """The Prefect task runner the config asks for."""
    if cfg.pipeline.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:  # pragma: no cover - optional extra
            raise RuntimeError(
                "pipeline.task_runner=dask needs prefect-dask: pip install -e '.[dask]'"
            ) from exc
        if cfg.pipeline.dask_address:
            return DaskTaskRunner(address=cfg.pipeline.dask_address)
        return DaskTaskRunner()
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=cfg.pipeline.max_workers)


def run_pipeline(cfg: RunConfig) -> dict[str, Any]:
    """One whole pipeline run on ``cfg``; returns the summary (raises on failure)."""
    from pipelines.flow import pdmlens_flow

    flow = pdmlens_flow.with_options(task_runner=task_runner(cfg))
    return flow(config=cfg.model_dump(mode="json"))


def server_reachable(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_local_server(
    port: int = 4200, timeout: float = 180.0
) -> tuple[subprocess.Popen[bytes], str]:
    """``prefect server start`` on 127.0.0.1:port in the background, in its own process
    group (a terminal's Ctrl-C reaches serve, which stops the server last, with
    :func:`pdmlens.processes.stop_group`); waits until healthy."""
    api = f"http://127.0.0.1:{port}/api"
    exe = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [exe, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the Prefect server exited with code {proc.returncode}")
            if server_reachable(api):
                return proc, api
            time.sleep(1.0)
        raise RuntimeError(f"the Prefect server did not answer on {api} within {timeout:.0f} s")
    except BaseException:
        stop_group(proc, 10.0)
        raise


def mlflow_hint(tracking_uri: str) -> str:
    """How to open the MLflow links of the runs: a tracking server serves them itself; a
    local store needs ``pdmlens ui`` running."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"MLflow UI: {tracking_uri}"
    return (
        f"MLflow links (http://127.0.0.1:5000/...) open while `pdmlens ui` runs over the "
        f"same store ({tracking_uri})"
    )


def serve(
    cfg: RunConfig,
    cron: str | None = None,
    name: str = DEPLOYMENT,
    port: int = 4200,
    run_once: bool = False,
    *,
    interval: float | None = None,
    overlap: str = "skip",
    grace: float = DEFAULT_GRACE,
    score_cron: str | None = None,
    score_params: dict[str, Any] | None = None,
) -> None:
    """Serve the flow as deployment ``pdmlens/<name>`` on ``cron`` (or every ``interval``
    seconds), running its runs in subprocesses of this one; blocks until SIGINT/SIGTERM.

    Starts one local Prefect server when ``PREFECT_API_URL`` is unset, and sets the
    variable before Prefect is first imported (Prefect reads its settings once; importing
    it earlier makes every flow run start a temporary server of its own). One run at a
    time: a run due while another runs is skipped (``overlap="skip"``) or waits
    (``"wait"``). A stop cancels the runs in progress, gives them ``grace`` seconds to end,
    kills what is left, marks their Prefect runs CANCELLED and their MLflow runs KILLED,
    pauses the schedule, and stops the server it started (see :mod:`pipelines.serving`).
    ``run_once``: also start one run right away. ``score_cron``: also serve the scoring
    flow (deployment ``pdmlens-score/scoring``: score the source's current data with the
    dataset's champion, ``score_params`` passed to it) on that cron, stopped the same way."""
    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of cron and interval")
    if "prefect" in sys.modules and not os.environ.get("PREFECT_API_URL"):
        log.warning("Prefect was imported before serve set PREFECT_API_URL")
    # until the runner takes the signals over, a stop ends here and in ``finally``
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server = None
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        try:
            server, api = start_local_server(port)
        except KeyboardInterrupt:
            signal.signal(signal.SIGTERM, previous)
            print("stopped while the Prefect server was starting", file=sys.stderr)
            return
        os.environ["PREFECT_API_URL"] = api
        print(
            f"no Prefect server configured: started one at {api.removesuffix('/api')} "
            f"(set PREFECT_API_URL to use your own)",
            file=sys.stderr,
        )
    try:
        from pdmlens.tracking import resolve_tracking_uri
        from pipelines.flow import pdmlens_flow
        from pipelines.serving import Scheduled, serve_deployment

        tracking_uri = resolve_tracking_uri(cfg.tracking)
        also = []
        if score_cron is not None:
            from pipelines.score_flow import SCORE_DEPLOYMENT, pdmlens_score_flow

            also.append(
                Scheduled(
                    pdmlens_score_flow,
                    SCORE_DEPLOYMENT,
                    {"config": cfg.model_dump(mode="json"), **(score_params or {})},
                    score_cron,
                )
            )
            print(
                f"serving deployment {pdmlens_score_flow.name}/{SCORE_DEPLOYMENT} on cron "
                f"'{score_cron}' (scores the source's current data with the champion)",
                file=sys.stderr,
            )
        when = f"cron '{cron}'" if cron is not None else f"every {interval:g} s"
        print(
            f"serving deployment {pdmlens_flow.name}/{name} on {when}, one run at a time "
            f"(overlap: {overlap}); Prefect UI: {api.removesuffix('/api')}\n"
            f"{mlflow_hint(tracking_uri)}\n"
            f"Ctrl-C or SIGTERM stops (runs in progress get {grace:g} s)",
            file=sys.stderr,
        )
        serve_deployment(
            pdmlens_flow.with_options(task_runner=task_runner(cfg)),
            name,
            {"config": cfg.model_dump(mode="json")},
            cron=cron,
            interval=interval,
            overlap=overlap,  # type: ignore[arg-type]
            grace=grace,
            run_now=run_once,
            tracking_uri=tracking_uri,
            keep_pids=frozenset({server.pid} if server is not None else ()),
            also=also,
        )
    except KeyboardInterrupt:
        print("stopped before the deployment was served", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            stop_group(server, 15.0)
            log.info("stopped the Prefect server")
        for p in end_processes(_leftovers(), grace=5.0):
            log.warning("process %d did not end", p.pid)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _leftovers() -> list[Any]:
    """Descendants still alive at the very end, except multiprocessing's resource tracker
    (it ends when this process exits)."""
    out = []
    for p in descendants():
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except Exception:
            continue
    return out
