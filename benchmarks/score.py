"""Scoring speed and the two kinds of novelty (issue 14).

1. FD001: seconds to score the 100 test engines (prepare, predict, novelty per layer, SHAP
   for both models) after loading the bundle, and whether the scores reproduce the
   evaluate step's last-window predictions to the bit.
2. A simulated fleet of 10,000 machines: seconds and peak memory (a fresh process each,
   explanations for every unit and for the alerts only).
3. The held-out-fault-mode experiment: a simulator run trained without fault mode 2; the
   shares of familiar / new-fault / new-baseline units named each kind, and the AUROC per
   layer and kind (layer ``input`` is the raw-input baseline).

Models are trained here through the steps (default architecture; fewer epochs and no refit
to keep the benchmark short: speed depends on the architecture, not on training), or
reused from ``--work`` when already there.

    PYTHONPATH=src:. python benchmarks/score.py [--work data/bench-score] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CMAPSS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"
if not CMAPSS.is_dir():
    CMAPSS = Path("/work/shared/data/cmapss")


def train(cfg, root: Path) -> Path:  # noqa: ANN001
    from pdmlens import steps
    from pdmlens.scoring import build_bundle

    if not (root / "evaluate" / "output.json").is_file():
        steps.ingest(cfg, root / "ingest")
        steps.prepare(cfg, root / "ingest", root / "prepare")
        steps.train_lstm(cfg, root / "prepare", root / "lstm")
        steps.train_forest(cfg, root / "prepare", root / "forest")
        steps.evaluate(cfg, root / "prepare", root / "lstm", root / "forest", root / "evaluate")
    if not (root / "bundle" / "bundle.json").is_file():
        build_bundle(cfg, root / "prepare", root / "lstm", root / "forest", root / "bundle")
    return root / "bundle"


def common(epochs: int) -> list[str]:
    return [
        f"model.lstm.epochs={epochs}",
        "model.lstm.refit=false",
        "model.lstm.num_threads=1",
        "model.forest.n_jobs=1",
    ]


def fd001(work: Path, epochs: int) -> dict:
    from pdmlens.config import RunConfig
    from pdmlens.data.sources import load_source
    from pdmlens.scoring import ScoringBundle, score_fleet

    cfg = RunConfig().with_overrides(
        ["data.source=cmapss", f"data.path={CMAPSS}", "data.subset=FD001", *common(epochs)]
    )
    bundle_dir = train(cfg, work / "fd001")
    bundle = ScoringBundle.load(bundle_dir)
    fleet = load_source(cfg.data, seed=cfg.seed).test
    score_fleet(bundle, fleet.frame.head(500), explain="all")  # warm-up (imports, threads)
    t0 = time.perf_counter()
    scores = score_fleet(bundle, fleet, explain="all")
    seconds = time.perf_counter() - t0
    # the evaluate step's last-window predictions (its test RMSE, to the bit), and every
    # window's predictions (batched with other windows: equal up to float rounding)
    from pdmlens import metrics as M
    from pdmlens.data.prepare import PreparedData

    data = PreparedData.load(work / "fd001" / "prepare")
    lw = data.windows("test", cfg.window, "rul_raw", last_only=True)
    metrics = json.loads((work / "fd001" / "evaluate" / "output.json").read_text())["metrics"]
    tab = scores.table.set_index("unit").loc[[str(u) for u in lw.window_units]]
    exact = True
    for m, dtype in (("lstm", np.float32), ("forest", np.float64)):
        pred = tab[f"rul_{m}"].to_numpy().astype(dtype)
        rep = M.regression_report(pred, lw.window_targets, cfg.prepare.rul_cap)
        exact &= rep["rmse"] == metrics[f"{m}_test_rmse"]
    ev = pd.read_parquet(work / "fd001" / "evaluate" / "predictions.parquet")
    last = ev.groupby("unit", sort=False).tail(1).set_index("unit")
    diff = max(
        float(np.abs(tab.loc[last.index, f"rul_{m}"] - last[m].astype(np.float64)).max())
        for m in ("lstm", "forest")
    )
    return {
        "units": len(scores.table),
        "seconds": seconds,
        "parts": scores.seconds,
        "bit_exact": exact,
        "max_diff_every_window": diff,
        "counts": scores.counts(),
    }


def simulated(work: Path, epochs: int) -> Path:
    from pdmlens.config import RunConfig

    cfg = RunConfig().with_overrides(["data.simulator.fault_mode_subset=[0,1]", *common(epochs)])
    return train(cfg, work / "simulated")


def fleet_child(bundle_dir: str, n: int, explain: str) -> None:
    """(In a fresh process) score ``n`` simulated test machines; print JSON."""
    from pdmlens.data.simulate import simulate_fleet
    from pdmlens.scoring import ScoringBundle, score_fleet

    bundle = ScoringBundle.load(bundle_dir)
    sim = bundle.cfg.data.simulator.model_copy(update={"n_units": 1, "n_test_units": n})
    fleet = simulate_fleet(sim, seed=77).test
    assert fleet is not None
    rows = fleet.n_rows
    t0 = time.perf_counter()
    scores = score_fleet(bundle, fleet, explain=explain, keep_frames=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    print(
        json.dumps(
            {
                "units": len(scores.table),
                "rows": rows,
                "seconds": seconds,
                "parts": scores.seconds,
                "peak_rss_mib": peak,
            }
        )
    )


def fleet(bundle_dir: Path, n: int, explain: str) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, "fleet-child", str(bundle_dir), str(n), explain],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "fleet-child":
        fleet_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/bench-score"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--machines", type=int, default=10_000)
    ap.add_argument("--skip", nargs="*", default=[], help="fd001, fleet, novelty")
    args = ap.parse_args()
    from pdmlens.runtime.threads import compute_threads

    pd.set_option("display.width", 160)
    rows = []
    if "fd001" not in args.skip:
        with compute_threads(1):
            r = fd001(args.work, args.epochs)
        p = r["parts"]
        rows.append(
            {
                "what": f"FD001 test, {r['units']} engines",
                "seconds": r["seconds"],
                "prepare+predict": p["prepare"] + p["predict"],
                "novelty": p["novelty"],
                "explain": p["explain"],
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "note": f"test RMSE bit-exact vs evaluate: {r['bit_exact']}; max |diff| vs its "
                f"every-window predictions {r['max_diff_every_window']:.1e}",
            }
        )
    bundle = simulated(args.work, args.epochs)
    if "fleet" not in args.skip:
        for explain in ("alerts", "all"):
            r = fleet(bundle, args.machines, explain)
            p = r["parts"]
            rows.append(
                {
                    "what": f"simulated, {r['units']} machines ({r['rows']} rows), "
                    f"explain {explain}",
                    "seconds": r["seconds"],
                    "prepare+predict": p["prepare"] + p["predict"],
                    "novelty": p["novelty"],
                    "explain": p["explain"],
                    "peak_rss_mib": r["peak_rss_mib"],
                    "note": "",
                }
            )
    if rows:
        print("\nScoring speed (after loading; 1 thread)\n")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if "novelty" not in args.skip:
        from pdmlens.scoring import ScoringBundle
        from pdmlens.scoring.experiment import run_experiment

        b = ScoringBundle.load(bundle)
        _, shares, auroc = run_experiment(b, [2], n_units=60)
        print("\nNovelty kinds, fault mode 2 held out of training (60 units per group)\n")
        print(shares.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print("\nAUROC per layer and kind (input = the raw-input baseline)\n")
        print(auroc.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
