"""Every explanation of one run, computed: no figure drawn, no file written.

:func:`compute_explanations` gathers what the explain step reports: the LSTM's gate
saturation over every evaluated window and full gate traces of a few (the nearest to
failure and the healthiest among them), SHAP attributions of both models on a seeded
sample of degrading windows, the two models' agreement, deletion curves, and precision
against the true fault sensors where the source knows them. The step
(:mod:`pdmlens.steps.explanation`) draws and writes the result; a notebook can use it
as it is. Random draws are seeded from ``cfg.seed`` and happen in a fixed order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.config import RunConfig
from pdmlens.data.prepare import PreparedData
from pdmlens.sampling import sample_indices as sample
from pdmlens.task import task_of

Progress = Callable[[str, int, int], None]

MAX_SATURATION_WINDOWS = 50_000
"""more evaluated windows than this: saturation is measured on a seeded sample"""


@dataclass(frozen=True)
class GateExample:
    """One window whose full gate trace is drawn: ``sample`` indexes the trace."""

    label: str
    sample: int
    unit: Any
    time: Any
    description: str


@dataclass
class Explanations:
    """What :func:`compute_explanations` found (frames, arrays and the computed objects)."""

    split: str
    saturation: pd.DataFrame
    """per layer, gate and unit: the share of saturated activations"""
    saturation_summary: pd.DataFrame
    trace: Any
    """GateTrace of the windows ``picks`` of the evaluated split"""
    gates: pd.DataFrame
    """the trace as a table, with each window's unit and end time"""
    examples: list[GateExample]
    """near failure, healthy: the traces worth a heatmap"""
    units: np.ndarray
    """unit of each explained window"""
    targets: np.ndarray
    """target of each explained window"""
    attributions: dict[str, Any]
    """model name -> Attribution"""
    agreement: dict[str, Any]
    k: int
    k_true: int | None
    deletions: dict[str, Any]
    """model name -> DeletionResult"""
    groundtruth: pd.DataFrame | None
    metrics: dict[str, Any] = field(default_factory=dict)
    """the headline numbers, in the order they are logged (None or NaN where a number
    could not be computed; the step keeps the finite ones)"""

    @property
    def n_explained(self) -> int:
        return len(self.units)

    def top_sensors(self, model: str, n: int = 5) -> list[str]:
        """The ``n`` sensors with the largest global importance for ``model``."""
        imp = self.attributions[model].global_importance()
        return [str(s) for s in imp.sort_values(ascending=False).index[:n]]


def compute_explanations(
    cfg: RunConfig,
    data: PreparedData,
    lstm: Any,
    forest: Any,
    progress: Progress | None = None,
) -> Explanations:
    """Gate traces and saturation of the LSTM; SHAP for both models; their agreement;
    deletion curves; precision against the true fault sensors where known."""
    from pdmlens.explain.agreement import agreement
    from pdmlens.explain.attributions import explain_forest, explain_lstm, select_background
    from pdmlens.explain.faithfulness import deletion_for
    from pdmlens.explain.gates import extract_gates, gate_summaries
    from pdmlens.explain.groundtruth import groundtruth_precision
    from pdmlens.explain.saturation import saturation_summary

    task = task_of(cfg)
    ec = cfg.explain
    split, _, every = task.eval_windows(data, cfg.window)
    train = data.windows("train", cfg.window, task.target(data))
    metrics: dict[str, Any] = {}

    def tick(what: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: progress(what, done, total)) if progress else None

    # -- gates: saturation over every evaluated window, full traces of a few
    x_all = (
        every.all_windows()
        if len(every) <= MAX_SATURATION_WINDOWS
        else every.batch(sample(len(every), MAX_SATURATION_WINDOWS, cfg.seed))[0]
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
    metrics["gate_max_abs_error"] = summ.max_abs_error
    sat_sum = saturation_summary(sat)
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
    near, healthy = task.near_and_healthy(order)
    examples = [
        GateExample(
            label,
            int(np.flatnonzero(picks == w)[0]),
            every.window_units[w],
            every.window_times[w],
            task.describe_target(target[w]),
        )
        for label, w in (("near_failure", near), ("healthy", healthy))
    ]

    # -- SHAP for both models on degrading windows of the evaluated split
    mask = task.degrading(target, cfg.prepare.rul_cap)
    idx = sample(len(every), ec.n_explain, cfg.seed, mask)
    x = every.batch(idx)[0].copy()
    units, tgt = every.window_units[idx], target[idx]
    bg = select_background(
        train, ec.background, ec.background_kind, cfg.seed, task.name, cfg.prepare.rul_cap
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
    base = select_background(
        train,
        ec.deletion_baseline,
        ec.background_kind,
        cfg.seed + 1,
        task.name,
        cfg.prepare.rul_cap,
    )
    models = {"lstm": lstm, "forest": forest}
    deletions = {}
    for name, attr in attrs.items():
        metrics.update(attr.summary())
        deletions[name] = deletion_for(
            models[name],
            attr,
            x,
            base,
            k_max=ec.deletion_k,
            n_random=ec.deletion_random,
            seed=cfg.seed,
        )
        metrics.update(deletions[name].summary(f"{name}_", k_true or k))
    gtab = None
    if fault_sensors and fault_modes:
        rows = []
        near_rul = task.near_failure_rul(cfg.prepare.horizon)
        for name, attr in attrs.items():
            for windows, rul_max, suffix in (
                ("near failure", near_rul, ""),
                ("all explained", None, "_all"),
            ):
                if windows == "near failure" and near_rul is None:
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
    return Explanations(
        split=split,
        saturation=sat,
        saturation_summary=sat_sum,
        trace=trace,
        gates=gates,
        examples=examples,
        units=units,
        targets=tgt,
        attributions=attrs,
        agreement=agree,
        k=k,
        k_true=k_true,
        deletions=deletions,
        groundtruth=gtab,
        metrics=metrics,
    )
