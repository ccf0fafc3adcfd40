"""Explorer speed: the first page after ``pdmlens explore`` starts on a store with 20 runs,
and a re-clustering with a new k on the default signature sample.

Makes one tiny real run (``pdmlens run``) in a temporary folder (or uses ``--store DIR``
holding ``mlflow.db`` from an earlier call), adds 19 older copies of its parent run
(params, metrics, tags, predictions) so the store holds 20, then:

- first page: seconds from spawning ``pdmlens explore`` until headless Chromium shows the
  fleet table of the latest run (and, apart, until the server answered at all);
- re-clustering: seconds from typing a new k into the Signatures view until its table
  shows that k, in the browser, and the computation alone (``analysis.recluster``) in this
  process; median over k = 3..8.

Targets: first page within 3 s, re-clustering within 1 s. Prints one table.

    python benchmarks/explorer.py [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pdmlens.runtime.single_thread import one_thread, pin_one_thread

TINY = [
    "data.simulator.n_units=24",
    "data.simulator.n_test_units=6",
    "model.lstm.epochs=2",
    "model.lstm.hidden_size=16",
    "model.forest.n_estimators=10",
    "explain.n_explain=16",
    "explain.deletion_random=2",
    "explain.gate_samples=4",
]
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pdmlens() -> list[str]:
    exe = Path(sys.executable).parent / "pdmlens"
    return (
        [str(exe)]
        if exe.is_file()
        else [sys.executable, "-c", "from pdmlens.cli import app; app()"]
    )


def sets(root: Path) -> list[str]:
    return [
        *TINY,
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"pipeline.work_dir={root / 'runs'}",
        f"pipeline.cache_dir={root / 'cache'}",
    ]


def make_store(root: Path, n_runs: int = 20) -> str:
    """One real tiny run (unless the store has one) plus older copies of its latest parent
    run, ``n_runs`` parent runs in all."""

    from pdmlens.tracking.explorer_reader import StoreReader

    uri = f"sqlite:///{root / 'mlflow.db'}"
    have = StoreReader(uri).runs() if (root / "mlflow.db").is_file() else None
    if have is not None and len(have):
        return _copies(uri, have["run_id"].iloc[0], n_runs - len(have))
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    args = [a for s in sets(root) for a in ("--set", s)]
    res = subprocess.run(
        [*pdmlens(), "run", "--json", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return _copies(uri, json.loads(res.stdout)["mlflow_run_id"], n_runs - 1)


def _copies(uri: str, real: str, n: int) -> str:
    """``n`` older copies of run ``real``: params, metrics, tags, predictions."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    src = client.get_run(real)
    preds = Path(src.info.artifact_uri.removeprefix("file://")) / "predictions.parquet"
    for i in range(max(n, 0)):
        start = src.info.start_time - (i + 1) * 3_600_000
        run = client.create_run(
            src.info.experiment_id,
            start_time=start,
            tags={**src.data.tags, "mlflow.runName": f"copy-{i:02d}"},
        )
        client.log_batch(run.info.run_id, params=[], metrics=[])
        for k, v in src.data.params.items():
            client.log_param(run.info.run_id, k, v)
        for k, v in src.data.metrics.items():
            client.log_metric(run.info.run_id, k, v, timestamp=start)
        client.log_artifact(run.info.run_id, str(preds))
        client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 60_000)
    return uri


def measure_browser(root: Path) -> tuple[float, float, float]:
    """(server up, first page, median re-clustering in the page) seconds."""
    from playwright.sync_api import sync_playwright

    args = [a for s in sets(root) for a in ("--set", s)]
    log = open(root / "explore.log", "w+")  # noqa: SIM115
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROME_ARGS)
        pg = b.new_page()
        pg.set_default_timeout(120_000)
        pg.goto("about:blank")  # the browser is up before the clock starts
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*pdmlens(), "explore", "--port", "0", *args],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = None
            while url is None:
                log.seek(0)
                m = re.search(r"explorer on (http://127\.0\.0\.1:\d+/)", log.read())
                url = m.group(1) if m else None
                if proc.poll() is not None:
                    raise SystemExit(log.read())
                time.sleep(0.02)
            urllib.request.urlopen(url, timeout=30).read()
            up = time.perf_counter() - t0
            pg.goto(url)
            pg.wait_for_selector("#fleet-table td")
            first = time.perf_counter() - t0
            pg.click("#tab-signatures")
            pg.wait_for_function("document.querySelector('#sig-timing').innerText.includes('k=4')")
            times = []
            for k in range(3, 9):
                if k == 4:
                    continue
                t = time.perf_counter()
                pg.fill("#sig-k", str(k))
                pg.wait_for_function(
                    f"document.querySelector('#sig-timing').innerText.includes('k={k} ')"
                )
                times.append(time.perf_counter() - t)
            b.close()
        finally:
            proc.terminate()
            proc.wait(60)
    return up, first, statistics.median(times)


def measure_compute(uri: str) -> float:
    from pdmlens.explorer import analysis as A
    from pdmlens.explorer.rundata import RunCache
    from pdmlens.tracking.explorer_reader import StoreReader

    reader = StoreReader(uri)
    run = RunCache(reader).get(reader.runs()["run_id"].iloc[0])
    sample = A.signature_sample(run)
    times = []
    with one_thread():
        A.recluster(sample, 4, [0, 30, 75, 125])  # probes cached, as in the page
        for k in range(3, 9):
            t = time.perf_counter()
            A.recluster(sample, k, [0, 30, 75, 125])
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, help="folder with mlflow.db from an earlier call")
    a = ap.parse_args()
    pin_one_thread()  # as `pdmlens explore` does
    root = a.store or Path(tempfile.mkdtemp(prefix="pdmlens-bench-explorer-"))
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    make_store(root)
    print(f"store with 20 runs ready in {time.perf_counter() - t:.0f} s: {root}")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    up, first, page_k = measure_browser(root)
    compute_k = measure_compute(uri)
    print(f"\n{'measure':52s}{'seconds':>9s}{'target':>8s}")
    print(f"{'server answers after spawn':52s}{up:9.2f}{'':>8s}")
    print(f"{'first page (fleet table shown) after spawn':52s}{first:9.2f}{'3':>8s}")
    print(f"{'re-clustering with a new k, in the page (median)':52s}{page_k:9.2f}{'1':>8s}")
    print(f"{'re-clustering with a new k, computation (median)':52s}{compute_k:9.2f}{'1':>8s}")
    print(f"\nload average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
