"""Score a fleet's latest state: remaining life, why, whether to trust it, what to do.

``score_fleet(bundle, fleet)`` takes raw readings (a Fleet, or a DataFrame with the columns
the source gave: ``unit``, ``time``, ``setting_*``, ``sensor_*``), prepares them with the
bundle's fitted Preparer and returns a :class:`ScoreTable`, one row per unit at its latest
time:

- ``rul_lstm``, ``rul_forest`` (cycles; the horizon task: the LSTM's RUL, and
  ``p_fail_lstm`` / ``p_fail_forest`` = P(failure within the horizon));
- ``alert`` (``act`` / ``watch`` / ``ok``) and ``alert_reason`` by :data:`ALERT_RULE`;
- why: ``top{i}_sensor`` / ``top{i}_shap`` (the LSTM's expected-gradients SHAP value in
  cycles of predicted RUL, against healthy training windows, summed over the window; < 0
  shortens the predicted life) / ``top{i}_reading`` (latest raw reading), the forest's top
  sensors and ``forest_agrees`` (share of the LSTM's top sensors also in the forest's);
  the non-sensor inputs apart: ``shap_age``, ``shap_settings``;
- trust: per layer ``novelty_pct_<layer>`` (percentile of the latest window's distance
  among validation-unit windows), ``novel_<layer>`` (above the threshold calibrated at
  training time), ``early_novel_<layer>`` (the unit's first cycles above the early-life
  threshold), and ``novelty_kind`` (:data:`KIND_RULE`); ``history`` (rows) and
  ``short_history`` (fewer than a window: the window was padded);
- ``health_stage``: the stage whose signature cluster the latest window falls in.

The last window is predicted exactly as the evaluate step predicts it (same preparation,
same ``WindowDataset``, same ``predict`` call), so scoring a run's test data reproduces its
evaluation to the bit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pdmlens.data.fleet import SENSOR_PREFIX, SETTING_PREFIX, TIME, UNIT, Fleet, FleetMeta
from pdmlens.data.prepare import AGE
from pdmlens.data.windows import WindowDataset
from pdmlens.errors import DataValidationError
from pdmlens.runtime.threads import compute_threads
from pdmlens.scoring.bundle import ScoringBundle, early_window_index, layer_signatures
from pdmlens.task import Task

log = logging.getLogger(__name__)

LEVELS = ("act", "watch", "ok")
TOP_K = 3
ALERT_RULE = (
    "act: either model predicts RUL <= h (horizon task: either model's P(failure within h) "
    "reaches its alarm threshold); watch: otherwise, the lower RUL <= 2h, or the two "
    "models disagree by more than h cycles (horizon: by more than 0.5 in probability), "
    "or the unit is novel (the model has not seen anything like it); ok: none of these"
)
KIND_RULE = (
    "new_baseline: the unit's first cycles are already novel (another fleet, a shifted or "
    "recalibrated sensor, a new regime); new_fault: its first cycles are familiar and its "
    "latest window is novel (degrading along a path training never showed); familiar: "
    "neither (decided on the bundle's kind layer; every layer's flags are reported)"
)


def layer_name(layer: int) -> str:
    return "input" if layer == 0 else f"lstm{layer}"


@dataclass
class ScoreTable:
    """One row per unit (``table``, sorted by urgency), the rules, and what the board
    needs to draw each unit's recent history."""

    table: pd.DataFrame
    rule: str = ALERT_RULE
    kind_rule: str = KIND_RULE
    prepared: pd.DataFrame | None = None
    raw: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        t = self.table
        out = {f"alerts_{lv}": int((t["alert"] == lv).sum()) for lv in LEVELS}
        out["units_scored"] = len(t)
        out["units_novel"] = int(t["novel"].sum())
        out["units_new_baseline"] = int((t["novelty_kind"] == "new_baseline").sum())
        out["units_new_fault"] = int((t["novelty_kind"] == "new_fault").sum())
        out["units_short_history"] = int(t["short_history"].sum())
        return out


# ----------------------------------------------------------------------------- input


def _as_fleet(data: Fleet | pd.DataFrame, file: str | None) -> Fleet:
    if isinstance(data, Fleet):
        return data
    if not isinstance(data, pd.DataFrame):
        raise DataValidationError(f"expected a DataFrame of raw readings, got {type(data)}")
    return Fleet(data, FleetMeta(name=file or "scored", source="dataframe", split="score"))


