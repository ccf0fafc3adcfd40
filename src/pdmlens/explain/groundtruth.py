"""Do the attributions name the sensors the fault truly drives? (simulated fleets)

The simulator knows, for every unit, its fault mode and the sensors that mode drives
(``meta.fault_modes``: unit -> mode, ``meta.fault_sensors``: mode -> sensors). A model's
sensor ranking, by |per-sensor attribution|, is scored with precision@k, k = the number of
sensors the unit's fault mode drives: the share of the model's top-k sensors that are truly
driven (1 = it names exactly the fault sensors first).

Which samples: windows with ``rul < rul_max`` (when RUL is given). At the cap the label
says "healthy" whatever the sensors do, a RUL model's output is flat there and its
attributions describe noise, not the fault: those windows would score the explainer on a
question the model was never asked. ``rul_max`` = the RUL cap keeps every window where
degradation has begun as far as the labels know; but the simulator's damage grows as a
power of time since an onset at 0-50 % of life, so many such windows still show less drift
than noise, and no ranking can find the fault sensors in them. The benchmark therefore
reports precision at several ``rul_max`` (the cap, half of it, the failure horizon) beside
a model-free reference (:func:`deviation_scores`: rank sensors by how far the window sits
from the healthy baseline), so that the explainer is judged on windows where the fault
shows.

Two levels: per sample (each window's own ranking, averaged over windows) and per unit
(the unit's windows pooled as mean |attribution| per sensor, then ranked once), per fault
mode and overall. True sensors the model does not see (dropped as constant, say) are left
out of the truth, and k shrinks with them; a mode none of whose sensors are seen is skipped.
Inputs that are not sensors (``age``, settings fed as features) are left out of the ranking
when the inputs are named ``sensor_*``: no fault drives them, and the question is which
sensors the explanation names, not whether the model also reads the machine's age.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.data.fleet import SENSOR_PREFIX
from pdmlens.explain.attributions import Attribution

log = logging.getLogger(__name__)

ALL = "all"


def deviation_scores(x: np.ndarray, baseline: np.ndarray, last: int = 5) -> np.ndarray:
    """A model-free ranking [N, F]: |mean of the last ``last`` steps - the baseline's| per
    sensor (inputs are normalised per sensor, so the scales compare). What the data alone
    says about which sensors moved, a reference for the models' rankings (a model that
    weighs noise and the whole window can do better)."""
    x = np.asarray(x, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    return np.abs(x[:, -last:, :].mean(axis=1) - b[-last:, :].mean(axis=0))


def precision_at_k(scores: np.ndarray, truth: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per-row precision@k of ``scores`` [N, F] (|.| taken; ties broken by sensor order)
    against the boolean ``truth`` [N, F] (or [F]); k default: each row's number of true
    sensors. Rows with k = 0 give NaN."""
    s = np.abs(np.atleast_2d(np.asarray(scores, dtype=np.float64)))
    t = np.broadcast_to(np.atleast_2d(np.asarray(truth, dtype=bool)), s.shape)
    order = np.argsort(-s, axis=1, kind="stable")
    hits = np.take_along_axis(t, order, axis=1)
    kk = t.sum(axis=1) if k is None else np.full(s.shape[0], int(k))
    cum = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(hits, axis=1)], axis=1)
    got = cum[np.arange(s.shape[0]), np.minimum(kk, s.shape[1])]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kk > 0, got / np.maximum(kk, 1), np.nan)


def truth_mask(
    sensor_names: Sequence[str], modes: Sequence[Any], fault_sensors: Mapping[str, Sequence[str]]
) -> np.ndarray:
    """[N, F] boolean: sensor j is driven by sample i's fault mode (unknown mode: none)."""
    col = {str(s): j for j, s in enumerate(sensor_names)}
    table = {}
    for mode, sensors in fault_sensors.items():
        row = np.zeros(len(sensor_names), dtype=bool)
        idx = [col[str(s)] for s in sensors if str(s) in col]
        row[idx] = True
        table[str(mode)] = row
    empty = np.zeros(len(sensor_names), dtype=bool)
    return (
        np.stack([table.get(str(m), empty) for m in modes])
        if len(modes)
        else np.zeros((0, len(sensor_names)), dtype=bool)
    )


