"""Which machines need attention: the tables the report opens with.

:func:`machines_at_risk` joins each evaluated machine's latest prediction (the evaluate
step's last window per unit, both models, the capped truth where known) with what scoring
that machine's raw readings says (:func:`pdmlens.scoring.score_fleet`: the alert level and
its reason, the novelty kind, the top sensors by SHAP), sorted by urgency.
:func:`late_predictions` lists the machines a model predicted to live more than
:data:`LATE_CYCLES` longer than they did, the costly mistake, worst first.

Plain DataFrames in and out; the at-risk step (:mod:`pdmlens.steps.risk`) writes them as
CSV and the report shows them. Machine names are strings, RULs are in cycles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LATE_CYCLES = 20.0
"""a prediction this many cycles (or more) above the truth is listed as late"""
ALERT_ORDER = ("act", "watch", "ok")
"""the scoring rule's alert levels, most urgent first"""
URGENCY = (
    "sorted by urgency: the alert level (act, then watch, then ok) and, within a level, "
    "the lower of the two models' predicted remaining lives"
)


def last_predictions(preds: pd.DataFrame) -> pd.DataFrame:
    """The last evaluated window of each machine (the evaluate step's ``predictions``
    table: unit, time, true, one column per model), indexed by machine name."""
    need = {"unit", "time"}
    missing = need - set(preds.columns)
    if missing:
        raise ValueError(f"predictions table lacks columns {sorted(missing)}")
    last = preds.sort_values(["unit", "time"], kind="stable").groupby("unit", sort=False).tail(1)
    return last.assign(unit=last["unit"].astype(str)).set_index("unit")


def machines_at_risk(
    preds: pd.DataFrame,
    scores: pd.DataFrame,
    models: Sequence[str] = ("lstm", "forest"),
    cap: float | None = None,
    labelled: bool = True,
) -> pd.DataFrame:
    """One row per evaluated machine at its latest window, most urgent first.

    ``preds``: the evaluate step's predictions (every window; the last per unit is used);
    ``scores``: :func:`~pdmlens.scoring.score_fleet`'s table of the same machines.
    ``labelled``: the models predict RUL and ``preds["true"]`` is the RUL (else the
    predicted columns come from ``scores``: the horizon task's LSTM RUL).
    Columns: machine, cycle, alert, <model>_rul..., disagreement, true_rul (capped, where
    labelled), novelty, top_sensors (LSTM), forest_top_sensors, reason.
    """
    sc = scores.assign(unit=scores["unit"].astype(str)).set_index("unit")
    last = last_predictions(preds)
    missing = sorted(set(sc.index) ^ set(last.index))
    if missing:
        raise ValueError(f"scores and predictions name different machines: {missing[:5]}")
    machines = list(sc.index)
    out = pd.DataFrame({"machine": machines})
    out["cycle"] = last.loc[machines, "time"].to_numpy()
    out["alert"] = sc["alert"].to_numpy()
    ruls = []
    for m in models:
        col = f"{m}_rul"
        if labelled:
            out[col] = last.loc[machines, m].to_numpy(dtype=np.float64)
        else:
            out[col] = sc[f"rul_{m}"].to_numpy(dtype=np.float64)
        ruls.append(col)
    values = out[ruls].to_numpy(dtype=np.float64)
    out["disagreement"] = values.max(axis=1) - values.min(axis=1)  # NaN where one is
    if labelled and "true" in last.columns:
        truth = last.loc[machines, "true"].to_numpy(dtype=np.float64)
        out["true_rul"] = truth if cap is None else np.minimum(truth, cap)
    out["novelty"] = (
        sc["novelty_kind"].astype(str).str.replace("_", " ").to_numpy()
        if "novelty_kind" in sc
        else ""
    )
    tops = [c for c in (f"top{i}_sensor" for i in range(1, 4)) if c in sc]
    out["top_sensors"] = [", ".join(s for s in row if s) for row in sc[tops].to_numpy()]
    if "forest_top_sensors" in sc:
        out["forest_top_sensors"] = sc["forest_top_sensors"].astype(str).to_numpy()
    out["reason"] = sc["alert_reason"].astype(str).to_numpy() if "alert_reason" in sc else ""
    rank = pd.Categorical(out["alert"], categories=list(ALERT_ORDER), ordered=True).codes
    low = np.nanmin(np.where(np.isfinite(values), values, np.inf), axis=1)
    order = np.lexsort((out["machine"].to_numpy(), low, rank))
    return out.iloc[order].reset_index(drop=True)


def late_predictions(
    preds: pd.DataFrame,
    models: Sequence[str] = ("lstm", "forest"),
    cap: float | None = None,
    late: float = LATE_CYCLES,
) -> pd.DataFrame:
    """Machines whose latest prediction by any model exceeds the (capped) true RUL by more
    than ``late`` cycles, worst first: machine, cycle, true_rul, per model its predicted RUL
    and ``<model>_late_by`` (predicted minus true), and ``worst_late_by``."""
    last = last_predictions(preds)
    truth = last["true"].to_numpy(dtype=np.float64)
    if cap is not None:
        truth = np.minimum(truth, cap)
    out = pd.DataFrame({"machine": list(last.index), "cycle": last["time"].to_numpy()})
    out["true_rul"] = truth
    by = []
    for m in models:
        p = last[m].to_numpy(dtype=np.float64)
        out[f"{m}_rul"] = p
        out[f"{m}_late_by"] = p - truth
        by.append(f"{m}_late_by")
    out["worst_late_by"] = out[by].max(axis=1)
    out = out[out["worst_late_by"] > late]
    order = np.lexsort((out["machine"].to_numpy(), -out["worst_late_by"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def pick_trajectories(
    at_risk: pd.DataFrame, late: pd.DataFrame, n_risk: int = 2, n_late: int = 2
) -> list[str]:
    """The machines the trajectory chart shows: the ``n_risk`` most urgent, then the
    ``n_late`` worst late predictions not already picked (topped up from the at-risk
    order when there are fewer)."""
    picked = [str(m) for m in at_risk["machine"].head(n_risk)]
    for m in late["machine"].astype(str):
        if len(picked) >= n_risk + n_late:
            break
        if m not in picked:
            picked.append(m)
    for m in at_risk["machine"].astype(str):
        if len(picked) >= n_risk + n_late:
            break
        if m not in picked:
            picked.append(m)
    return picked
