"""Orchestration overhead: the same steps as plain function calls vs through the Prefect
flow with MLflow tracking.

Plain: the steps of ``pdmlens.steps.graph.PIPELINE`` one after another in this process
(``run_steps``: ingest, prepare, both models, evaluate, explain, signatures; then the HTML
report), no Prefect, no MLflow. Flow: the real
``pdmlens_flow`` with a thread-pool task runner and tracking to a temporary SQLite store,
caching off (so it does all the work too). The temporary Prefect server that a process
without a configured server starts is timed apart (a trivial flow first): a scheduled
deployment or ``PREFECT_API_URL`` does not pay it per run.

``--default`` times what a newcomer runs instead: ``pdmlens run`` with no options, as a
subprocess in a fresh empty folder (its own ``mlruns/``, ``data/`` and Prefect home, so
nothing is cached and the temporary Prefect server starts each time), ``--repeats`` times;
it prints each run's wall and CPU seconds (user + sys of the command and its children, the
Prefect server included) and the median wall time, beside the load average (on a shared
machine wall time is inflated, CPU time much less).

    .venv/bin/python benchmarks/pipeline.py --data ../shared/data/cmapss --subset FD001
    .venv/bin/python benchmarks/pipeline.py --simulated [--set model.lstm.epochs=2 ...]
    .venv/bin/python benchmarks/pipeline.py --default [--repeats 3] [--set seed=1 ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def plain(cfg, work: Path) -> dict[str, float]:
    """Every step of the pipeline graph as a plain call (``pdmlens.steps.run_steps``), then
    the HTML report; wall seconds per step."""
    from pdmlens.report.run_report import build_report
    from pdmlens.steps import run_steps

    t: dict[str, float] = {}
    outs = run_steps(cfg, work, on_step=lambda spec, _res, s: t.__setitem__(spec.name, s))
    t0 = time.perf_counter()
    (work / "report.html").write_text(build_report(outs, "benchmark"))
    t["report"] = time.perf_counter() - t0
    return t


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def default_runs(repeats: int, sets: list[str]) -> dict[str, object]:
    """``pdmlens run`` (plus ``--set`` options, none by default) ``repeats`` times, each in a
    fresh empty folder with its own Prefect home; wall and CPU seconds of each run."""
    exe = Path(sys.executable).with_name("pdmlens")
    cmd = [str(exe) if exe.exists() else "pdmlens", "run", *[f"--set={s}" for s in sets]]
    runs = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="pdmlens-default-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
            env["PREFECT_HOME"] = str(Path(tmp) / ".prefect")
            load = os.getloadavg()[0]
            c0, t0 = _children_cpu(), time.perf_counter()
            out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
            if out.returncode != 0:
                raise SystemExit(f"run {i + 1} failed ({out.returncode}):\n{out.stderr[-3000:]}")
            runs.append({"wall_s": wall, "cpu_s": cpu, "load_before": load})
            print(
                f"run {i + 1}: {wall:6.1f} s wall, {cpu:6.1f} s CPU (user + sys), "
                f"load average before {load:.2f}",
                flush=True,
            )
    median = statistics.median(r["wall_s"] for r in runs)
    cpu_median = statistics.median(r["cpu_s"] for r in runs)
    print(
        f"\ndefault `pdmlens run`, {repeats} runs: median {median:.1f} s wall "
        f"({cpu_median:.1f} s CPU), target <= 90 s wall on an idle 2-core machine; "
        f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    return {"runs": runs, "median_wall_s": median, "median_cpu_s": cpu_median}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/cmapss")
    p.add_argument("--subset", default="FD001")
    p.add_argument("--simulated", action="store_true")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--default",
        action="store_true",
        help="time the default `pdmlens run` (a subprocess in a fresh folder) --repeats times",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--serial",
        action="store_true",
        help="also time the flow with one worker (no concurrency between steps)",
    )
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.default:
        res = default_runs(a.repeats, a.set)
        if a.json:
            a.json.write_text(json.dumps(res, indent=1))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="pdmlens-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    from pdmlens.config import RunConfig

    over = (
        []
        if a.simulated
        else [
            "data.source=cmapss",
            f"data.path={Path(a.data).resolve()}",
            f"data.subset={a.subset}",
        ]
    )
    over += [
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"pipeline.work_dir={tmp / 'runs'}",
        f"pipeline.cache_dir={tmp / 'cache'}",
        "pipeline.cache=false",
        *a.set,
    ]
    cfg = RunConfig().with_overrides(over)

    t0 = time.perf_counter()
    steps_t = plain(cfg, tmp / "plain")
    plain_s = time.perf_counter() - t0

    from prefect import flow

    from pipelines.run import run_pipeline

    @flow
    def warm_up() -> int:
        return 1

    t0 = time.perf_counter()
    warm_up()
    server_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = run_pipeline(cfg)
    flow_s = time.perf_counter() - t0
    serial_s = None
    if a.serial:
        # one worker: no step runs beside another, so only orchestration and tracking differ
        t0 = time.perf_counter()
        run_pipeline(cfg.with_overrides(["pipeline.max_workers=1"]))
        serial_s = time.perf_counter() - t0

    overhead = (flow_s - plain_s) / plain_s
    rows = [(k, f"{v:8.1f}") for k, v in steps_t.items()]
    print(f"\n{'step (plain call)':28s} {'seconds':>8s}")
    for k, v in rows:
        print(f"{k:28s} {v}")
    print(f"\n{'':28s} {'seconds':>8s}")
    print(f"{'plain functions, total':28s} {plain_s:8.1f}")
    print(f"{'flow + MLflow tracking':28s} {flow_s:8.1f}   overhead {overhead:+.1%}")
    if serial_s is not None:
        print(
            f"{'  the same, one worker':28s} {serial_s:8.1f}   overhead "
            f"{(serial_s - plain_s) / plain_s:+.1%} (no steps side by side)"
        )
    print(f"{'Prefect temporary server':28s} {server_s:8.1f}   (once per process, not per run)")
    print(
        f"\nflow: lstm rmse {summary['lstm'].get('rmse', float('nan')):.2f}, "
        f"forest rmse {summary['forest'].get('rmse', float('nan')):.2f}"
    )
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "plain_s": plain_s,
                    "flow_s": flow_s,
                    "overhead": overhead,
                    "server_start_s": server_s,
                    "flow_one_worker_s": serial_s,
                    "steps_s": steps_t,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
