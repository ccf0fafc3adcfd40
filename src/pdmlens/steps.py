"""The pipeline's steps as plain functions: folders in, folders out, small summaries back.

Each step reads what earlier steps wrote (Parquet, saved models), writes its own outputs
into one folder and returns a :class:`StepOutput`: the metrics to log, the figures (PNG)
and tables (Parquet) it wrote, and a few headline values. Nothing here imports Prefect or
MLflow: ``pipelines/`` wraps these functions in tasks and ``tracking.py`` logs their
outputs, so a notebook can run the same steps with neither.

The order is that of DESIGN.md: ingest -> prepare -> train LSTM and train forest ->
evaluate -> explain -> signatures -> report. ``ingest_key`` and ``prepare_key`` name the
content (input files and the config sections that shape the result), so a cache keyed by
them is reused exactly when the inputs are the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.config import RunConfig
from pdmlens.data.fleet import RUL_RAW, Fleet, FleetSplits
from pdmlens.data.prepare import PreparedData
from pdmlens.data.windows import WindowDataset

log = logging.getLogger(__name__)

OUTPUT_FILE = "output.json"
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class StepOutput:
    """What one step leaves behind, small enough to pass between tasks (JSON)."""

    step: str
    dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    """artifact path (e.g. ``figures/predictions.png``) -> local PNG file."""
    tables: dict[str, str] = field(default_factory=dict)
    """artifact path (e.g. ``explain/attributions_lstm.parquet``) -> local Parquet file."""
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def save(self) -> StepOutput:
        path = Path(self.dir) / OUTPUT_FILE
        path.write_text(json.dumps(asdict(self), indent=1, default=_json_default))
        return self

    @classmethod
    def load(cls, directory: str | Path) -> StepOutput:
        return cls(**json.loads((Path(directory) / OUTPUT_FILE).read_text()))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _clean(metrics: dict[str, Any]) -> dict[str, float]:
    """Finite floats only (MLflow and JSON both dislike NaN)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (bool, np.bool_)):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            out[k] = float(v)
    return out


