"""Summary statistics of sensor windows, the random forest's input.

A forest cannot read a [window, sensor] matrix as a sequence, so each window becomes a row
of per-sensor statistics named ``<sensor>__<stat>`` (last value, mean, std, least-squares
slope, min, max). The names are what make the forest explainable in the same vocabulary as
the LSTM: SHAP values of a sensor's statistics fold back to one value per sensor.

The computation is vectorised over windows and done in chunks into one output array, so
millions of windows cost bounded scratch memory (one chunk), not a copy per statistic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STATS = ("last", "mean", "std", "slope", "min", "max")
SEP = "__"


def feature_names(feature_names: Sequence[str], stats: Sequence[str] = STATS) -> list[str]:
    """Names ``<sensor>__<stat>`` in sensor-major order (all stats of sensor 0 first)."""
    _check_stats(stats)
    return [f"{f}{SEP}{s}" for f in feature_names for s in stats]


def _check_stats(stats: Sequence[str]) -> None:
    bad = [s for s in stats if s not in STATS]
    if bad:
        raise ValueError(f"unknown window statistics {bad}; choose from {list(STATS)}")
    if not stats:
        raise ValueError("at least one window statistic is needed")


def window_features(
    x: np.ndarray,
    feature_names_in: Sequence[str],
    stats: Sequence[str] = STATS,
    chunk_size: int = 8192,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Per-window statistics of ``x`` [N, W, F]: float32 [N, F*S] and their names.

    ``slope`` is the least-squares slope per time step over the window (0 for W = 1);
    ``std`` is the population standard deviation. ``out`` may be a preallocated
    float32 [N, F*S] array (filled and returned).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must be [N, W, F], got shape {x.shape}")
    n, w, f = x.shape
    if f != len(feature_names_in):
        raise ValueError(f"x has {f} features but {len(feature_names_in)} names were given")
    names = feature_names(feature_names_in, stats)
    s = len(stats)
    if out is None:
        out = np.empty((n, f * s), dtype=np.float32)
    elif out.shape != (n, f * s) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n, f * s)}, got {out.dtype} {out.shape}")
    view = out.reshape(n, f, s)
    t = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
    denom = float(np.sum(t * t))
    tw = (t / denom).astype(np.float32) if denom > 0 else np.zeros(w, np.float32)
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        c = x[a:b].astype(np.float32, copy=False)
        mean = None
        for j, stat in enumerate(stats):
            dst = view[a:b, :, j]
            if stat == "last":
                dst[...] = c[:, -1, :]
            elif stat == "mean" or stat == "std":
                if mean is None:
                    mean = c.mean(axis=1, dtype=np.float64)
                if stat == "mean":
                    dst[...] = mean
                else:
                    dev = c - mean[:, None, :].astype(np.float32)
                    np.square(dev, out=dev)
                    dst[...] = np.sqrt(dev.mean(axis=1, dtype=np.float64))
            elif stat == "slope":
                # sum_t (t - t_bar) x_t / sum_t (t - t_bar)^2, as one contraction over t.
                dst[...] = np.matmul(tw, c)
            elif stat == "min":
                c.min(axis=1, out=dst)
            else:
                c.max(axis=1, out=dst)
    return out, names


def fold_to_sensors(values: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Sum the columns of each sensor: values [N, F*S] (or [F*S]) named ``<sensor>__<stat>``
    -> ([N, F] (or [F]), sensors in order of first appearance)."""
    values = np.asarray(values)
    if values.shape[-1] != len(names):
        raise ValueError(f"values have {values.shape[-1]} columns but {len(names)} names")
    sensors: list[str] = []
    index: dict[str, int] = {}
    col = np.empty(len(names), dtype=np.int64)
    for k, name in enumerate(names):
        sensor = name.rsplit(SEP, 1)[0] if SEP in name else name
        if sensor not in index:
            index[sensor] = len(sensors)
            sensors.append(sensor)
        col[k] = index[sensor]
    folded = np.zeros(values.shape[:-1] + (len(sensors),), dtype=np.result_type(values, np.float32))
    for k in range(len(names)):
        folded[..., col[k]] += values[..., k]
    return folded, sensors
