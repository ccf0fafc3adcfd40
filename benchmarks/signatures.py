"""The "shown a 2" experiment: does an LSTM notice a fault mode it was never trained on?

Train the LSTM (RUL task) on simulated units of one fault mode only
(``fault_mode_subset=[0]``), then compare held-out units of that mode (familiar) with units
of another mode (unfamiliar), layer by layer. Every fleet is run to failure and the held-out
fleets come from other seeds (new units, same plant), so both sides cover the same RUL range.

- novelty: a scorer per layer (Mahalanobis with Ledoit-Wolf covariance, and k-th nearest
  neighbour) fitted on the training signatures, its alarm threshold calibrated on the
  familiar validation units (95% pass), then AUROC, the false-alarm rate at 95% detection
  and the detection rate at the threshold, familiar vs unfamiliar. Baselines: the input
  window as layer 0 (last step + window mean), the last step alone, the whole window.
- separation: clusters and a linear probe fitted on training signatures, scored against the
  health stages on the familiar held-out units; the layer picked by the "from which layer"
  rule; what the chosen layer's clusters mean; the most stage-selective hidden units.

Windows are scored in three sets: all of them, those with true RUL < 75 (degrading or
worse) and those with RUL < 30 (critical). Early in life no fault is expressed yet and
every mode produces the same data, so on all windows the AUROC has a ceiling well below 1.

    .venv/bin/python benchmarks/signatures.py [--json PATH] [--figures DIR] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pdmlens.config import RunConfig
from pdmlens.data.prepare import prepare
from pdmlens.data.simulate import simulate_fleet
from pdmlens.data.windows import WindowDataset
from pdmlens.models.lstm import LSTMEstimator
from pdmlens.runtime.threads import compute_threads
from pdmlens.signatures.cluster import (
    SignatureClusterer,
    describe_clusters,
    input_signature,
    layer_label,
    signatures_from_lstm,
    stage_names,
    stage_of,
)
from pdmlens.signatures.layers import first_separating_layer, layer_separation
from pdmlens.signatures.novelty import novelty_by_layer
from pdmlens.signatures.selectivity import unit_selectivity

log = logging.getLogger("benchmarks.signatures")
FLAT = "input (whole window)"
LAST = "input (last step)"
BASELINES = (LAST, FLAT)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--figures", type=Path, default=None, help="save PNG figures here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--familiar-mode", type=int, default=0)
    p.add_argument("--unfamiliar-mode", type=int, default=1)
    p.add_argument(
        "--units",
        type=int,
        default=100,
        help="units of the familiar mode for training + validation",
    )
    p.add_argument(
        "--heldout-units",
        type=int,
        default=30,
        help="units in each held-out fleet (familiar mode and unfamiliar mode)",
    )
    p.add_argument("--window", type=int, default=30)
    p.add_argument("--stride", type=int, default=2, help="window stride (all splits)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument(
        "--max-train",
        type=int,
        default=4000,
        help="at most this many training signatures fit scorers and clusters",
    )
    p.add_argument("--methods", default="mahalanobis,knn")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS/OpenMP threads (1 is fastest on a busy machine)",
    )
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def build_config(a: argparse.Namespace, mode: int, n_units: int) -> RunConfig:
    return RunConfig().with_overrides(
        {
            "seed": a.seed,
            "data.simulator.n_units": n_units,
            "data.simulator.n_test_units": 0,
            "data.simulator.fault_mode_subset": [mode],
            "window.length": a.window,
            "window.stride": a.stride,
            "model.lstm.hidden_size": a.hidden,
            "model.lstm.num_layers": a.layers,
            "model.lstm.epochs": a.epochs,
            "model.lstm.device": a.device,
            "model.lstm.num_threads": a.threads,
        }
    )


def signatures(est: LSTMEstimator, ds: WindowDataset) -> dict[Any, np.ndarray]:
    """Layer 0 (input: last step + window mean), every LSTM layer, then two more input
    baselines: the last step alone and the whole window flattened."""
    x = ds.all_windows()
    out: dict[Any, np.ndarray] = {0: input_signature(x, "last_mean")}
    out.update(signatures_from_lstm(est.network_.lstm, x))
    out[LAST] = input_signature(x, "last")
    out[FLAT] = input_signature(x, "flat")
    return out


def subset(sigs: dict[Any, np.ndarray], idx: np.ndarray) -> dict[Any, np.ndarray]:
    return {k: v[idx] for k, v in sigs.items()}


def run(a: argparse.Namespace) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # every fleet is run to failure, so familiar and unfamiliar held-out units cover the
    # same RUL range; held-out fleets come from other seeds (other units, same plant)
    cfg = build_config(a, a.familiar_mode, a.units)
    fam_splits = simulate_fleet(cfg.data.simulator, a.seed)
    held_fam = simulate_fleet(
        build_config(a, a.familiar_mode, a.heldout_units).data.simulator, a.seed + 1000
    ).train
    held_unf = simulate_fleet(
        build_config(a, a.unfamiliar_mode, a.heldout_units).data.simulator, a.seed + 2000
    ).train
    data = prepare(fam_splits, cfg)
    fam_frame = data.preparer.transform(held_fam)
    unf_frame = data.preparer.transform(held_unf)
    timings["simulate+prepare"] = time.perf_counter() - t0

    modes_fam = sorted(
        set(fam_splits.train.meta.fault_modes.values()) | set(held_fam.meta.fault_modes.values())
    )
    modes_unf = sorted(set(held_unf.meta.fault_modes.values()))
    log.info("familiar modes %s, unfamiliar modes %s", modes_fam, modes_unf)
    if set(modes_fam) & set(modes_unf):
        raise SystemExit(f"fault modes overlap: {modes_fam} vs {modes_unf}")

    win = cfg.window
    train_ds = data.windows("train", win)
    val_ds = data.windows("val", win)
    fam_ds = WindowDataset(
        fam_frame, data.features, win.length, target="rul", stride=win.stride, pad=win.pad
    )
    unf_ds = WindowDataset(
        unf_frame, data.features, win.length, target="rul", stride=win.stride, pad=win.pad
    )

    t = time.perf_counter()
    est = LSTMEstimator.from_config(cfg)
    est.fit(train_ds, val_ds)  # the estimator logs each epoch
    timings["train_lstm"] = time.perf_counter() - t
    rmse = {
        name: float(np.sqrt(np.mean((est.predict(ds) - ds.window_targets) ** 2)))
        for name, ds in (("val", val_ds), ("familiar_test", fam_ds), ("unfamiliar_test", unf_ds))
    }

    t = time.perf_counter()
    sig_train = signatures(est, train_ds)
    sig_val = signatures(est, val_ds)
    sig_fam = signatures(est, fam_ds)
    sig_unf = signatures(est, unf_ds)
    timings["signatures"] = time.perf_counter() - t

    rng = np.random.RandomState(a.seed)
    n_tr = len(train_ds)
    fit_idx = (
        np.sort(rng.choice(n_tr, a.max_train, replace=False))
        if n_tr > a.max_train
        else np.arange(n_tr)
    )
    sig_fit = subset(sig_train, fit_idx)

    bins = cfg.signatures.stage_bins
    # all windows; degrading or worse (true RUL < the healthy stage's lower edge); critical
    limits = {
        "all_windows": np.inf,
        f"rul<{bins[-2]:g}": float(bins[-2]),
        f"rul<{bins[1]:g}": float(bins[1]),
    }
    sample_sets = {
        name: tuple(np.flatnonzero(ds.window_targets < lim) for ds in (fam_ds, unf_ds, val_ds))
        for name, lim in limits.items()
    }
    novelty: dict[str, Any] = {}
    plot_scores: dict[str, Any] = {}
    t = time.perf_counter()
    for set_name, (fi, ui, vi) in sample_sets.items():
        for method in a.methods.split(","):
            table, scores = novelty_by_layer(
                sig_fit,
                subset(sig_val, vi),
                subset(sig_fam, fi),
                subset(sig_unf, ui),
                method=method,
                k=cfg.signatures.novelty_knn,
                tnr=cfg.signatures.novelty_tnr,
                seed=a.seed,
            )
            novelty[f"{set_name}/{method}"] = table
            plot_scores[f"{set_name}/{method}"] = (table, scores)
    timings["novelty"] = time.perf_counter() - t

    t = time.perf_counter()
    layers = [k for k in sig_train if k not in BASELINES]
    order = stage_names(bins)
    st_train = stage_of(train_ds.window_targets[fit_idx], bins)
    st_fam = stage_of(fam_ds.window_targets, bins)
    groups = train_ds.window_units[fit_idx]
    sep = layer_separation(
        {k: sig_fit[k] for k in layers},
        st_train,
        {k: sig_fam[k] for k in layers},
        st_fam,
        seed=a.seed,
        k=cfg.signatures.k,
        k_range=cfg.signatures.k_range,
        train_groups=groups,
        silhouette_sample=cfg.signatures.silhouette_sample,
    )
    choice = first_separating_layer(sep, cfg.signatures.separation_metric, cfg.signatures.tolerance)
    timings["separation"] = time.perf_counter() - t

    # what the chosen layer's clusters mean: fitted on train, read on familiar held-out units
    t = time.perf_counter()
    clu = SignatureClusterer(k=int(sep.loc[choice.layer, "k"]), seed=a.seed)
    labels = clu.fit(sig_fit[choice.layer]).predict(sig_fam[choice.layer])
    last_step = pd.DataFrame(fam_ds.all_windows()[:, -1, :], columns=data.features)
    sentences = describe_clusters(labels, st_fam, last_step, top=3, order=order)
    selective = unit_selectivity_or_none(est, fam_ds, bins, cfg)
    timings["describe+selectivity"] = time.perf_counter() - t

    if a.figures is not None:
        save_figures(a.figures, sep, choice.layer, plot_scores, sig_fam, st_fam, order, a.seed, cfg)

    return {
        "config": vars(a) | {"json": str(a.json), "figures": str(a.figures)},
        "familiar_modes": modes_fam,
        "unfamiliar_modes": modes_unf,
        "n_windows": {
            "train": n_tr,
            "train_fit": len(fit_idx),
            "val": len(val_ds),
            "familiar_test": len(fam_ds),
            "unfamiliar_test": len(unf_ds),
            **{f"{s}/familiar": len(v[0]) for s, v in sample_sets.items()},
            **{f"{s}/unfamiliar": len(v[1]) for s, v in sample_sets.items()},
        },
        "lstm_rmse": rmse,
        "novelty": {
            key: _records(
                tab, ["auroc", "fpr_at_95_tpr", "detection_rate", "false_alarm_rate", "threshold"]
            )
            for key, tab in novelty.items()
        },
        "separation": _records(
            sep,
            [
                "k",
                "silhouette",
                "purity",
                "ari",
                "nmi",
                "probe_accuracy",
                "probe_cv_accuracy",
                "majority_baseline",
            ],
        ),
        "first_separating_layer": {**choice.as_dict(), "sentence": choice.sentence()},
        "clusters_of_chosen_layer": sentences,
        "fault_sensors": {m: held_unf.meta.fault_sensors.get(m) for m in modes_fam + modes_unf},
        "selective_units": selective,
        "timings_s": timings,
    }


def unit_selectivity_or_none(
    est: LSTMEstimator, ds: WindowDataset, bins: list[float], cfg: RunConfig
) -> list[dict[str, Any]] | None:
    """Top 3 stage-selective hidden units (h over each window), when the gates module
    exists (None otherwise)."""
    try:
        from pdmlens.explain.gates import extract_gates
    except ImportError:
        log.warning("pdmlens.explain.gates not available: unit selectivity skipped")
        return None
    x = torch.from_numpy(ds.all_windows())
    trace = extract_gates(est.network_.lstm, x)
    rul_steps = ds.window_targets[:, None] + np.arange(ds.length - 1, -1, -1)[None, :]
    stages = stage_of(np.minimum(rul_steps, bins[-1]), bins)
    acts = {li + 1: np.asarray(layer["h"]) for li, layer in enumerate(trace.layers)}
    df = unit_selectivity(
        acts,
        stages,
        threshold=cfg.signatures.selectivity_threshold,
        min_run=cfg.signatures.selectivity_min_run,
        top=3,
        order=stage_names(bins),
    )
    df["layer"] = df["layer"].map(layer_label)
    return df.to_dict(orient="records")


def _records(table: pd.DataFrame, cols: list[str]) -> dict[str, dict[str, float]]:
    return {
        layer_label(k): {c: float(table.loc[k, c]) for c in cols if c in table.columns}
        for k in table.index
    }


def save_figures(
    directory: Path,
    sep: pd.DataFrame,
    chosen: Any,
    plot_scores: dict,
    sig_fam: dict,
    st_fam: np.ndarray,
    order: list[str],
    seed: int,
    cfg: RunConfig,
) -> None:
    from pdmlens.report.signature_plots import (
        plot_layer_separation,
        plot_novelty_distributions,
        plot_signature_projection,
    )

    directory.mkdir(parents=True, exist_ok=True)
    plot_layer_separation(sep, chosen=chosen).savefig(directory / "separation.png", dpi=80)
    for key, (table, scores) in plot_scores.items():
        fig = plot_novelty_distributions(scores, table["threshold"].to_dict(), table)
        safe = key.replace("/", "_").replace("<", "_lt_")
        fig.savefig(directory / f"novelty_{safe}.png", dpi=80)
    layers = [k for k in sig_fam if k not in BASELINES]
    clusters = {
        k: SignatureClusterer(k=int(sep.loc[k, "k"]), seed=seed).fit(sig_fam[k]).labels_
        for k in layers
    }
    plot_signature_projection(
        {k: sig_fam[k] for k in layers}, clusters, st_fam, order, seed=seed
    ).savefig(directory / "projection.png", dpi=80)


def print_report(res: dict[str, Any]) -> None:
    print(f"familiar modes {res['familiar_modes']}  unfamiliar modes {res['unfamiliar_modes']}")
    print("windows:", res["n_windows"])
    print("LSTM RMSE (cycles):", {k: round(v, 2) for k, v in res["lstm_rmse"].items()})
    for key, rows in res["novelty"].items():
        print(f"\nnovelty, {key}")
        print(f"  {'layer':<22}{'AUROC':>8}{'FPR@95TPR':>11}{'detect@thr':>12}{'false@thr':>11}")
        for layer, r in rows.items():
            print(
                f"  {layer:<22}{r['auroc']:>8.3f}{r['fpr_at_95_tpr']:>11.3f}"
                f"{r['detection_rate']:>12.3f}{r['false_alarm_rate']:>11.3f}"
            )
    print("\nseparation of health stages on familiar held-out units")
    cols = ["k", "purity", "ari", "nmi", "probe_accuracy", "probe_cv_accuracy", "majority_baseline"]
    print(f"  {'layer':<22}" + "".join(f"{c[:12]:>13}" for c in cols))
    for layer, r in res["separation"].items():
        print(f"  {layer:<22}" + "".join(f"{r[c]:>13.3f}" for c in cols))
    print("\n" + res["first_separating_layer"]["sentence"])
    print("its clusters, read on familiar held-out units:")
    for line in res["clusters_of_chosen_layer"]:
        print("  " + line)
    print("true fault sensors:", res["fault_sensors"])
    if res["selective_units"]:
        print("most stage-selective hidden units (h, familiar held-out windows):")
        for r in res["selective_units"]:
            print(
                f"  {r['stage']:<20} {r['layer']:<14} unit {r['unit']:>3} ({r['direction']})"
                f"  f1 {r['f1']:.3f}  precision {r['precision']:.3f}  recall {r['recall']:.3f}"
            )
    print("timings (s):", {k: round(v, 1) for k, v in res["timings_s"].items()})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    a = parse(argv)
    with compute_threads(a.threads):
        res = run(a)
    print_report(res)
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