def check_input(
    bundle: ScoringBundle,
    frame: pd.DataFrame,
    file: str | None = None,
    units: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The raw frame checked against what the bundle's preparation reads; returns it
    validated (numeric columns as floats, units as strings). Raises DataValidationError
    naming file, column, row or unit: a required column missing (and a likely renamed
    one), non-numeric values, a unit with no rows (``units``: the units expected; a
    categorical ``unit`` column's unused categories count as expected too)."""
    from pdmlens.data.validate import validate_fleet

    for col in (UNIT, TIME):
        if col not in frame.columns:
            raise DataValidationError(f"required column '{col}' is missing", file=file, column=col)
    need = bundle.required_columns
    missing = [c for c in need if c not in frame.columns]
    if missing:
        extra = [
            str(c)
            for c in frame.columns
            if str(c).startswith((SENSOR_PREFIX, SETTING_PREFIX)) and c not in need
        ]
        hint = (
            f"; the table has column(s) the model does not know: {', '.join(extra[:5])} (renamed?)"
            if extra
            else ""
        )
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataValidationError(
            f"a column the model needs is missing{more}{hint}", file=file, column=missing[0]
        )
    expected = list(units or [])
    if isinstance(frame[UNIT].dtype, pd.CategoricalDtype):
        expected += [str(c) for c in frame[UNIT].cat.categories]
    if expected:
        present = set(frame[UNIT].astype(str).unique())
        empty = [u for u in dict.fromkeys(expected) if u not in present]
        if empty:
            raise DataValidationError(
                f"the unit has no rows ({len(empty)} expected unit(s) have none)",
                file=file,
                column=UNIT,
                unit=str(empty[0]),
            )
    keep = [UNIT, TIME, *need]
    keep += [c for c in frame.columns if str(c).startswith((SENSOR_PREFIX, SETTING_PREFIX))]
    sub = frame[list(dict.fromkeys(keep))]
    if isinstance(sub[UNIT].dtype, pd.CategoricalDtype):
        sub = sub.assign(**{UNIT: sub[UNIT].astype(str)})
    return validate_fleet(sub, file=file)


# ----------------------------------------------------------------------------- models


class _RulOfHorizonLSTM(nn.Module):
    """The horizon LSTM's predicted RUL in cycles (its head times its RUL scale), so its
    SHAP values are in cycles too."""

    def __init__(self, est: Any) -> None:
        super().__init__()
        self.net = est.network_
        self.scale = float(est._scale())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_scaled(x) * self.scale


def _lstm_rul(bundle: ScoringBundle, ds: WindowDataset) -> np.ndarray:
    est = bundle.lstm
    if not est.classifies:
        return np.asarray(est.predict(ds), dtype=np.float64)
    return np.asarray(est._outputs(ds, raw=True), dtype=np.float64) * float(est._scale())


def _top(values: np.ndarray, names: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``names``) of the k sensor features of largest |value| per row."""
    cols = np.array([i for i, n in enumerate(names) if n.startswith(SENSOR_PREFIX)])
    order = np.argsort(-np.abs(values[:, cols]), axis=1, kind="stable")[:, :k]
    idx = cols[order]
    return idx, np.take_along_axis(values, idx, axis=1)


# ----------------------------------------------------------------------------- scoring


def score_fleet(
    bundle: ScoringBundle,
    data: Fleet | pd.DataFrame,
    *,
    explain: str = "all",
    file: str | None = None,
    units: Sequence[str] | None = None,
    keep_frames: bool = True,
) -> ScoreTable:
    """Score every unit of ``data`` at its latest time (see the module docstring).

    ``explain``: ``all`` units, only the ``alerts`` (act and watch), or ``none``.
    ``file`` names the data in errors; ``units``: units that must have rows.
    """
    if explain not in ("all", "alerts", "none"):
        raise ValueError("explain must be 'all', 'alerts' or 'none'")
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    fleet = _as_fleet(data, file)
    frame = check_input(bundle, fleet.frame, file or fleet.meta.name, units)
    fleet = Fleet(frame, fleet.meta)
    cfg = bundle.cfg
    win = cfg.window
    prepared = bundle.preparer.transform(fleet)
    secs["prepare"] = time.perf_counter() - t0

    t = time.perf_counter()
    feats = bundle.features
    last = WindowDataset(
        prepared, feats, win.length, target=None, stride=win.stride, pad=win.pad, last_only=True
    )
    unit_names = [str(u) for u in last.window_units]
    history = (last.unit_end - last.unit_start)[last.window_unit_index]
    out = pd.DataFrame({"unit": unit_names, "time": last.window_times, "history": history})
    out["short_history"] = history < win.length
    task = bundle.task
    out["rul_lstm"] = np.nan
    out["rul_forest"] = np.nan  # stays NaN for the horizon task: its forest gives no RUL
    for kind, est in (("lstm", bundle.lstm), ("forest", bundle.forest)):
        out[task.prediction_column(kind)] = np.asarray(est.predict(last), dtype=np.float64)
    if task.classifies:  # the LSTM's RUL beside its probability
        out["rul_lstm"] = _lstm_rul(bundle, last)
    secs["predict"] = time.perf_counter() - t

    # trust: novelty per layer, latest window and early life; the health stage
    t = time.perf_counter()
    cal = bundle.calibration
    x_last = last.all_windows()
    with compute_threads(1):
        sig = layer_signatures(bundle.lstm, x_last)
        every = WindowDataset(prepared, feats, win.length, stride=1, pad=win.pad)
        e_idx = early_window_index(every, int(bundle.info["early_cycles"]), 5)
        e_unit = every.window_unit_index[e_idx]
        e_sig = layer_signatures(bundle.lstm, every.batch(e_idx)[0])
    del every
    for layer in sorted(cal.latest):
        name = layer_name(layer)
        lc, ec = cal.latest[layer], cal.early[layer]
        s = lc.scorer.score_samples(sig[layer])
        out[f"novelty_{name}"] = s
        out[f"novelty_pct_{name}"] = lc.percentile(s)
        out[f"novel_{name}"] = s > lc.threshold
        es = ec.scorer.score_samples(e_sig[layer])
        early = pd.Series(es).groupby(e_unit).median().reindex(range(len(out))).to_numpy()
        out[f"early_novelty_{name}"] = early
        out[f"early_novel_{name}"] = early > ec.threshold
    kl = layer_name(bundle.kind_layer)
    out["novelty_kind"] = novelty_kind(
        out[f"early_novel_{kl}"].to_numpy(), out[f"novel_{kl}"].to_numpy()
    )
    out["novel"] = out["novelty_kind"] != "familiar"
    clusters = cal.clusterer.predict(sig[cal.cluster_layer])
    out["health_cluster"] = clusters
    out["health_stage"] = [cal.cluster_stage.get(int(c), "unknown") for c in clusters]
    secs["novelty"] = time.perf_counter() - t

    level, reason = alert_levels(out, task, bundle)
    out["alert"], out["alert_reason"] = level, reason

    # why: SHAP of the latest window, LSTM (cycles) and forest
    t = time.perf_counter()
    which = np.arange(len(out))
    if explain == "alerts":
        which = np.flatnonzero(out["alert"].to_numpy() != "ok")
    elif explain == "none":
        which = which[:0]
    _explain(bundle, out, x_last, which, fleet.frame, last)
    secs["explain"] = time.perf_counter() - t

    rank = pd.Categorical(out["alert"], categories=list(LEVELS), ordered=True).codes
    urgency = task.urgency(out)
    out = out.assign(_rank=rank, _urg=urgency).sort_values(["_rank", "_urg", "unit"], kind="stable")
    out = out.drop(columns=["_rank", "_urg"]).reset_index(drop=True)
    secs["total"] = time.perf_counter() - t0
    log.info(
        "scored %d units in %.1f s: %s",
        len(out),
        secs["total"],
        {lv: int((out["alert"] == lv).sum()) for lv in LEVELS},
    )
    return ScoreTable(
        table=out,
        prepared=prepared if keep_frames else None,
        raw=frame if keep_frames else None,
        seconds=secs,
    )


def novelty_kind(early_novel: np.ndarray, latest_novel: np.ndarray) -> np.ndarray:
    """:data:`KIND_RULE` on boolean arrays: new_baseline, new_fault or familiar."""
    early = np.asarray(early_novel, dtype=bool)
    latest = np.asarray(latest_novel, dtype=bool)
    return np.where(early, "new_baseline", np.where(latest, "new_fault", "familiar"))


def alert_levels(
    table: pd.DataFrame,
    task: Task | str,
    bundle: ScoringBundle | None = None,
    horizon: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:data:`ALERT_RULE` applied to a score table: (level, reason) per row."""
    task = Task.from_name(task) if isinstance(task, str) else task
    h = float(horizon if horizon is not None else bundle.info["horizon"] if bundle else 30)
    n = len(table)
    novel = table["novel"].to_numpy(dtype=bool) if "novel" in table else np.zeros(n, bool)
    level = np.full(n, "ok", dtype=object)
    reason = np.full(n, "", dtype=object)
    if not task.classifies:
        lo = table[["rul_lstm", "rul_forest"]].min(axis=1).to_numpy()
        gap = (table["rul_lstm"] - table["rul_forest"]).abs().to_numpy()
        act = lo <= h
        watch_rul = lo <= 2 * h
        disagree = gap > h
        act_why = [f"predicted RUL {v:.0f} <= {h:g}" for v in lo]
        watch_why = [f"predicted RUL {v:.0f} <= {2 * h:g}" for v in lo]
        dis_why = [f"models disagree by {g:.0f} cycles" for g in gap]
    else:
        pl = table["p_fail_lstm"].to_numpy()
        pf = table["p_fail_forest"].to_numpy()
        tl = float(bundle.lstm.threshold_) if bundle else 0.5
        tf = float(bundle.forest.threshold_) if bundle else 0.5
        act = (pl >= tl) | (pf >= tf)
        watch_rul = table["rul_lstm"].to_numpy() <= 2 * h
        disagree = np.abs(pl - pf) > 0.5
        act_why = [f"P(failure within {h:g}) {max(a, b):.2f}" for a, b in zip(pl, pf, strict=True)]
        watch_why = [f"LSTM RUL {v:.0f} <= {2 * h:g}" for v in table["rul_lstm"]]
        dis_why = [f"models disagree ({a:.2f} vs {b:.2f})" for a, b in zip(pl, pf, strict=True)]
    kinds = table["novelty_kind"].to_numpy() if "novelty_kind" in table else np.full(n, "")
    for i in range(n):
        if act[i]:
            level[i], reason[i] = "act", act_why[i]
        else:
            why = []
            if watch_rul[i]:
                why.append(watch_why[i])
            if disagree[i]:
                why.append(dis_why[i])
            if novel[i]:
                why.append(f"novel ({str(kinds[i]).replace('_', ' ')})")
            if why:
                level[i], reason[i] = "watch", "; ".join(why)
    return level, reason


def _explain(
    bundle: ScoringBundle,
    out: pd.DataFrame,
    x_last: np.ndarray,
    which: np.ndarray,
    raw: pd.DataFrame,
    last: WindowDataset,
) -> None:
    """Fill the why-columns for rows ``which`` (NaN / empty elsewhere)."""
    from pdmlens.explain.attributions import explain_forest, explain_lstm

    k = TOP_K
    feats = bundle.features
    for i in range(1, k + 1):
        out[f"top{i}_sensor"] = ""
        out[f"top{i}_shap"] = np.nan
        out[f"top{i}_reading"] = np.nan
    out["forest_top_sensors"] = ""
    out["forest_agrees"] = np.nan
    out["shap_age"] = np.nan
    out["shap_settings"] = np.nan
    out["shap_base"] = np.nan
    if len(which) == 0:
        return
    ec = bundle.cfg.explain
    est = bundle.lstm
    model = _RulOfHorizonLSTM(est) if est.classifies else est
    bg_rul = bundle.background
    attr = explain_lstm(
        model,
        x_last[which],
        bg_rul,
        sensor_names=feats,
        nsamples=ec.shap_samples,
        batch_size=ec.batch_size,
        seed=bundle.cfg.seed,
        num_threads=ec.num_threads,
    )
    per = np.asarray(attr.values, dtype=np.float64).sum(axis=1)  # [N, F] in cycles
    idx, vals = _top(per, feats, k)
    with torch.no_grad():
        fattr = explain_forest(bundle.forest, x_last[which], bundle.background)
    fvals = np.asarray(fattr.values, dtype=np.float64)
    fidx, _ = _top(fvals, list(fattr.sensor_names), k)
    # latest raw reading of each unit's sensors (the row the last window ends at)
    end_rows = last.end_row[which]
    names = np.array(feats, dtype=object)
    fnames = np.array(fattr.sensor_names, dtype=object)
    for i in range(k):
        col = names[idx[:, i]]
        out.loc[which, f"top{i + 1}_sensor"] = col
        out.loc[which, f"top{i + 1}_shap"] = vals[:, i]
        readings = np.array(
            [float(raw[c].iat[r]) for c, r in zip(col, end_rows, strict=True)], dtype=np.float64
        )
        out.loc[which, f"top{i + 1}_reading"] = readings
    ftop = fnames[fidx]
    out.loc[which, "forest_top_sensors"] = [", ".join(map(str, r)) for r in ftop]
    agree = [len(set(names[a]) & set(b)) / k for a, b in zip(idx, ftop, strict=True)]
    out.loc[which, "forest_agrees"] = agree
    if AGE in feats:
        out.loc[which, "shap_age"] = per[:, feats.index(AGE)]
    sets = [j for j, f in enumerate(feats) if f.startswith(SETTING_PREFIX)]
    if sets:
        out.loc[which, "shap_settings"] = per[:, sets].sum(axis=1)
    out.loc[which, "shap_base"] = attr.base_value
