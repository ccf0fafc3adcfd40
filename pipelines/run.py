"""Run the flow by hand, or serve it on a schedule.

``run_pipeline`` picks the task runner from the config (threads, or a Dask cluster) and
runs one flow in this process. ``serve`` registers a deployment with a cron schedule on a
Prefect server and executes its runs here; schedules need a real server, so when none is
configured (``PREFECT_API_URL`` unset) it starts one on 127.0.0.1 and says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pdmlens.config import RunConfig

log = logging.getLogger("pdmlens.pipeline")

DEPLOYMENT = "scheduled"


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
            return r.status == 200
    except OSError:
        return False


def start_local_server(port: int = 4200, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` on 127.0.0.1:port in the background; waits until healthy."""
    api = f"http://127.0.0.1:{port}/api"
    exe = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [exe, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {proc.returncode}")
        if server_reachable(api):
            return proc, api
        time.sleep(1.0)
    proc.terminate()
    raise RuntimeError(f"the Prefect server did not answer on {api} within {timeout:.0f} s")


def serve(
    cfg: RunConfig, cron: str, name: str = DEPLOYMENT, port: int = 4200, run_once: bool = False
) -> None:
    """Serve the flow as deployment ``pdmlens/<name>`` on ``cron``, running its runs here
    (blocks). Starts a local Prefect server when ``PREFECT_API_URL`` is unset.
    ``run_once``: also trigger one run right away."""
    from pipelines.flow import pdmlens_flow

    server = None
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        server, api = start_local_server(port)
        os.environ["PREFECT_API_URL"] = api
        print(
            f"no Prefect server configured: started one at {api.removesuffix('/api')} "
            f"(set PREFECT_API_URL to use your own)",
            file=sys.stderr,
        )
    try:
        flow = pdmlens_flow.with_options(task_runner=task_runner(cfg))
        if run_once:
            _trigger_when_ready(f"{pdmlens_flow.name}/{name}")
        print(
            f"serving deployment {pdmlens_flow.name}/{name} on cron '{cron}' "
            f"(Prefect UI: {api.removesuffix('/api')}); Ctrl-C stops",
            file=sys.stderr,
        )
        flow.serve(
            name=name,
            cron=cron,
            parameters={"config": cfg.model_dump(mode="json")},
            print_starting_message=False,
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def _trigger_when_ready(deployment: str) -> None:
    """Start one run of ``deployment`` as soon as it exists (from a helper thread)."""
    import threading

    def go() -> None:
        from prefect.deployments import run_deployment

        for _ in range(120):
            try:
                run_deployment(deployment, timeout=0)
                return
            except Exception:
                time.sleep(1.0)

    threading.Thread(target=go, daemon=True).start()