def _save_fig(fig: Any, directory: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    path = directory / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(path)


# ----------------------------------------------------------------------------- cache keys


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def input_files(cfg: RunConfig) -> list[Path]:
    """The files the configured source reads (empty for the simulator)."""
    d = cfg.data
    if d.source == "cmapss" and d.path:
        folder = Path(d.path)
        return sorted(p for p in folder.glob(f"*_{d.subset}.txt*") if p.is_file())
    if d.source == "events":
        base = Path(d.path) if d.path else Path()
        return [base / p for p in (d.events.readings, d.events.failures) if p]
    if d.source == "table":
        return [Path(p) for p in (d.path, d.test_path) if p]
    return []


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def ingest_key(cfg: RunConfig) -> str:
    """Content key of the ingested fleet: the input files' bytes, the data config, the
    window length (validation refuses short units) and, for the simulator, the seed."""
    files = {str(p.name): file_digest(p) for p in input_files(cfg) if p.is_file()}
    data = cfg.data.model_dump(mode="json")
    data.pop("ingest_dir", None)
    seed = cfg.seed if cfg.data.source == "simulated" else None
    return _hash("ingest/1", files, data, cfg.window.length, seed)


def prepare_key(cfg: RunConfig, ingest: str) -> str:
    """Content key of the prepared data: the ingested fleet, the prepare config and the
    seed (it draws the train/validation split)."""
    return _hash("prepare/1", ingest, cfg.prepare.model_dump(mode="json"), cfg.seed)


# ----------------------------------------------------------------------------- ingest


def ingest(cfg: RunConfig, out_dir: str | Path) -> StepOutput:
    """Load and validate the configured source; the fleet goes to Parquet in ``out_dir``.
    A DataValidationError (naming file, column and row) stops the run here."""
    from pdmlens.data.sources import load_source

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_source(cfg.data, window=cfg.window.length, seed=cfg.seed)
    info: dict[str, Any] = {"dataset": dataset_name(cfg, splits), "hash": splits.content_hash()}
    for name, fleet in splits.items():
        fleet.to_parquet(out / f"{name}.parquet")
        info[f"{name}_units"] = len(fleet.units)
        info[f"{name}_rows"] = fleet.n_rows
    info["sensors"] = len(splits.train.sensors)
    info["fault_sensors"] = splits.train.meta.fault_sensors
    log.info(
        "ingested %s: %d training units, %d rows (hash %s)",
        info["dataset"],
        info["train_units"],
        info["train_rows"],
        info["hash"],
    )
    return StepOutput("ingest", str(out), info=info, seconds=time.perf_counter() - t0).save()


def dataset_name(cfg: RunConfig, splits: FleetSplits | None = None) -> str:
    """The name runs and registered models carry: ``simulated``, ``cmapss-FD001``, or the
    fleet's own name for tables and events."""
    if cfg.data.source == "simulated":
        return "simulated"
    if cfg.data.source == "cmapss":
        return f"cmapss-{cfg.data.subset}"
    if splits is not None and splits.train.meta.name:
        return str(splits.train.meta.name)
    return cfg.data.source


def load_fleets(ingest_dir: str | Path) -> FleetSplits:
    d = Path(ingest_dir)
    test = d / "test.parquet"
    return FleetSplits(
        train=Fleet.from_parquet(d / "train.parquet"),
        test=Fleet.from_parquet(test) if test.is_file() else None,
    )


# ----------------------------------------------------------------------------- prepare


def prepare(cfg: RunConfig, ingest_dir: str | Path, out_dir: str | Path) -> StepOutput:
    """Normalize, label and split (by unit) the ingested fleet; fitted on training units."""
    from pdmlens.data.prepare import prepare as prepare_data

    t0 = time.perf_counter()
    data = prepare_data(load_fleets(ingest_dir), cfg)
    data.save(out_dir)
    pre = data.preparer
    info = {
        "features": list(data.features),
        "train_units": int(data.train["unit"].nunique()),
        "val_units": int(data.val["unit"].nunique()),
        "test_units": 0 if data.test is None else int(data.test["unit"].nunique()),
        "dropped_sensors": list(getattr(pre, "dropped_sensors_", []) or []),
        "regimes": int(getattr(pre, "n_regimes_", 1) or 1),
    }
    log.info(
        "prepared: %d features, %d/%d/%d train/val/test units, dropped %s",
        len(data.features),
        info["train_units"],
        info["val_units"],
        info["test_units"],
        info["dropped_sensors"] or "none",
    )
    return StepOutput("prepare", str(out_dir), info=info, seconds=time.perf_counter() - t0).save()


def _target(cfg: RunConfig, data: PreparedData) -> str:
    """The column the forest learns and the explain step reads: the capped RUL or the
    failure-within-horizon label. The LSTM learns the RUL for both tasks (LSTM_TARGET)."""
    return "rul" if cfg.model.task == "rul" else data.horizon_col


LSTM_TARGET = "rul"
"""the LSTM learns the capped RUL for both tasks (its horizon task derives the label)"""


def eval_split(data: PreparedData) -> str:
    """The split evaluate scores: the test split (true RUL from the source) or, without
    one, the validation units."""
    return "test" if data.test is not None and len(data.test) else "val"


def eval_windows(cfg: RunConfig, data: PreparedData) -> tuple[str, WindowDataset, WindowDataset]:
    """(split name, last window per unit, every window) of :func:`eval_split`."""
    split = eval_split(data)
    if cfg.model.task == "rul":
        target = RUL_RAW if split == "test" else "rul"
    else:
        target = data.horizon_col
    last = data.windows(split, cfg.window, target, last_only=True)
    every = data.windows(split, cfg.window, target)
    return split, last, every


# ----------------------------------------------------------------------------- train


def train_lstm(
    cfg: RunConfig,
    prepared_dir: str | Path,
    out_dir: str | Path,
    callback: EpochCallback | None = None,
) -> StepOutput:
    """Fit the LSTM on the training units, early-stopped on the validation units."""
    from pdmlens.models.lstm import LSTMEstimator
    from pdmlens.report.model_plots import learning_curves

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    target = LSTM_TARGET
    train, val = data.windows("train", cfg.window, target), data.windows("val", cfg.window, target)
    est = LSTMEstimator.from_config(cfg).fit(train, val, callback=callback)
    # the horizon task's alarm rule, and where its scale came from (a refit keeps both)
    decision = est.alarm_rule() if est.task == "horizon" else None
    best = est.history_[est.best_epoch_] if est.best_epoch_ >= 0 else est.history_[-1]
    history, best_epoch = est.history_, est.best_epoch_
    if cfg.model.lstm.refit:
        log.info("refit on train + validation units for %d epochs", best_epoch + 1)
        refit_cb = (
            None
            if callback is None
            else (
                lambda e, row: callback(
                    e, {k if k == "epoch" else f"refit_{k}": v for k, v in row.items()}
                )
            )
        )
        est = refit_lstm(cfg, data, target, est, callback=refit_cb)
    est.save(out / "lstm.pt")
    _save_example(val, out)
    metrics = _clean(
        {
            "train_seconds": time.perf_counter() - t0,
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "best_val_loss": best.get("val_loss"),
            "best_val_rmse": best.get("val_rmse"),
            # horizon task: P(failure within h) = sigmoid((h + 0.5 - RUL) / scale)
            "horizon_scale": getattr(est, "horizon_scale_", None),
        }
    )
    figs = {
        "figures/learning_curves.png": _save_fig(
            learning_curves(history, best_epoch), out, "learning_curves"
        )
    }
    info = {
        "model": str(out / "lstm.pt"),
        "device": str(est.device_),
        "history": history,
        "refit": cfg.model.lstm.refit,
    }
    if decision:
        info["decision"] = decision
    return StepOutput(
        "train_lstm",
        str(out),
        metrics=metrics,
        figures=figs,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()


def train_forest(cfg: RunConfig, prepared_dir: str | Path, out_dir: str | Path) -> StepOutput:
    """Fit the random forest on per-window features of the training units."""
    from pdmlens.models.forest import ForestEstimator

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    target = _target(cfg, data)
    train, val = data.windows("train", cfg.window, target), data.windows("val", cfg.window, target)
    est = ForestEstimator.from_config(cfg).fit(train, val)
    est.save(out / "forest.joblib")
    _save_example(val, out)
    metrics = _clean(
        {
            "train_seconds": time.perf_counter() - t0,
            **{f"val_{k}": v for k, v in getattr(est, "val_metrics_", {}).items()},
        }
    )
    return StepOutput(
        "train_forest",
        str(out),
        metrics=metrics,
        info={"model": str(out / "forest.joblib"), "n_features": len(est.feature_names_)},
        seconds=time.perf_counter() - t0,
    ).save()


def refit_lstm(
    cfg: RunConfig,
    data: PreparedData,
    target: str,
    early: Any,
    callback: EpochCallback | None = None,
) -> Any:
    """A fresh LSTM trained on training + validation units for the epoch count early
    stopping chose for ``early`` (its learning-rate schedule then runs to its end), with no
    validation set. It keeps ``early``'s decision threshold and, for the horizon task, the
    probability scale fitted on the validation units, as no unit is left to fit them on.
    ``callback`` gets each epoch's progress (the pipeline logs it as ``refit_*`` metrics)."""
    from pdmlens.models.lstm import LSTMEstimator

    both = data.windows("train+val", cfg.window, target)
    kept = {"threshold": float(early.threshold_)}
    if early.task == "horizon":
        kept["horizon_scale"] = float(early.horizon_scale_)
    return (
        LSTMEstimator.from_config(cfg, task=early.task)
        .set_params(epochs=early.best_epoch_ + 1, **kept)
        .fit(both, None, callback=callback)
    )


EXAMPLE_FILE = "input_example.npy"


def _save_example(windows: WindowDataset, out: Path, n: int = 2) -> None:
    """A couple of validation windows beside the model: its logged input example."""
    np.save(out / EXAMPLE_FILE, windows.batch(np.arange(min(n, len(windows))))[0])


def load_example(model_dir: str | Path) -> np.ndarray:
    return np.load(Path(model_dir) / EXAMPLE_FILE)


def load_models(lstm_dir: str | Path, forest_dir: str | Path) -> tuple[Any, Any]:
    from pdmlens.models.forest import ForestEstimator
    from pdmlens.models.lstm import LSTMEstimator

    return (
        LSTMEstimator.load(Path(lstm_dir) / "lstm.pt"),
        ForestEstimator.load(Path(forest_dir) / "forest.joblib"),
    )


# ----------------------------------------------------------------------------- evaluate


def evaluate(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    forest_dir: str | Path,
    out_dir: str | Path,
) -> StepOutput:
    """Test metrics of both models (``lstm_test_rmse``, ``forest_test_rmse``, ...), every
    window's predictions as Parquet, and the prediction charts."""
    from pdmlens.models import metrics as M
    from pdmlens.report.model_plots import predicted_vs_true, rul_trajectories

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    lstm, forest = load_models(lstm_dir, forest_dir)
    split, last, every = eval_windows(cfg, data)
    models = {"lstm": lstm, "forest": forest}
    metrics: dict[str, float] = {}
    figures: dict[str, str] = {}
    preds = pd.DataFrame(
        {"unit": every.window_units, "time": every.window_times, "true": every.window_targets}
    )
    cap = cfg.prepare.rul_cap
    proto = None
    if cfg.model.task == "horizon":
        proto = M.last_full_windows(
            data.frame(split), data.features, cfg.window.length, data.horizon_col
        )
        proto = proto if len(proto) else last
    pred_last: dict[str, np.ndarray] = {}
    for name, est in models.items():
        preds[name] = est.predict(every)  # each window predicted once, reused below
        if cfg.model.task == "rul":
            pred_last[name] = est.predict(last)
            last_rep = M.regression_report(pred_last[name], last.window_targets, cap)
            all_rep = M.regression_report(preds[name].to_numpy(), every.window_targets, cap)
        else:
            last_rep = M.evaluate_horizon(est.predict, proto, est.threshold_)
            all_rep = M.classification_report(
                preds[name].to_numpy(), every.window_targets > 0.5, est.threshold_
            )
        metrics.update({f"{name}_test_{k}": v for k, v in last_rep.items()})
        metrics.update({f"{name}_test_all_{k}": v for k, v in all_rep.items()})
    if cfg.model.task == "rul":
        truth = last.window_targets
        for name in models:
            label = f"{name} (RMSE {metrics[f'{name}_test_rmse']:.1f})"
            figures[f"figures/predicted_vs_true_{name}.png"] = _save_fig(
                predicted_vs_true(
                    pred_last[name],
                    truth,
                    cap=cap,
                    label=label,
                    title=f"{name}: predicted vs true RUL, last cycle per unit",
                ),
                out,
                f"predicted_vs_true_{name}",
            )
        figures["figures/rul_trajectories.png"] = _save_fig(
            rul_trajectories(
                preds["unit"].to_numpy(),
                preds["time"].to_numpy(),
                {n: preds[n].to_numpy() for n in models},
                preds["true"].to_numpy(),
                cap=cap,
            ),
            out,
            "rul_trajectories",
        )
    preds.to_parquet(out / "predictions.parquet", index=False)
    key = "rmse" if cfg.model.task == "rul" else "all_pr_auc"
    info = {
        "split": split,
        "n_units": len(last),
        "n_windows": len(every),
        "key": key,
        "lstm": metrics.get(f"lstm_test_{key}"),
        "forest": metrics.get(f"forest_test_{key}"),
    }
    log.info(
        "evaluated on %s (%d units): lstm %s %.3f, forest %s %.3f",
        split,
        len(last),
        key,
        info["lstm"],
        key,
        info["forest"],
    )
    return StepOutput(
        "evaluate",
        str(out),
        metrics=_clean(metrics),
        figures=figures,
        tables={"predictions.parquet": str(out / "predictions.parquet")},
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()


# ----------------------------------------------------------------------------- explain


def _sample(n: int, size: int, seed: int, mask: np.ndarray | None = None) -> np.ndarray:
    pool = np.arange(n) if mask is None or not mask.any() else np.flatnonzero(mask)
    if len(pool) <= size:
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, size, replace=False))


def explain(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    forest_dir: str | Path,
    out_dir: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
) -> StepOutput:
    """Gate traces and saturation of the LSTM; SHAP for both models; their agreement;
    deletion curves; precision against the true fault sensors where known."""
    from pdmlens.explain.agreement import agreement
    from pdmlens.explain.attributions import explain_forest, explain_lstm, select_background
    from pdmlens.explain.faithfulness import deletion_for
    from pdmlens.explain.gates import extract_gates, gate_summaries
    from pdmlens.explain.groundtruth import groundtruth_precision
    from pdmlens.explain.saturation import saturation_summary
    from pdmlens.report import attribution_plots as AP
    from pdmlens.report.gate_plots import plot_gate_heatmap, plot_saturation

    t0 = time.perf_counter()
    ec = cfg.explain
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    lstm, forest = load_models(lstm_dir, forest_dir)
    split, _, every = eval_windows(cfg, data)
    train = data.windows("train", cfg.window, _target(cfg, data))
    metrics: dict[str, float] = {}
    figures: dict[str, str] = {}
    tables: dict[str, str] = {}
    info: dict[str, Any] = {"split": split}

    def tick(what: str) -> Callable[[int, int], None]:
        return (lambda done, total: progress(what, done, total)) if progress else None

    # -- gates: saturation over every evaluated window, full traces of a few
    x_all = (
        every.all_windows()
        if len(every) <= 50_000
        else every.batch(_sample(len(every), 50_000, cfg.seed))[0]
    )
    summ = gate_summaries(
        lstm.network_.lstm,
        x_all,
        chunk_size=ec.gate_chunk,
        method=ec.gate_method,
        check=ec.gate_check,
        tol=ec.gate_tol,
        low=ec.saturation_low,
        high=ec.saturation_high,
    )
    sat = summ.saturation
    sat.to_parquet(out / "saturation.parquet", index=False)
    tables["explain/saturation.parquet"] = str(out / "saturation.parquet")
    metrics["gate_max_abs_error"] = summ.max_abs_error
    sat_sum = saturation_summary(sat)
    info["saturation"] = sat_sum.to_dict(orient="records")
    figures["figures/gate_saturation.png"] = _save_fig(
        plot_saturation(sat, low=ec.saturation_low, high=ec.saturation_high), out, "gate_saturation"
    )
    target = every.window_targets
    order = np.argsort(target, kind="stable")
    picks = np.unique(
        np.r_[
            order[: max(1, ec.gate_samples // 2)],
            order[-max(1, ec.gate_samples - ec.gate_samples // 2) :],
        ]
    )
    trace = extract_gates(
        lstm.network_.lstm,
        every.batch(picks)[0].copy(),
        check=ec.gate_check,
        tol=ec.gate_tol,
        method=ec.gate_method,
    )
    gates = trace.to_frame()
    gates["window_unit"] = every.window_units[picks][gates["sample"].to_numpy()]
    gates["window_end_time"] = every.window_times[picks][gates["sample"].to_numpy()]
    gates.to_parquet(out / "gate_traces.parquet", index=False)
    tables["explain/gate_traces.parquet"] = str(out / "gate_traces.parquet")
    near, healthy = (order[0], order[-1]) if cfg.model.task == "rul" else (order[-1], order[0])
    for label, w in (("near_failure", near), ("healthy", healthy)):
        s = int(np.flatnonzero(picks == w)[0])
        unit, t = every.window_units[w], every.window_times[w]
        what = (
            f"true RUL {target[w]:.0f}"
            if cfg.model.task == "rul"
            else f"fails within the horizon: {'yes' if target[w] > 0.5 else 'no'}"
        )
        figures[f"figures/gates_{label}.png"] = _save_fig(
            plot_gate_heatmap(
                trace,
                s,
                title=f"Gates of unit {unit}, window ending at {t} "
                f"({label.replace('_', ' ')}, {what})",
            ),
            out,
            f"gates_{label}",
        )

    # -- SHAP for both models on degrading windows of the evaluated split
    mask = target < cfg.prepare.rul_cap if cfg.model.task == "rul" else None
    idx = _sample(len(every), ec.n_explain, cfg.seed, mask)
    x = every.batch(idx)[0].copy()
    units, tgt = every.window_units[idx], target[idx]
    bg = select_background(
        train, ec.background, ec.background_kind, cfg.seed, cfg.model.task, cfg.prepare.rul_cap
    )
    attrs = {
        "lstm": explain_lstm(
            lstm,
            x,
            bg,
            nsamples=ec.shap_samples,
            batch_size=ec.batch_size,
            seed=cfg.seed,
            method=ec.lstm_method,
            num_threads=ec.num_threads,
            callback=tick("SHAP lstm"),
        ),
        "forest": explain_forest(
            forest, x, bg, perturbation=ec.tree_perturbation, callback=tick("SHAP forest")
        ),
    }
    fault_sensors = data.meta.fault_sensors or {}
    fault_modes = dict(data.meta.fault_modes or {})
    if data.test_meta is not None:
        fault_modes.update(data.test_meta.fault_modes or {})
    k_true = int(np.median([len(v) for v in fault_sensors.values()])) if fault_sensors else None
    k = ec.top_k or k_true or 3
    agree = agreement(attrs["lstm"], attrs["forest"], units=units, k=k)
    metrics.update(
        {
            "agreement_spearman": agree["spearman"],
            "agreement_top_k_overlap": agree["top_k_overlap"],
            "agreement_unit_spearman_mean": agree.get("unit_spearman_mean"),
        }
    )
    imp = agree["importance"].reset_index()
    imp.to_parquet(out / "importance.parquet", index=False)
    tables["explain/importance.parquet"] = str(out / "importance.parquet")
    info["importance"] = imp.to_dict(orient="records")
    info["agreement"] = {
        "k": agree["k"],
        "spearman": agree["spearman"],
        "top_k_overlap": agree["top_k_overlap"],
    }
    base = select_background(
        train,
        ec.deletion_baseline,
        ec.background_kind,
        cfg.seed + 1,
        cfg.model.task,
        cfg.prepare.rul_cap,
    )
    deletions = {}
    for name, attr in attrs.items():
        frame = attr.to_frame("time" if attr.has_time else "sensor")
        frame["unit"] = units[frame["sample"].to_numpy()]
        frame["target"] = tgt[frame["sample"].to_numpy()]
        frame.to_parquet(out / f"attributions_{name}.parquet", index=False)
        tables[f"explain/attributions_{name}.parquet"] = str(out / f"attributions_{name}.parquet")
        metrics.update(attr.summary())
        model = lstm if name == "lstm" else forest
        deletions[name] = deletion_for(
            model, attr, x, base, k_max=ec.deletion_k, n_random=ec.deletion_random, seed=cfg.seed
        )
        metrics.update(deletions[name].summary(f"{name}_", k_true or k))
        figures[f"figures/shap_summary_{name}.png"] = _save_fig(
            AP.dot_summary(attr, title=f"{name}: what drives the prediction"),
            out,
            f"shap_summary_{name}",
        )
        info[f"top_sensors_{name}"] = [
            str(s) for s in attr.global_importance().sort_values(ascending=False).index[:5]
        ]
    late = int(np.argmin(tgt))
    figures["figures/shap_time_heatmap.png"] = _save_fig(
        AP.time_sensor_heatmap(
            attrs["lstm"], late, title=f"LSTM: which sensor at which step, unit {units[late]}"
        ),
        out,
        "shap_time_heatmap",
    )
    figures["figures/agreement.png"] = _save_fig(
        AP.agreement_plot(attrs["lstm"], attrs["forest"], k=k, result=agree), out, "agreement"
    )
    figures["figures/deletion.png"] = _save_fig(
        AP.deletion_plot(deletions, k_true=k_true), out, "deletion"
    )
    if fault_sensors and fault_modes:
        rows = []
        # near failure (RUL < horizon) the fault is fully expressed; earlier it may not be
        near = float(cfg.prepare.horizon) if cfg.model.task == "rul" else None
        for name, attr in attrs.items():
            for windows, rul_max, suffix in (
                ("near failure", near, ""),
                ("all explained", None, "_all"),
            ):
                if windows == "near failure" and near is None:
                    continue
                gt = groundtruth_precision(
                    attr,
                    units,
                    fault_modes,
                    fault_sensors,
                    rul=tgt if rul_max else None,
                    rul_max=rul_max,
                )
                gt.insert(0, "windows", windows)
                gt.insert(0, "model", name)
                rows.append(gt)
                allrow = gt[gt["fault_mode"] == "all"]
                if len(allrow):
                    metrics[f"{name}_precision_at_k{suffix}"] = float(
                        allrow["precision_sample"].iloc[0]
                    )
        gtab = pd.concat(rows, ignore_index=True)
        gtab.to_parquet(out / "groundtruth.parquet", index=False)
        tables["explain/groundtruth.parquet"] = str(out / "groundtruth.parquet")
        info["groundtruth"] = gtab.to_dict(orient="records")
    info["n_explained"] = int(len(idx))
    log.info(
        "explained %d windows: agreement rho %.2f, top-%d overlap %.2f",
        len(idx),
        agree["spearman"],
        agree["k"],
        agree["top_k_overlap"],
    )
    return StepOutput(
        "explain",
        str(out),
        metrics=_clean(metrics),
        figures=figures,
        tables=tables,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()


# ----------------------------------------------------------------------------- signatures


def signatures(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    out_dir: str | Path,
    max_windows: int = 2000,
) -> StepOutput:
    """Per-layer activation signatures: clusters against health stages, the first layer
    that separates them, stage-selective units, and novelty of the evaluated windows
    against the validation units. At most ``max_windows`` windows per split (a seeded
    sample) are profiled; k-means runs single-threaded, which on a small shared CPU is
    many times faster than fighting the other steps for cores."""
    from pdmlens.runtime.threads import compute_threads

    with compute_threads(1):
        return _signatures(cfg, prepared_dir, lstm_dir, out_dir, max_windows)


def _signatures(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    out_dir: str | Path,
    max_train: int,
) -> StepOutput:
    from pdmlens.explain.gates import extract_gates
    from pdmlens.models.lstm import LSTMEstimator
    from pdmlens.report import signature_plots as SP
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

    t0 = time.perf_counter()
    sc = cfg.signatures
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    lstm = LSTMEstimator.load(Path(lstm_dir) / "lstm.pt")
    split = eval_split(data)
    rul_target = "rul"
    train = data.windows("train", cfg.window, rul_target)
    val = data.windows("val", cfg.window, rul_target)
    test = data.windows(split, cfg.window, rul_target)
    tr_idx = _sample(len(train), max_train, cfg.seed)
    va_idx = _sample(len(val), max_train, cfg.seed + 1)
    te_idx = _sample(len(test), max_train, cfg.seed + 2)

    def sigs(x: np.ndarray) -> dict[Any, np.ndarray]:
        return {0: input_signature(x, "last_mean"), **signatures_from_lstm(lstm.network_.lstm, x)}

    x_te = test.batch(te_idx)[0].copy()  # profiled, described and traced below
    s_tr, s_va = sigs(train.batch(tr_idx)[0].copy()), sigs(val.batch(va_idx)[0].copy())
    s_te = sigs(x_te)
    bins = list(sc.stage_bins)
    order = stage_names(bins)
    st_tr = stage_of(train.window_targets[tr_idx], bins)
    st_te = stage_of(test.window_targets[te_idx], bins)
    sep = layer_separation(
        s_tr,
        st_tr,
        s_te,
        st_te,
        seed=cfg.seed,
        k=sc.k,
        k_range=sc.k_range,
        train_groups=train.window_units[tr_idx],
        silhouette_sample=sc.silhouette_sample,
    )
    choice = first_separating_layer(sep, sc.separation_metric, sc.tolerance)
    sep_out = sep.copy()
    sep_out.index = [layer_label(i) for i in sep_out.index]
    sep_out.index.name = "layer"
    sep_out.reset_index().to_parquet(out / "layer_separation.parquet", index=False)

    clusters = {}
    assign = pd.DataFrame(
        {
            "unit": test.window_units[te_idx],
            "time": test.window_times[te_idx],
            "rul": test.window_targets[te_idx],
            "stage": st_te,
        }
    )
    for layer in s_tr:
        clu = SignatureClusterer(
            k=int(sep.loc[layer, "k"]), seed=cfg.seed, silhouette_sample=sc.silhouette_sample
        ).fit(s_tr[layer])
        clusters[layer] = clu.predict(s_te[layer])
        assign[f"cluster_{layer_label(layer)}"] = clusters[layer]
    assign.to_parquet(out / "clusters.parquet", index=False)
    last_step = pd.DataFrame(x_te[:, -1, :], columns=data.features)
    sentences = describe_clusters(clusters[choice.layer], st_te, last_step, top=3, order=order)

    nov, scores = novelty_by_layer(
        s_tr,
        s_va,
        s_va,
        s_te,
        method=sc.novelty_method,
        k=sc.novelty_knn,
        tnr=sc.novelty_tnr,
        seed=cfg.seed,
    )
    nov_out = nov.copy()
    nov_out.index = [layer_label(i) for i in nov_out.index]
    nov_out.index.name = "layer"
    nov_out.reset_index().to_parquet(out / "novelty.parquet", index=False)

    n_sel = min(len(te_idx), 1000)
    sel_idx = te_idx[:n_sel]
    trace = extract_gates(lstm.network_.lstm, x_te[:n_sel])
    rul_steps = test.window_targets[sel_idx][:, None] + np.arange(test.length - 1, -1, -1)[None]
    stages_t = stage_of(np.minimum(rul_steps, bins[-1]), bins)
    acts = {li + 1: np.asarray(layer["h"]) for li, layer in enumerate(trace.layers)}
    sel = unit_selectivity(
        acts,
        stages_t,
        threshold=sc.selectivity_threshold,
        min_run=sc.selectivity_min_run,
        order=order,
    )
    sel.to_parquet(out / "selectivity.parquet", index=False)

    figures = {
        "figures/signature_projection.png": _save_fig(
            SP.plot_signature_projection(s_te, clusters, st_te, order=order, seed=cfg.seed),
            out,
            "signature_projection",
        ),
        "figures/layer_separation.png": _save_fig(
            SP.plot_layer_separation(sep, chosen=choice.layer), out, "layer_separation"
        ),
        "figures/novelty.png": _save_fig(
            SP.plot_novelty_distributions(
                scores,
                table=nov,
                familiar_label="validation units (calibration)",
                unfamiliar_label=f"{split} units",
            ),
            out,
            "novelty",
        ),
        "figures/unit_selectivity.png": _save_fig(
            SP.plot_unit_selectivity(sel), out, "unit_selectivity"
        ),
    }
    metrics: dict[str, float] = {
        "first_separating_layer": float(choice.layer)
        if isinstance(choice.layer, (int, np.integer))
        else float("nan"),
        "first_separating_score": choice.score,
    }
    for layer in sep.index:
        for col in ("purity", "ari", "nmi", "probe_accuracy", "silhouette"):
            if col in sep.columns:
                metrics[f"{layer_label(layer)}_{col}".replace(" ", "_")] = sep.loc[layer, col]
    for layer in nov.index:
        for col in ("auroc", "detection_rate", "threshold"):
            if col in nov.columns:
                metrics[f"{layer_label(layer)}_novelty_{col}".replace(" ", "_")] = nov.loc[
                    layer, col
                ]
    info = {
        "first_separating_layer": layer_label(choice.layer),
        "sentence": choice.sentence(),
        "clusters": sentences,
        "n_windows": {"train": len(tr_idx), "val": len(va_idx), split: len(te_idx)},
        "novelty_split": split,
        "flagged_share": {
            layer_label(k): float(nov.loc[k, "detection_rate"])
            for k in nov.index
            if "detection_rate" in nov.columns
        },
    }
    tables = {f"signatures/{p.name}": str(p) for p in out.glob("*.parquet")}
    log.info("signatures: %s", choice.sentence())
    return StepOutput(
        "signatures",
        str(out),
        metrics=_clean(metrics),
        figures=figures,
        tables=tables,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()
