"""The models on C-MAPSS (or the simulated fleet), beside published results.

Per seed (the seed sets the train/validation unit split, the weights and the forest):

- RUL task, window from the config: the LSTM and the random forest trained on the training
  units, early-stopped / checked on the validation units, and scored on the test fleet by
  the C-MAPSS protocol (one prediction per test unit at its last cycle, true RUL capped at
  the config's cap): RMSE, PHM08 score, MAE, and the same over every test window and
  against the uncapped truth.
- horizon task ("fails within <horizon> cycles", window 50 by default): both models scored
  on the last full window of each test unit that has one (93 FD001 test engines), and on
  the validation units cut off like the test set (``val_cut_f1``, before any refit). The
  LSTM learns the RUL capped at ``horizon_cap`` horizons, the forest the 0/1 label.

With ``model.lstm.refit`` (the default) the LSTM reported is the one the pipeline ships:
retrained on training + validation units for the epoch count early stopping chose; the
early-stopped model it came from is reported beside it.

Nothing is chosen on the test set: the defaults of ``RunConfig`` are used as they stand
(their choice, on validation units, is written down in docs/model_choices.md).

``--simulated`` runs the same on the built-in simulated fleet (its defaults, as ``pdmlens
run`` has them) and adds a constant predictor (the training mean RUL) as the floor any
model must beat; its validation units are cut like its test units (at least
``test_min_cycles`` kept). Every model's row also gives ``late >20``, the share of test
units predicted more than 20 cycles late (the costly mistake in maintenance), and the
validation figures (RMSE, late share) of the validation units cut like the test set.

    .venv/bin/python benchmarks/cmapss.py --data ../shared/data/cmapss --subset FD001 \\
        --seeds 0 1 2 [--json PATH] [--skip-horizon] [--set model.lstm.epochs=30 ...]
    .venv/bin/python benchmarks/cmapss.py --simulated --seeds 0 [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from pdmlens import metrics
from pdmlens.config import RunConfig, parse_overrides
from pdmlens.data.fleet import RUL_RAW, FleetSplits
from pdmlens.data.prepare import PreparedData, prepare
from pdmlens.data.sources import load_source
from pdmlens.data.windows import WindowDataset, cut_units
from pdmlens.models.forest import ForestEstimator
from pdmlens.models.lstm import LSTMEstimator
from pdmlens.task import HORIZON, LSTM_TARGET, RUL

log = logging.getLogger("benchmarks.cmapss")

PUBLISHED = [
    ("CNN (Babu et al. 2016)", 18.45, 1287.0),
    ("deep LSTM (Zheng et al. 2017)", 16.14, 338.0),
    ("DCNN (Li et al. 2018)", 12.61, 274.0),
]
PUBLISHED_HORIZON = "LSTM (FD001, window 50, 93 engines): accuracy ~0.97-0.98, F1 ~0.96"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data/cmapss"),
        help="folder with train_/test_/RUL_<subset>.txt[.gz]",
    )
    p.add_argument("--subset", default="FD001")
    p.add_argument(
        "--simulated", action="store_true", help="the built-in simulated fleet instead of C-MAPSS"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--skip-horizon", action="store_true")
    p.add_argument("--skip-forest", action="store_true")
    p.add_argument(
        "--val-cuts",
        type=int,
        default=0,
        help="early-stop the LSTM on validation units cut off this many times "
        "each at random cycles, last window scored (the test protocol); "
        "0: on every validation window (val_cut_rmse is reported either "
        "way, with 10 cuts per unit)",
    )
    p.add_argument("--horizon-window", type=int, default=50)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the LSTM (default: the config's)",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. model.lstm.epochs=30",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    return p.parse_args(argv)


def build_config(a: argparse.Namespace, seed: int) -> RunConfig:
    over: dict[str, Any] = {"seed": seed}
    if a.simulated:
        over["data.source"] = "simulated"
    else:
        over.update({"data.source": "cmapss", "data.path": str(a.data), "data.subset": a.subset})
    if a.threads is not None:
        over["model.lstm.num_threads"] = a.threads
    over.update(parse_overrides(a.set))
    return RunConfig().with_overrides(over)


def load(cfg: RunConfig) -> FleetSplits:
    """The configured source, loaded and validated as the pipeline's ingest step does
    (without refusing short units: the benchmark's window lengths vary)."""
    return load_source(cfg.data, seed=cfg.seed)


def rul_task(prep: PreparedData, cfg: RunConfig, a: argparse.Namespace) -> dict[str, Any]:
    w, cap = cfg.window, cfg.prepare.rul_cap
    train, val = prep.windows("train", w, LSTM_TARGET), prep.windows("val", w, LSTM_TARGET)
    last = prep.windows("test", w, RUL_RAW, last_only=True)
    every = prep.windows("test", w, RUL_RAW)
    out: dict[str, Any] = {"n_train_windows": len(train), "n_test_units": len(last)}

    # the test protocol on validation units: each cut off at 10 random cycles (the same
    # cuts for every window length), the last window of each copy scored
    # (on the simulated fleet cut as its test units are: at least test_min_cycles kept)
    min_rows = cfg.data.simulator.test_min_cycles if a.simulated else 1
    cut = WindowDataset(
        cut_units(prep.val, a.val_cuts or 10, cfg.seed, min_rows=min_rows),
        prep.features,
        w.length,
        target=LSTM_TARGET,
        pad=w.pad,
        last_only=True,
    )
    t0 = time.perf_counter()
    lstm = LSTMEstimator.from_config(cfg, task=RUL.name).fit(train, cut if a.val_cuts else val)
    fit_s = time.perf_counter() - t0
    cut_pred = lstm.predict(cut)
    val_cut = metrics.rmse(cut_pred, cut.window_targets)
    shipped, early, refit_s = _refit(cfg, prep, LSTM_TARGET, lstm)
    # validation RMSE on the windows every length up to 50 shares (ending at cycle >= 50),
    # so that window lengths can be compared fairly
    pos = val.end_row - val.unit_start[val.window_unit_index]
    common = np.flatnonzero(pos >= 49)
    val_common = metrics.rmse(lstm.predict(val.batch(common)[0]), val.window_targets[common])
    stopped = {
        "val_rmse_common": val_common,
        "val_cut_rmse": val_cut,
        "val_cut_late_20": metrics.late_share(cut_pred, cut.window_targets),
        "train_seconds": fit_s,
        "epochs_run": len(lstm.history_),
        "best_epoch": lstm.best_epoch_,
        "val_rmse": lstm.history_[lstm.best_epoch_].get("val_rmse", float("nan")),
        "seconds_per_epoch": float(np.median([h["seconds"] for h in lstm.history_])),
        **_flat(metrics.evaluate_rul(lstm.predict, last, every, cap)),
    }
    if early is None:
        out["lstm"] = stopped
    else:
        out["lstm_early_stopped"] = stopped
        out["lstm"] = {
            **{
                k: stopped[k]
                for k in (
                    "val_rmse",
                    "val_rmse_common",
                    "val_cut_rmse",
                    "val_cut_late_20",
                    "best_epoch",
                    "epochs_run",
                )
            },
            "train_seconds": fit_s + refit_s,
            **_flat(metrics.evaluate_rul(shipped.predict, last, every, cap)),
        }
    if not a.skip_forest:
        t0 = time.perf_counter()
        forest = ForestEstimator.from_config(cfg, task=RUL.name).fit(train, val)
        forest_cut = forest.predict(cut)
        out["forest"] = {
            "train_seconds": time.perf_counter() - t0,
            "val_rmse": forest.val_metrics_.get("rmse", float("nan")),
            "val_cut_rmse": metrics.rmse(forest_cut, cut.window_targets),
            "val_cut_late_20": metrics.late_share(forest_cut, cut.window_targets),
            **_flat(metrics.evaluate_rul(forest.predict, last, every, cap)),
        }
    if a.simulated:
        const = float(np.mean(train.window_targets))
        out["constant"] = _flat(
            metrics.evaluate_rul(lambda ds: np.full(len(ds), const), last, every, cap)
        )
    return out


def horizon_task(prep: PreparedData, cfg: RunConfig, a: argparse.Namespace) -> dict[str, Any]:
    cfg = cfg.with_overrides({"window.length": a.horizon_window})
    w, col = cfg.window, prep.horizon_col
    train, val = prep.windows("train", w, col), prep.windows("val", w, col)
    proto = metrics.last_full_windows(prep.test, prep.features, w.length, col)
    # the protocol replayed on validation units: each cut off at 10 random cycles, the last
    # full window of each copy (what the horizon design was chosen on; docs/model_choices.md)
    cut = WindowDataset(
        cut_units(prep.val, 10, cfg.seed),
        prep.features,
        w.length,
        target=col,
        last_only=True,
        full_only=True,
    )
    out: dict[str, Any] = {"n_units": len(proto), "label": col}
    t0 = time.perf_counter()
    lstm = LSTMEstimator.from_config(cfg, task=HORIZON.name).fit(
        prep.windows("train", w, LSTM_TARGET), prep.windows("val", w, LSTM_TARGET)
    )
    fit_s = time.perf_counter() - t0
    shipped, early, refit_s = _refit(cfg, prep, LSTM_TARGET, lstm)
    stopped = {
        "train_seconds": fit_s,
        "val_cut_f1": metrics.evaluate_horizon(lstm.predict, cut, lstm.threshold_)["f1"],
        **metrics.evaluate_horizon(lstm.predict, proto, lstm.threshold_),
    }
    if early is None:
        out["lstm"] = stopped
    else:
        out["lstm_early_stopped"] = stopped
        out["lstm"] = {
            "train_seconds": fit_s + refit_s,
            **metrics.evaluate_horizon(shipped.predict, proto, shipped.threshold_),
        }
    if not a.skip_forest:
        t0 = time.perf_counter()
        forest = ForestEstimator.from_config(cfg, task=HORIZON.name).fit(train, val)
        out["forest"] = {
            "train_seconds": time.perf_counter() - t0,
            "val_cut_f1": metrics.evaluate_horizon(forest.predict, cut, forest.threshold_)["f1"],
            **metrics.evaluate_horizon(forest.predict, proto, forest.threshold_),
        }
    return out


def _refit(
    cfg: RunConfig, prep: PreparedData, target: str, lstm: LSTMEstimator
) -> tuple[LSTMEstimator, LSTMEstimator | None, float]:
    """(the model the pipeline ships, the early-stopped one or None, seconds of the refit):
    with ``model.lstm.refit`` the pipeline retrains on train + validation units (windows of
    ``cfg.window``), and so does this benchmark."""
    if not cfg.model.lstm.refit:
        return lstm, None, 0.0
    from pdmlens.steps import refit_lstm

    t0 = time.perf_counter()
    return refit_lstm(cfg, prep, target, lstm), lstm, time.perf_counter() - t0


def _flat(ev: dict[str, dict[str, float]]) -> dict[str, float]:
    """{"last": {...}, "all": {...}} -> last-window figures plain, all-window ones ``all_``."""
    out = dict(ev["last"])
    out.update({f"all_{k}": v for k, v in ev.get("all", {}).items()})
    return out


def run(a: argparse.Namespace) -> dict[str, Any]:
    per_seed = []
    for seed in a.seeds:
        cfg = build_config(a, seed)
        t0 = time.perf_counter()
        prep = prepare(load(cfg), cfg)
        if prep.test is None:
            raise SystemExit("the data has no test split to score on")
        log.info(
            "seed %d: prepared in %.1fs (%d features)",
            seed,
            time.perf_counter() - t0,
            len(prep.features),
        )
        res: dict[str, Any] = {"seed": seed, "rul": rul_task(prep, cfg, a)}
        if not a.skip_horizon:
            res["horizon"] = horizon_task(prep, cfg, a)
        per_seed.append(res)
        log.info("seed %d done: %s", seed, _headline(res))
    return summarise(per_seed, a)


def _headline(res: dict[str, Any]) -> str:
    r = res["rul"]
    parts = [
        f"lstm rmse {r['lstm']['rmse']:.2f} score {r['lstm']['score']:.0f} "
        f"({r['lstm']['train_seconds']:.0f}s)"
    ]
    if "forest" in r:
        parts.append(f"forest rmse {r['forest']['rmse']:.2f} score {r['forest']['score']:.0f}")
    if "horizon" in res:
        parts.append(f"horizon f1 lstm {res['horizon']['lstm']['f1']:.3f}")
    return ", ".join(parts)


def summarise(per_seed: list[dict[str, Any]], a: argparse.Namespace) -> dict[str, Any]:
    def collect(path: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for k in keys:
            vals = []
            for res in per_seed:
                node: Any = res
                for p in path:
                    node = node.get(p) if isinstance(node, dict) else None
                if isinstance(node, dict) and k in node:
                    vals.append(float(node[k]))
            if vals:
                out[k] = vals
        return out

    reg = (
        "rmse",
        "score",
        "mae",
        "bias",
        "late_20",
        "rmse_uncapped",
        "score_uncapped",
        "all_rmse",
        "all_mae",
        "all_score",
        "all_rmse_uncapped",
        "val_rmse",
        "val_rmse_common",
        "val_cut_rmse",
        "val_cut_late_20",
        "train_seconds",
        "seconds_per_epoch",
        "epochs_run",
        "best_epoch",
    )
    cls = (
        "f1",
        "accuracy",
        "precision",
        "recall",
        "roc_auc",
        "pr_auc",
        "val_cut_f1",
        "train_seconds",
    )
    out: dict[str, Any] = {
        "dataset": "simulated" if a.simulated else a.subset,
        "seeds": list(a.seeds),
        "config": build_config(a, a.seeds[0]).model_dump(mode="json"),
        "lstm": collect(("rul", "lstm"), reg),
    }
    if "lstm_early_stopped" in per_seed[0]["rul"]:
        out["lstm_early_stopped"] = collect(("rul", "lstm_early_stopped"), reg)
    if not a.skip_forest:
        out["forest"] = collect(("rul", "forest"), reg)
    if a.simulated:
        out["constant"] = collect(("rul", "constant"), reg)
    if not a.skip_horizon:
        out["horizon"] = {"lstm": collect(("horizon", "lstm"), cls)}
        if "lstm_early_stopped" in per_seed[0]["horizon"]:
            out["horizon"]["lstm_early_stopped"] = collect(("horizon", "lstm_early_stopped"), cls)
        if not a.skip_forest:
            out["horizon"]["forest"] = collect(("horizon", "forest"), cls)
        out["horizon"]["n_units"] = [r["horizon"]["n_units"] for r in per_seed]
    out["per_seed"] = per_seed
    return out


def _ms(vals: list[float] | None, fmt: str = "{:.2f}", higher_is_better: bool = False) -> str:
    if not vals:
        return "-"
    m = fmt.format(float(np.mean(vals)))
    if len(vals) == 1:
        return m
    best = float(np.max(vals) if higher_is_better else np.min(vals))
    return f"{m} ± {fmt.format(float(np.std(vals)))} (best {fmt.format(best)})"


def _share(vals: list[float] | None) -> str:
    """Shares as percentages: the mean, each seed's in brackets."""
    if not vals:
        return "-"
    each = " / ".join(f"{100 * v:.0f}" for v in vals)
    return f"{100 * float(np.mean(vals)):.1f} %" + (f" ({each})" if len(vals) > 1 else "")


def print_report(res: dict[str, Any]) -> None:
    seeds = res["seeds"]
    cap = res["config"]["prepare"]["rul_cap"]
    print(
        f"\n{res['dataset']}: RUL, last cycle of each test unit, true RUL capped at {cap:g}, "
        f"seeds {seeds} (mean ± std over seeds)"
    )
    print(
        f"{'model':34s} {'RMSE':>26s} {'PHM08 score':>28s} {'late >20':>22s} {'MAE':>8s} "
        f"{'all-window RMSE':>16s} {'train s':>8s}"
    )
    refit = "lstm_early_stopped" in res
    rows = [("LSTM (ours" + (", refit on train+val)" if refit else ")"), res["lstm"])]
    if refit:
        rows.append(("LSTM before the refit (ours)", res["lstm_early_stopped"]))
    if "forest" in res:
        rows.append(("random forest (ours)", res["forest"]))
    if "constant" in res:
        rows.append(("constant (training mean)", res["constant"]))
    for name, r in rows:
        print(
            f"{name:34s} {_ms(r.get('rmse')):>26s} {_ms(r.get('score'), '{:.0f}'):>28s} "
            f"{_share(r.get('late_20')):>22s} "
            f"{_ms(r.get('mae'), '{:.2f}').split(' ')[0]:>8s} "
            f"{_ms(r.get('all_rmse')).split(' ')[0]:>16s} "
            f"{_ms(r.get('train_seconds'), '{:.0f}').split(' ')[0]:>8s}"
        )
    print(
        "late >20: the share of test units predicted more than 20 cycles late, mean over "
        "seeds (each seed's in brackets)"
    )
    cut_rows = [(n, r) for n, r in rows[1 if refit else 0 :] if "val_cut_rmse" in r]
    if cut_rows:
        print(
            "\nvalidation units cut like the test units (10 cuts each; before any refit): "
            "RMSE, late >20"
        )
        for name, r in cut_rows:
            print(
                f"{name:34s} {_ms(r.get('val_cut_rmse')):>26s} "
                f"{_share(r.get('val_cut_late_20')):>22s}"
            )
    if res["dataset"] == "FD001":
        for name, rm, sc in PUBLISHED:
            print(f"{name + ' [published]':42s} {rm:>18.2f} {sc:>28.0f}")
    if "horizon" in res:
        h = res["horizon"]
        print(
            f"\nfails within the horizon: last full window per test unit ({h['n_units'][0]} units)"
        )
        print(
            f"{'model':34s} {'F1':>22s} {'accuracy':>10s} {'ROC-AUC':>10s} {'PR-AUC':>10s} "
            f"{'val-cut F1':>11s}"
        )
        for name in ("lstm", "lstm_early_stopped", "forest"):
            if name in h:
                r = h[name]
                print(
                    f"{name:34s} {_ms(r.get('f1'), '{:.3f}', True):>22s} "
                    f"{_ms(r.get('accuracy'), '{:.3f}').split(' ')[0]:>10s} "
                    f"{_ms(r.get('roc_auc'), '{:.3f}').split(' ')[0]:>10s} "
                    f"{_ms(r.get('pr_auc'), '{:.3f}').split(' ')[0]:>10s} "
                    f"{_ms(r.get('val_cut_f1'), '{:.3f}').split(' ')[0]:>11s}"
                )
        if res["dataset"] == "FD001":
            print(f"[published] {PUBLISHED_HORIZON}")


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    log.setLevel(logging.INFO)
    res = run(a)
    print_report(res)
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
