"""Load on one machine: a million-row fleet, the Dask runner, eight queued runs.

(a) ``fleet``: a simulated fleet of 5,000 machines (about 1.1 million rows: lives of
    120-320 cycles, the simulator's defaults) through the whole pipeline, ``pdmlens run`` as
    a user runs it; its wall time and the peak memory (summed RSS of the command's process
    tree, sampled every 0.2 s with psutil). Training windows are bounded by
    ``window.max_train_windows`` (a seeded sample), so an epoch costs the same on any fleet.
(b) ``dask``: the same data through the thread runner and through a Dask cluster of two
    worker processes on 127.0.0.1 (``pipeline.task_runner=dask``); wall times, and whether
    the test metrics are equal.
(c) ``queued``: one Prefect server and one MLflow store (an ``mlflow server`` on
    PostgreSQL, tests/servers.py); the flow served as a deployment, eight runs submitted
    at once (``run_deployment(..., timeout=0)``), all waited for; their total time.

    .venv/bin/python benchmarks/scale.py                 # all three
    .venv/bin/python benchmarks/scale.py --only fleet    # one part (fleet, dask, queued)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.servers (the harness) when run as a script

# the million-row fleet: 5,000 run-to-failure machines and 500 cut-off test machines
FLEET = [
    "data.simulator.n_units=5000",
    "data.simulator.n_test_units=500",
    "window.max_train_windows=20000",
    "model.lstm.epochs=3",
    "model.lstm.num_threads=1",
]
# the Dask comparison: a mid-sized fleet, both runners on identical data
MEDIUM = [
    "data.simulator.n_units=60",
    "data.simulator.n_test_units=20",
    "model.lstm.epochs=3",
    "model.lstm.num_threads=1",
    "model.forest.n_estimators=30",
    "model.forest.n_jobs=1",
]
# each queued run
TINY = [
    "data.simulator.n_units=24",
    "data.simulator.n_test_units=6",
    "model.lstm.epochs=2",
    "model.lstm.hidden_size=16",
    "model.lstm.num_threads=1",
    "model.forest.n_estimators=10",
    "model.forest.n_jobs=1",
    "explain.n_explain=16",
    "explain.deletion_random=2",
    "explain.gate_samples=4",
]


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (bytes)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_measured(args: list[str], env: dict[str, str], cwd: Path) -> tuple[dict, float, int]:
    """``pdmlens <args>`` in a subprocess: (its JSON summary, wall seconds, peak tree RSS)."""
    exe = Path(sys.executable).parent / "pdmlens"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),
        threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),
    ]
    for r in readers:
        r.start()
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(ps))
        time.sleep(0.2)
    for r in readers:
        r.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"pdmlens exited {proc.returncode}: {b''.join(err).decode()[-3000:]}")
    return json.loads(b"".join(out).decode()), wall, peak


def base_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sets(root: Path, overrides: list[str], name: str) -> list[str]:
    pairs = [
        *overrides,
        f"tracking.uri=sqlite:///{root / (name + '.db')}",
        f"pipeline.work_dir={root / name / 'runs'}",
        f"pipeline.cache_dir={root / name / 'cache'}",
    ]
    return [a for s in pairs for a in ("--set", s)]


def part_fleet(root: Path) -> list[tuple[str, str]]:
    summary, wall, peak = run_measured(
        ["run", "--json", *sets(root, FLEET, "fleet")], base_env(root), root
    )
    cache = root / "fleet" / "cache" / "ingest"
    rows = 0
    import pyarrow.parquet as pq

    for f in cache.glob("*/*.parquet"):
        rows += pq.ParquetFile(f).metadata.num_rows
    return [
        (
            "(a) fleet",
            f"{summary['data']['train_units'] + summary['data']['val_units']} "
            f"train/val machines + {summary['data']['test_units']} test, {rows:,} rows",
        ),
        ("(a) settings", " ".join(FLEET[2:])),
        ("(a) wall time", f"{wall:.0f} s"),
        ("(a) peak RSS, process tree", f"{peak / 2**30:.2f} GiB"),
        (
            "(a) LSTM / forest test RMSE",
            f"{summary['lstm']['rmse']:.2f} / {summary['forest']['rmse']:.2f}",
        ),
    ]


def part_dask(root: Path) -> list[tuple[str, str]]:
    from distributed import LocalCluster

    env = base_env(root)
    threads, t_wall, _ = run_measured(["run", "--json", *sets(root, MEDIUM, "threads")], env, root)
    # workers are processes started from here: they import pdmlens through PYTHONPATH
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        dask, d_wall, _ = run_measured(
            [
                "run",
                "--json",
                *sets(root, MEDIUM, "dask"),
                "--set",
                "pipeline.task_runner=dask",
                "--set",
                f"pipeline.dask_address={cluster.scheduler_address}",
            ],
            env,
            root,
        )
    keys = ("rmse", "mae", "score")
    same = all(threads[m].get(k) == dask[m].get(k) for m in ("lstm", "forest") for k in keys)
    return [
        ("(b) data", " ".join(MEDIUM[:2])),
        ("(b) thread runner wall time", f"{t_wall:.0f} s"),
        ("(b) Dask (2 worker processes) wall time", f"{d_wall:.0f} s"),
        ("(b) test metrics equal to the bit", str(same)),
        ("(b) LSTM RMSE threads / Dask", f"{threads['lstm']['rmse']!r} / {dask['lstm']['rmse']!r}"),
    ]


def part_queued(root: Path, n: int = 8) -> list[tuple[str, str]]:
    from tests.servers import mlflow_on_postgres, prefect_server, queue_runs

    with (
        mlflow_on_postgres(root / "mlflow") as mlflow_uri,
        prefect_server(root / "prefect-home") as api,
    ):
        runs = [
            [
                *TINY,
                f"seed={i}",  # a night's new data each
                f"tracking.uri={mlflow_uri}",
                f"pipeline.work_dir={root / 'queued' / 'runs'}",
                f"pipeline.cache_dir={root / 'queued' / 'cache'}",
            ]
            for i in range(n)
        ]
        t0 = time.perf_counter()
        states = queue_runs(api, runs, root / "prefect-home")
        total = time.perf_counter() - t0
    done = sum(s == "COMPLETED" for s in states)
    return [
        ("(c) queued runs", f"{n} (tiny config), one Prefect server, mlflow server on PostgreSQL"),
        ("(c) completed", f"{done}/{n}"),
        ("(c) total time, first submitted to last finished", f"{total:.0f} s"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=["fleet", "dask", "queued"], action="append")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = p.parse_args(argv)
    parts = a.only or ["fleet", "dask", "queued"]
    root = Path(tempfile.mkdtemp(prefix="pdmlens-scale-"))
    rows: list[tuple[str, str]] = []
    try:
        for part in parts:
            rows += {"fleet": part_fleet, "dask": part_dask, "queued": part_queued}[part](root)
    finally:
        if not a.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"(machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