def unit_precision(
    attr: Attribution | np.ndarray,
    units: np.ndarray | Sequence[Any],
    fault_modes: Mapping[str, str],
    fault_sensors: Mapping[str, Sequence[str]],
    sensor_names: Sequence[str] | None = None,
    rul: np.ndarray | None = None,
    rul_max: float | None = None,
) -> pd.DataFrame:
    """One row per scored unit: unit, fault_mode, k, n_samples, precision_sample (mean over
    its windows), precision_unit (its pooled ranking), top_sensors (pooled, top k).
    ``attr``: an Attribution, or per-sample sensor scores [N, F] with ``sensor_names``."""
    per = attr.per_sensor() if isinstance(attr, Attribution) else np.asarray(attr)
    names = list(attr.sensor_names if isinstance(attr, Attribution) else sensor_names or [])
    if len(names) != per.shape[1]:
        raise ValueError("sensor_names must name every column of the attributions")
    cols = [j for j, n in enumerate(names) if str(n).startswith(SENSOR_PREFIX)]
    if cols and len(cols) < len(names):
        per, names = per[:, cols], [names[j] for j in cols]
    units = np.asarray(units).astype(str)
    if units.shape[0] != per.shape[0]:
        raise ValueError("units must give one unit per sample")
    keep = np.ones(per.shape[0], dtype=bool)
    if rul is not None:
        rul = np.asarray(rul, dtype=np.float64)
        if rul.shape[0] != per.shape[0]:
            raise ValueError("rul must give one value per sample")
        keep &= rul < (np.inf if rul_max is None else float(rul_max))
    modes = np.array([fault_modes.get(u) for u in units], dtype=object)
    keep &= np.array([m is not None for m in modes], dtype=bool)
    truth = truth_mask(names, modes[keep].tolist(), fault_sensors)
    k_row = truth.sum(axis=1)
    sel = np.flatnonzero(keep)
    ok = k_row > 0
    skipped = {str(m) for m in modes[sel[~ok]]}
    if skipped:
        log.warning("fault modes %s drive none of the model's sensors: not scored", sorted(skipped))
    sel, truth = sel[ok], truth[ok]
    p_sample = precision_at_k(per[sel], truth)
    rows = []
    su = units[sel]
    codes, uniques = pd.factorize(su, sort=False)
    for c, u in enumerate(uniques):
        m = codes == c
        pooled = np.abs(per[sel[m]]).mean(axis=0)
        t = truth[np.flatnonzero(m)[0]]
        k = int(t.sum())
        top = np.argsort(-pooled, kind="stable")[:k]
        rows.append(
            {
                "unit": u,
                "fault_mode": str(fault_modes[u]),
                "k": k,
                "n_samples": int(m.sum()),
                "precision_sample": float(p_sample[m].mean()),
                "precision_unit": float(precision_at_k(pooled, t)[0]),
                "top_sensors": [names[j] for j in top],
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "unit",
            "fault_mode",
            "k",
            "n_samples",
            "precision_sample",
            "precision_unit",
            "top_sensors",
        ],
    )


def groundtruth_precision(
    attr: Attribution | np.ndarray,
    units: np.ndarray | Sequence[Any],
    fault_modes: Mapping[str, str],
    fault_sensors: Mapping[str, Sequence[str]],
    sensor_names: Sequence[str] | None = None,
    rul: np.ndarray | None = None,
    rul_max: float | None = None,
) -> pd.DataFrame:
    """Precision@k per fault mode and overall (last row, ``fault_mode == "all"``).

    Columns: fault_mode, k (NaN in "all" when modes differ), n_units, n_samples,
    precision_sample (mean over the mode's selected windows), precision_unit (mean over its
    units of the pooled ranking's precision). See the module docstring for the selection.
    """
    per_unit = unit_precision(attr, units, fault_modes, fault_sensors, sensor_names, rul, rul_max)
    cols = ["fault_mode", "k", "n_units", "n_samples", "precision_sample", "precision_unit"]
    if per_unit.empty:
        return pd.DataFrame(columns=cols)
    rows = []

    def summarise(name: str, g: pd.DataFrame) -> dict[str, Any]:
        ks = g["k"].unique()
        w = g["n_samples"].to_numpy(dtype=np.float64)
        return {
            "fault_mode": name,
            "k": float(ks[0]) if len(ks) == 1 else float("nan"),
            "n_units": len(g),
            "n_samples": int(w.sum()),
            "precision_sample": float(np.average(g["precision_sample"], weights=w)),
            "precision_unit": float(g["precision_unit"].mean()),
        }

    for mode, g in per_unit.groupby("fault_mode", sort=True):
        rows.append(summarise(str(mode), g))
    rows.append(summarise(ALL, per_unit))
    return pd.DataFrame(rows, columns=cols)
