"""The evaluate step: both models scored on the evaluated split the way the task says,
every window's predictions as Parquet, and the predicted-vs-true chart (the trajectories
of the machines at risk are drawn by the at-risk step, which knows them)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pdmlens.config import RunConfig
from pdmlens.data.prepare import PreparedData
from pdmlens.results import (
    FOREST,
    LSTM,
    MODELS,
    PREDICTIONS_FILE,
    TEST_ALL,
    StepResult,
    clean_metrics,
    score_name,
)
from pdmlens.steps.common import save_fig
from pdmlens.steps.training import load_models
from pdmlens.task import task_of

log = logging.getLogger("pdmlens.steps")


def evaluate(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    forest_dir: str | Path,
    out_dir: str | Path,
) -> StepResult:
    """Test metrics of both models (``lstm_test_rmse``, ``forest_test_rmse``, ...), every
    window's predictions as Parquet, and the prediction charts."""
    from pdmlens.report.model_plots import predicted_vs_true

    t0 = time.perf_counter()
    task = task_of(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = PreparedData.load(prepared_dir)
    lstm, forest = load_models(lstm_dir, forest_dir)
    split, last, every = task.eval_windows(data, cfg.window)
    models = {LSTM.name: lstm, FOREST.name: forest}
    metrics: dict[str, float] = {}
    figures: dict[str, str] = {}
    preds = pd.DataFrame(
        {"unit": every.window_units, "time": every.window_times, "true": every.window_targets}
    )
    cap = cfg.prepare.rul_cap
    scored = task.last_windows(data, split, cfg.window, last)
    pred_last: dict[str, np.ndarray] = {}
    for name, est in models.items():
        preds[name] = est.predict(every)  # each window predicted once, reused below
        if task.predicts_last():
            pred_last[name] = est.predict(last)
        last_rep, all_rep = task.score(
            est.predict,
            scored,
            pred_last.get(name),
            preds[name].to_numpy(),
            every,
            est.threshold_,
            cap,
        )
        metrics.update({score_name(name, k): v for k, v in last_rep.items()})
        metrics.update({f"{name}_{TEST_ALL}{k}": v for k, v in all_rep.items()})
    if pred_last:  # RUL: both models' predictions against the capped truth, one chart
        label = {m.name: m.label for m in MODELS}
        figures["figures/predicted_vs_true.png"] = save_fig(
            predicted_vs_true(
                {label[name]: pred_last[name] for name in models},
                last.window_targets,
                cap=cap,
                units=[str(u) for u in last.window_units],
                title=f"Predicted vs true RUL at the last cycle of each {split} machine",
            ),
            out,
            "predicted_vs_true",
        )
    preds.to_parquet(out / PREDICTIONS_FILE, index=False)
    key = task.headline
    info = {
        "split": split,
        "n_units": len(last),
        "n_windows": len(every),
        "key": key,
        LSTM.name: metrics.get(score_name(LSTM.name, key)),
        FOREST.name: metrics.get(score_name(FOREST.name, key)),
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
    return StepResult(
        "evaluate",
        str(out),
        metrics=clean_metrics(metrics),
        figures=figures,
        tables={PREDICTIONS_FILE: str(out / PREDICTIONS_FILE)},
        info=info,
        seconds=time.perf_counter() - t0,
    ).save()
