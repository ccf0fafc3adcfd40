"""Data path throughput: simulate -> validate -> prepare -> iterate all windows.

    python benchmarks/data.py [--sizes 1e6 3e6 1e7] [--window 30] [--batch 4096] [--json PATH]

Each size runs in a fresh subprocess (so one size's freed memory does not flatter the next)
and reports, per stage, wall and CPU seconds, rows/s, and the peak resident memory the stage
added above what the process held when the pipeline started (Linux /proc: VmHWM, reset per
stage through /proc/self/clear_refs; no psutil). The raw table size is the simulated
training frame's own memory (``DataFrame.memory_usage(deep=True)``).

Targets: cost per row flat across sizes (linear growth) and peak memory under 3x the raw
table. Timings on a shared machine are noisy: CPU seconds beside wall seconds show how much
of the wall time was waiting for a core.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("simulate", "validate", "prepare", "windows")


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_one(rows: int, window: int, batch: int) -> dict:
    """One pipeline run at about ``rows`` training rows; returns the measurements."""
    import numpy as np

    from pdmlens.config import PrepareConfig, RunConfig, SimulatorConfig, WindowConfig
    from pdmlens.data.prepare import prepare
    from pdmlens.data.simulate import simulate_fleet

    try:
        from pdmlens.data.validate import validate_fleet
    except ImportError:  # not written yet: measure the rest
        validate_fleet = None
    # prepare imports scikit-learn lazily; a one-time import (seconds, ~100 MiB) is not a
    # cost per row, so it happens here, before the baseline.
    import sklearn.cluster  # noqa: F401
    import sklearn.metrics  # noqa: F401

    sim = SimulatorConfig()
    n_units = max(2, round(rows / ((sim.min_life + sim.max_life) / 2)))
    sim = sim.model_copy(update={"n_units": n_units, "n_test_units": 0})
    cfg = RunConfig(seed=0, prepare=PrepareConfig(), window=WindowConfig(length=window))
    gc.collect()
    base = _status()["VmRSS"]
    resettable = _reset_peak()
    stages: dict[str, dict] = {}
    peak_total = base

    def stage(name: str, fn):
        nonlocal peak_total
        gc.collect()
        _reset_peak()
        start_rss = _status()["VmRSS"]
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        st = _status()
        peak_total = max(peak_total, st["VmHWM"])
        stages[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "peak_added_bytes": st["VmHWM"] - start_rss,
            "held_after_bytes": st["VmRSS"] - base,
        }
        return result

    splits = stage("simulate", lambda: simulate_fleet(sim, seed=0))
    frame = splits.train.frame
    n = len(frame)
    raw = int(frame.memory_usage(deep=True).sum())
    if validate_fleet is not None:
        checked = stage("validate", lambda: validate_fleet(frame, window=window))
        splits.train.frame = checked
        del checked
    data = stage("prepare", lambda: prepare(splits, cfg))

    def windows() -> int:
        seen = 0
        checksum = 0.0
        for split in ("train", "val"):
            ds = data.windows(split, cfg.window, target="rul")
            for _idx, x, _y in ds.iter_batches(batch):
                seen += len(x)
                checksum += float(x[-1, -1, 0])
            del ds
        return seen

    n_windows = stage("windows", windows)
    for rec in stages.values():
        rec["rows_per_s"] = n / rec["wall_s"] if rec["wall_s"] > 0 else float("inf")
    del np
    return {
        "rows": n,
        "units": n_units,
        "windows": n_windows,
        "features": len(data.features),
        "raw_bytes": raw,
        "peak_bytes": peak_total - base,
        "peak_over_raw": (peak_total - base) / raw,
        "peak_reset_ok": resettable,
        "validate_available": validate_fleet is not None,
        "stages": stages,
    }


def _fmt_bytes(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def print_table(results: list[dict]) -> None:
    head = (
        f"{'rows':>11} {'stage':>9} {'wall s':>8} {'cpu s':>8} {'Mrows/s':>8} "
        f"{'us/row':>7} {'peak added':>11} {'held after':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        for name, s in r["stages"].items():
            print(
                f"{r['rows']:>11,} {name:>9} {s['wall_s']:>8.2f} {s['cpu_s']:>8.2f} "
                f"{s['rows_per_s'] / 1e6:>8.2f} {1e6 * s['wall_s'] / r['rows']:>7.3f} "
                f"{_fmt_bytes(s['peak_added_bytes']):>11} "
                f"{_fmt_bytes(s['held_after_bytes']):>11}"
            )
        total = sum(s["wall_s"] for s in r["stages"].values())
        print(
            f"{r['rows']:>11,} {'total':>9} {total:>8.2f} "
            f"{sum(s['cpu_s'] for s in r['stages'].values()):>8.2f} "
            f"{r['rows'] / total / 1e6:>8.2f} {1e6 * total / r['rows']:>7.3f}   "
            f"peak {_fmt_bytes(r['peak_bytes'])} = {r['peak_over_raw']:.2f}x raw "
            f"({_fmt_bytes(r['raw_bytes'])}), {r['windows']:,} windows x {r['features']} "
            "features"
        )
        print()
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        for name in hi["stages"]:
            if name in lo["stages"]:
                a = lo["stages"][name]["wall_s"] / lo["rows"]
                b = hi["stages"][name]["wall_s"] / hi["rows"]
                print(
                    f"cost per row, {name}: {hi['rows'] / lo['rows']:.1f}x the rows -> "
                    f"{b / a:.2f}x the time per row (1.0 = linear)"
                )
    if not all(r["validate_available"] for r in results):
        print("note: pdmlens.data.validate not importable; validate stage skipped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=[1e6, 3e6, 1e7],
        help="training rows per run (default 1e6 3e6 1e7)",
    )
    ap.add_argument("--window", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--single", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.single is not None:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(run_one(int(args.single), args.window, args.batch)))
        return 0
    results = []
    for size in args.sizes:
        cmd = [
            sys.executable,
            __file__,
            "--single",
            str(size),
            "--window",
            str(args.window),
            "--batch",
            str(args.batch),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"done {int(size):,} rows", file=sys.stderr)
    print_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": sys.argv, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
