"""The training steps: the LSTM (early-stopped, optionally refit on train + validation
units) and the random forest, each saved with a couple of input windows as its example."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from pdmlens.config import RunConfig
from pdmlens.data.prepare import PreparedData
from pdmlens.data.windows import WindowDataset
from pdmlens.results import (
    EXAMPLE_FILE,
    FOREST,
    LSTM,
    StepResult,
    clean_metrics,
    model_file,
)
from pdmlens.steps.common import EpochCallback, save_fig
from pdmlens.task import LSTM_TARGET, Task, task_of

log = logging.getLogger("pdmlens.steps")


def train_lstm(
    cfg: RunConfig,
    prepared_dir: str | Path,
    out_dir: str | Path,
    callback: EpochCallback | None = None,
) -> StepResult:
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
    decision = est.alarm_rule() if Task.from_name(est.task).classifies else None
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
    est.save(model_file(LSTM, out))
    _save_example(val, out)
    metrics = clean_metrics(
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
        "figures/learning_curves.png": save_fig(
            learning_curves(history, best_epoch), out, "learning_curves"
        )
    }
    info = {
        "model": str(model_file(LSTM, out)),
        "device": str(est.device_),
        "history": history,
        "refit": cfg.model.lstm.refit,
    }
    if decision:
        info["decision"] = decision
    return StepResult(
        "train_lstm",
        str(out),
        metrics=metrics,
        figures=figs,
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()


def train_forest(cfg: RunConfig, prepared_dir: str | Path, out_dir: str | Path) -> StepResult:
    """Fit the random forest on per-window features of the training units."""
    from pdmlens.models.forest import ForestEstimator

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    target = task_of(cfg).target(data)
    train, val = data.windows("train", cfg.window, target), data.windows("val", cfg.window, target)
    est = ForestEstimator.from_config(cfg).fit(train, val)
    est.save(model_file(FOREST, out))
    _save_example(val, out)
    metrics = clean_metrics(
        {
            "train_seconds": time.perf_counter() - t0,
            **{f"val_{k}": v for k, v in getattr(est, "val_metrics_", {}).items()},
        }
    )
    return StepResult(
        "train_forest",
        str(out),
        metrics=metrics,
        info={"model": str(model_file(FOREST, out)), "n_features": len(est.feature_names_)},
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
    if Task.from_name(early.task).classifies:
        kept["horizon_scale"] = float(early.horizon_scale_)
    return (
        LSTMEstimator.from_config(cfg, task=early.task)
        .set_params(epochs=early.best_epoch_ + 1, **kept)
        .fit(both, None, callback=callback)
    )


def _save_example(windows: WindowDataset, out: Path, n: int = 2) -> None:
    """A couple of validation windows beside the model: its logged input example."""
    np.save(out / EXAMPLE_FILE, windows.batch(np.arange(min(n, len(windows))))[0])


def load_example(model_dir: str | Path) -> np.ndarray:
    """The input example saved beside a model."""
    return np.load(Path(model_dir) / EXAMPLE_FILE)


def load_models(lstm_dir: str | Path, forest_dir: str | Path) -> tuple[Any, Any]:
    """(LSTMEstimator, ForestEstimator) saved by the two train steps."""
    from pdmlens.models.forest import ForestEstimator
    from pdmlens.models.lstm import LSTMEstimator

    return (
        LSTMEstimator.load(model_file(LSTM, lstm_dir)),
        ForestEstimator.load(model_file(FOREST, forest_dir)),
    )
