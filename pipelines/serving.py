"""The scheduled deployment's life in ``pdmlens serve``: register it, run its runs in
subprocesses of this process, and stop cleanly.

Import this module only after ``PREFECT_API_URL`` is set (see :func:`pipelines.run.serve`):
Prefect reads its settings once, when first imported.

One run at a time: the deployment has a concurrency limit of 1; a run due while another
still runs is skipped (``overlap="skip"``, Prefect's CANCEL_NEW: it ends CANCELLED) or waits
for the slot (``overlap="wait"``, ENQUEUE).

A stop (SIGINT/SIGTERM), idle or mid-run:

1. the deployment is paused (Prefect deletes its future scheduled runs; the next serve
   resumes it);
2. runs waiting for the slot are cancelled; running ones get Prefect's cancellation (the
   flow-run process receives SIGTERM, its flow marks its MLflow runs KILLED);
3. after ``grace`` seconds whatever flow-run process is left is killed, the runs not yet
   final are set CANCELLED (so are runs a terminal's Ctrl-C, which reaches the flow-run
   processes too, left CRASHED), and their MLflow runs still RUNNING are marked KILLED;
4. the runner stops; the caller then stops the Prefect server it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from uuid import UUID

from prefect import Flow, get_client
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
    FlowRun,
    StateType,
)
from prefect.runner import Runner
from prefect.states import Cancelled, Cancelling

from pdmlens.processes import descendants, end_processes

log = logging.getLogger("pdmlens.pipeline")

Overlap = Literal["skip", "wait"]
OVERLAP_STRATEGY = {
    "skip": ConcurrencyLimitStrategy.CANCEL_NEW,
    "wait": ConcurrencyLimitStrategy.ENQUEUE,
}
ACTIVE = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
WAITING_NAMES = ("AwaitingConcurrencySlot", "AwaitingRetry", "Late")


def concurrency(overlap: Overlap) -> ConcurrencyLimitConfig:
    """The deployment's concurrency limit: one run at a time, ``overlap`` for the rest."""
    if overlap not in OVERLAP_STRATEGY:
        raise ValueError(f"overlap must be 'skip' or 'wait', not {overlap!r}")
    return ConcurrencyLimitConfig(limit=1, collision_strategy=OVERLAP_STRATEGY[overlap])


class _Runner(Runner):
    """Prefect's runner, with SIGTERM routed to our stop instead of its own handler (which
    calls the async ``stop`` from a signal handler and exits at once)."""

    on_stop_signal: Callable[[], None] | None = None

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        if self.on_stop_signal is not None:
            self.on_stop_signal()


def serve_deployment(
    flow: Flow[Any, Any],
    name: str,
    parameters: dict[str, Any],
    *,
    cron: str | None = None,
    interval: float | None = None,
    overlap: Overlap = "skip",
    grace: float = 30.0,
    run_now: bool = False,
    tracking_uri: str | None = None,
    keep_pids: frozenset[int] = frozenset(),
    also: Sequence[Scheduled] = (),
) -> None:
    """Serve ``flow`` as deployment ``<flow>/<name>`` until SIGINT/SIGTERM, then stop as the
    module docstring says. ``tracking_uri``: the MLflow store whose runs of cancelled flow
    runs are closed; ``keep_pids``: processes (e.g. the Prefect server) not to kill;
    ``also``: more deployments served by the same runner on their own crons (e.g. the
    scoring flow beside training), each one run at a time, stopped the same way."""
    asyncio.run(
        _serve(
            flow,
            name,
            parameters,
            cron,
            interval,
            overlap,
            grace,
            run_now,
            tracking_uri,
            keep_pids,
            tuple(also),
        )
    )


@dataclass(frozen=True)
class Scheduled:
    """One more deployment for :func:`serve_deployment`: a flow, its name, its parameters
    and its cron."""

    flow: Flow[Any, Any]
    name: str
    parameters: dict[str, Any]
    cron: str


