"""Do the LSTM and the random forest blame the same sensors?

Both models' attributions are reduced to one importance per sensor, mean |attribution| over
samples (the LSTM's summed over time first), and compared two ways:

- Spearman rank correlation of the two importance vectors (ties get average ranks;
  1 = same order, -1 = reversed, NaN when one vector is constant);
- top-k overlap ``|topk_a & topk_b| / k``: the share of the k most important sensors that
  both models name (ties at the k-th place broken by sensor order).

Globally over all samples, and per unit (each unit's samples pooled the same way), because
two models can agree on the fleet while disagreeing about individual machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from pdmlens.explain.attributions import Attribution


def spearman(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Spearman's rho of two equally long vectors (average ranks for ties); NaN if either
    is constant or shorter than 2."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.size} vs {b.size}")
    if a.size < 2:
        return float("nan")
    ra = rankdata(a) - (a.size + 1) / 2.0
    rb = rankdata(b) - (b.size + 1) / 2.0
    den = np.sqrt(np.dot(ra, ra) * np.dot(rb, rb))
    if den == 0.0:
        return float("nan")
    return float(np.clip(np.dot(ra, rb) / den, -1.0, 1.0))


def top_k(importance: np.ndarray | Sequence[float], k: int) -> np.ndarray:
    """Indices of the k largest values (ties broken by index)."""
    v = np.asarray(importance, dtype=np.float64).reshape(-1)
    return np.argsort(-v, kind="stable")[:k]


def topk_overlap(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float], k: int) -> float:
    """``|topk(a) & topk(b)| / k``."""
    a = np.asarray(a).reshape(-1)
    b = np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.size} vs {b.size}")
    if not 1 <= k <= a.size:
        raise ValueError(f"k must be in 1..{a.size}, got {k}")
    return len(set(top_k(a, k).tolist()) & set(top_k(b, k).tolist())) / k


def _per_sensor(attr: Attribution | np.ndarray) -> np.ndarray:
    return attr.per_sensor() if isinstance(attr, Attribution) else np.asarray(attr)


def aligned(
    a: Attribution | np.ndarray, b: Attribution | np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Both models' per-sensor attributions [N, F] in the same sensor order (b reordered to
    a's names when both are Attributions)."""
    va, vb = _per_sensor(a), _per_sensor(b)
    names = None
    if isinstance(a, Attribution) and isinstance(b, Attribution):
        names = a.sensor_names
        if b.sensor_names != names:
            if sorted(b.sensor_names) != sorted(names):
                raise ValueError(
                    f"the two attributions explain different sensors: {names} vs {b.sensor_names}"
                )
            vb = vb[:, [b.sensor_names.index(s) for s in names]]
    if va.shape != vb.shape:
        raise ValueError(
            f"attributions differ in shape {va.shape} vs {vb.shape}: explain the same samples"
        )
    return va, vb, names


def compare(ia: np.ndarray, ib: np.ndarray, k: int) -> dict[str, float]:
    """Spearman rho and top-k overlap of two importance vectors."""
    return {"spearman": spearman(ia, ib), "top_k_overlap": topk_overlap(ia, ib, k)}


def agreement(
    a: Attribution | np.ndarray,
    b: Attribution | np.ndarray,
    units: np.ndarray | Sequence[Any] | None = None,
    k: int | None = None,
) -> dict[str, Any]:
    """Agreement of two models' sensor importance on the same samples.

    ``a``/``b``: Attributions (or per-sensor arrays [N, F]); ``units``: the unit of each
    sample, for the per-unit table; ``k`` default: 3, or F when fewer sensors. Returns a dict
    with ``spearman``, ``top_k_overlap``, ``k`` (global), ``importance`` (DataFrame of both
    global importances and ranks, 1 = most important), and when ``units`` is given
    ``per_unit`` (DataFrame: unit, n_samples, spearman, top_k_overlap) and the per-unit means
    ``unit_spearman_mean`` / ``unit_top_k_overlap_mean`` (NaN rhos skipped).
    """
    va, vb, names = aligned(a, b)
    f = va.shape[1]
    k = min(3, f) if k is None else int(k)
    ia, ib = np.abs(va).mean(axis=0), np.abs(vb).mean(axis=0)
    out: dict[str, Any] = {"k": k, **compare(ia, ib, k)}
    label_a = a.model if isinstance(a, Attribution) else "a"
    label_b = b.model if isinstance(b, Attribution) else "b"
    if label_a == label_b:
        label_b = f"{label_b}_2"
    imp = pd.DataFrame(
        {
            label_a: ia,
            label_b: ib,
            f"{label_a}_rank": rankdata(-ia, method="min").astype(int),
            f"{label_b}_rank": rankdata(-ib, method="min").astype(int),
        },
        index=pd.Index(names if names is not None else range(f), name="sensor"),
    )
    out["importance"] = imp
    if units is not None:
        units = np.asarray(units)
        if units.shape[0] != va.shape[0]:
            raise ValueError("units must give one unit per sample")
        codes, uniques = pd.factorize(units, sort=False)
        rows = []
        for c, u in enumerate(uniques):
            sel = codes == c
            r = compare(np.abs(va[sel]).mean(axis=0), np.abs(vb[sel]).mean(axis=0), k)
            rows.append({"unit": u, "n_samples": int(sel.sum()), **r})
        per_unit = pd.DataFrame(rows, columns=["unit", "n_samples", "spearman", "top_k_overlap"])
        out["per_unit"] = per_unit
        rho = per_unit["spearman"].to_numpy(dtype=np.float64)
        out["unit_spearman_mean"] = (
            float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan")
        )
        out["unit_top_k_overlap_mean"] = float(per_unit["top_k_overlap"].mean())
    return out