async def _serve(
    flow: Flow[Any, Any],
    name: str,
    parameters: dict[str, Any],
    cron: str | None,
    interval: float | None,
    overlap: Overlap,
    grace: float,
    run_now: bool,
    tracking_uri: str | None,
    keep_pids: frozenset[int],
    also: tuple[Scheduled, ...] = (),
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = _Runner(name=f"{flow.name}-{name}", pause_on_shutdown=True)

    def on_sigterm() -> None:
        loop.call_soon_threadsafe(stop.set)

    runner.on_stop_signal = on_sigterm
    deployment_id = await runner.aadd_flow(
        flow,
        name=name,
        cron=cron,
        interval=interval,
        paused=False,
        parameters=parameters,
        concurrency_limit=concurrency(overlap),
    )
    others = [
        await runner.aadd_flow(
            extra.flow,
            name=extra.name,
            cron=extra.cron,
            paused=False,
            parameters=extra.parameters,
            concurrency_limit=concurrency(overlap),
        )
        for extra in also
    ]
    if run_now:
        async with get_client() as client:
            await client.create_flow_run_from_deployment(deployment_id)
    runner_task = asyncio.create_task(runner.start())
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({runner_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if runner_task.done():  # the runner ended by itself: an error
        stop_task.cancel()
        runner_task.result()
        return
    print(
        f"stopping: runs in progress get up to {grace:g} s to end (--grace), then are killed",
        file=sys.stderr,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not break the stop
        loop.add_signal_handler(sig, lambda: None)
    try:
        for each in (deployment_id, *others):
            await _wind_down(each, grace, tracking_uri, keep_pids)
    finally:
        if runner.started:
            await runner.astop()
        try:
            await asyncio.wait_for(runner_task, timeout=15)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            log.warning("the Prefect runner did not stop within 15 s")
        except Exception as exc:  # the stop itself went well; say what the runner said
            log.warning("the Prefect runner stopped with %s: %s", type(exc).__name__, exc)
        log.info("the runner stopped")


async def _wind_down(
    deployment_id: UUID, grace: float, tracking_uri: str | None, keep_pids: frozenset[int]
) -> None:
    """Steps 1-3 of the stop (module docstring)."""
    deadline = time.monotonic() + grace
    stopped_at = datetime.now(timezone.utc) - timedelta(seconds=5)
    async with get_client() as client:
        await client.pause_deployment(deployment_id)
        log.info("paused the schedule of the deployment")
        cancelled: set[UUID] = set()
        for run in await _open_runs(client, deployment_id):
            cancelled.add(run.id)
            if run.state is not None and run.state.type == StateType.SCHEDULED:
                await client.set_flow_run_state(
                    run.id, Cancelled(message="pdmlens serve stopped before it started"), force=True
                )
            elif run.state is not None and run.state.type != StateType.CANCELLING:
                await client.set_flow_run_state(
                    run.id, Cancelling(message="pdmlens serve is stopping"), force=True
                )
        if cancelled:
            log.info("cancelling %d flow run(s)", len(cancelled))
        while cancelled and time.monotonic() < deadline:
            if not await _open_runs(client, deployment_id, ACTIVE):
                break
            await asyncio.sleep(0.5)
        left = end_processes(_flow_run_processes(keep_pids))
        if left:
            log.warning("could not end processes %s", [p.pid for p in left])
        for run in await _open_runs(client, deployment_id, ACTIVE):
            cancelled.add(run.id)
            await client.set_flow_run_state(
                run.id,
                Cancelled(message=f"pdmlens serve stopped; killed after {grace:g} s"),
                force=True,
            )
        # a terminal's Ctrl-C also reaches the flow-run processes (same process group):
        # their runs end CRASHED by the interrupt, which was this stop: say so
        for run in await _open_runs(client, deployment_id, [StateType.CRASHED]):
            if run.state is not None and run.state.timestamp >= stopped_at:
                cancelled.add(run.id)
                await client.set_flow_run_state(
                    run.id, Cancelled(message="pdmlens serve stopped (interrupted)"), force=True
                )
    if cancelled and tracking_uri:
        from pdmlens.tracking.cleanup import mark_flow_runs_killed

        try:
            await asyncio.to_thread(
                mark_flow_runs_killed, tracking_uri, [str(i) for i in cancelled]
            )
        except Exception as exc:  # the store may be gone; the Prefect side is settled
            log.warning("could not close the MLflow runs of cancelled flow runs: %s", exc)


async def _open_runs(
    client: PrefectClient, deployment_id: UUID, types: list[StateType] | None = None
) -> list[FlowRun]:
    """The deployment's runs in ``types`` (default: active ones, and scheduled ones that
    are due: waiting for the concurrency slot, late, or awaiting a retry)."""
    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=types or [*ACTIVE, StateType.SCHEDULED])
            )
        ),
    )
    if types is not None:
        return list(runs)
    return [
        r
        for r in runs
        if r.state is not None
        and (r.state.type != StateType.SCHEDULED or r.state.name in WAITING_NAMES)
    ]


def _flow_run_processes(keep_pids: frozenset[int]) -> list[Any]:
    """This process's descendants except ``keep_pids`` and their trees, and except
    multiprocessing's resource tracker (it ends by itself when this process exits)."""
    keep: set[int] = set(keep_pids)
    for pid in keep_pids:
        keep.update(p.pid for p in descendants(pid))
    procs = []
    for p in descendants(os.getpid()):
        if p.pid in keep:
            continue
        try:
            if "resource_tracker" in " ".join(p.cmdline()):
                continue
        except Exception:
            continue
        procs.append(p)
    return procs
