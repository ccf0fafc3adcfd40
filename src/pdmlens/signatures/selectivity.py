"""Which hidden units switch on for which health stage (LSTMVis-style selectivity).

After Strobelt et al. (2017, "LSTMVis"): a unit is *on* at a time step when its activation
is above a threshold; a unit is selective for a stage when it is on throughout the runs of
time steps spent in that stage and off elsewhere. For every stage and unit this module
counts on-steps inside and outside the stage over many sequences (windows [N, T, H] or
whole per-unit trajectories of any length) and ranks units by a selectivity score:

- ``f1``: harmonic mean of precision (on-steps that fall inside the stage) and recall
  (in-stage steps on which the unit is on);
- ``difference``: fraction of in-stage steps on minus fraction of out-of-stage steps on.

``min_run`` filters flicker: in-stage runs shorter than that are transitions and are left
out of the counts, and on-runs shorter than that do not count as on. With ``signed`` a
unit that goes strongly *negative* in a stage (tanh outputs are symmetric) is reported too,
with direction "-". ``run_coverage`` is the strict LSTMVis match: the fraction of in-stage
runs during which the unit stayed on at every step.

Work is done in chunks of sequences, so memory stays bounded for many windows.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.signatures.cluster import UNKNOWN_STAGE, _ordered, layer_label

log = logging.getLogger(__name__)


def _open_runs(mask: np.ndarray, m: int) -> np.ndarray:
    """Keep only runs of True at least ``m`` long along axis 1 (morphological opening)."""
    if m <= 1:
        return mask
    n, t = mask.shape[:2]
    if t < m:
        return np.zeros_like(mask)
    c = np.zeros((n, t + 1) + mask.shape[2:], dtype=np.int32)
    np.cumsum(mask, axis=1, out=c[:, 1:])
    # eroded[:, j] is True when mask[:, j:j+m] are all True (j = 0 .. t-m)
    eroded = (c[:, m:] - c[:, :-m]) == m
    # dilate back: position i is kept when some eroded start j in [i-m+1, i] is True
    e = np.zeros((n, t - m + 2) + mask.shape[2:], dtype=np.int32)
    np.cumsum(eroded, axis=1, out=e[:, 1:])
    idx = np.arange(t)
    hi = np.minimum(idx, t - m) + 1
    lo = np.maximum(idx - m + 1, 0)
    return (e[:, hi] - e[:, lo]) > 0


class _Counter:
    """Accumulates on/off counts per stage, unit and direction over chunks."""

    def __init__(self, n_stages: int, n_units: int, n_dirs: int) -> None:
        shape = (n_stages, n_dirs, n_units)
        self.tp = np.zeros(shape)
        self.on_valid = np.zeros(shape)
        self.full_runs = np.zeros(shape)
        self.n_in = np.zeros(n_stages)
        self.n_out = np.zeros(n_stages)
        self.n_runs = np.zeros(n_stages)

    def add(self, on: list[np.ndarray], codes: np.ndarray, n_stages: int, m: int) -> None:
        n, t, h = on[0].shape
        flat_on = [o.reshape(n * t, h).astype(np.float32) for o in on]
        known = codes >= 0  # "unknown" steps count neither inside nor outside
        for s in range(n_stages):
            is_s = codes == s
            if not is_s.any():
                continue
            in_s = _open_runs(is_s, m)
            valid = known & ~(is_s & ~in_s)
            out_s = valid & ~is_s
            self.n_in[s] += in_s.sum()
            self.n_out[s] += out_s.sum()
            fin = in_s.reshape(-1).astype(np.float32)
            fval = valid.reshape(-1).astype(np.float32)
            # run starts of in_s, never crossing a sequence boundary
            prev = np.zeros_like(in_s)
            prev[:, 1:] = in_s[:, :-1]
            starts_2d = in_s & ~prev
            sel = np.flatnonzero(in_s.reshape(-1))
            run_starts = np.flatnonzero(starts_2d.reshape(-1)[sel])
            self.n_runs[s] += len(run_starts)
            for d, fo in enumerate(flat_on):
                self.tp[s, d] += fin @ fo
                self.on_valid[s, d] += fval @ fo
                if len(sel):
                    off_in_run = np.add.reduceat(1.0 - fo[sel], run_starts, axis=0)
                    self.full_runs[s, d] += (off_in_run == 0).sum(axis=0)


def _blocks(act: Any, stages: Any, chunk: int):
    """Yield (activations [n, T, H], stages [n, T]) blocks from any supported layout."""
    if isinstance(act, np.ndarray) or hasattr(act, "shape"):
        a = np.asarray(act)
        s = np.asarray(stages)
        if a.ndim == 2:  # one sequence [T, H]
            a, s = a[None], s[None]
        if a.ndim != 3:
            raise ValueError(f"activations must be [N, T, H] or [T, H], got {a.shape}")
        if s.ndim == 1 and len(s) == a.shape[0]:  # one stage per sample
            s = np.broadcast_to(s[:, None], a.shape[:2])
        if s.shape != a.shape[:2]:
            raise ValueError(f"stages {s.shape} do not match activations {a.shape[:2]}")
        for i in range(0, a.shape[0], chunk):
            yield a[i : i + chunk], s[i : i + chunk]
        return
    seqs, labs = list(act), list(stages)
    if len(seqs) != len(labs):
        raise ValueError(f"{len(seqs)} sequences but {len(labs)} stage sequences")
    for a, s in zip(seqs, labs, strict=True):
        a, s = np.asarray(a), np.asarray(s)
        if a.ndim != 2 or s.shape != a.shape[:1]:
            raise ValueError(f"a sequence must be [T, H] with stages [T], got {a.shape}, {s.shape}")
        yield a[None], s[None]


def unit_selectivity(
    activations: Mapping[Hashable, Any] | Any,
    stages: Any,
    threshold: float = 0.3,
    min_run: int = 3,
    score: str = "f1",
    signed: bool = True,
    scale: str = "raw",
    order: Sequence[str] | None = None,
    top: int | None = None,
    chunk: int = 512,
) -> pd.DataFrame:
    """Rank hidden units by how selectively they are on during each health stage.

    ``activations``: per layer (a dict ``{layer: ...}``; a bare array is layer 1) either an
    array [N, T, H] of windows, one sequence [T, H], or a list of per-unit trajectories
    [T_i, H]. ``stages``: the stage label of every time step in the same layout ([N, T],
    [T], list of [T_i]; [N] means one stage per window). ``scale="zscore"`` standardizes
    each unit over all steps first, so ``threshold`` is in standard deviations. Steps
    labelled "unknown" are ignored.

    Returns a tidy DataFrame with columns stage, layer, unit, direction, score, precision,
    recall, f1, on_inside, on_outside, run_coverage, n_inside, rank (1 = most selective unit
    for that stage across all layers), sorted by stage (``order``) then rank; ``top`` keeps
    the best rows per stage.
    """
    if score not in ("f1", "difference"):
        raise ValueError(f"score must be 'f1' or 'difference', got {score!r}")
    if scale not in ("raw", "zscore"):
        raise ValueError(f"scale must be 'raw' or 'zscore', got {scale!r}")
    if min_run < 1:
        raise ValueError("min_run must be >= 1")
    layers = dict(activations) if isinstance(activations, Mapping) else {1: activations}
    all_stages = np.concatenate([np.asarray(s).reshape(-1) for s in _stage_list(stages)])
    names = [s for s in _ordered(all_stages, order) if s != UNKNOWN_STAGE]
    index = pd.Index(names, dtype=object)  # stage -> code, -1 for "unknown"
    dirs = ["+", "-"] if signed else ["+"]
    frames = []
    for layer, act in layers.items():
        mu, sd = _unit_moments(act, stages, chunk) if scale == "zscore" else (0.0, 1.0)
        counter: _Counter | None = None
        for a, s in _blocks(act, stages, chunk):
            z = (a.astype(np.float32) - mu) / sd
            on = [_open_runs(z > threshold, min_run)]
            if signed:
                on.append(_open_runs(z < -threshold, min_run))
            codes = index.get_indexer(s.reshape(-1)).astype(np.int64).reshape(s.shape)
            if counter is None:
                counter = _Counter(len(names), a.shape[2], len(dirs))
            counter.add(on, codes, len(names), min_run)
        if counter is None:
            continue
        frames.append(_table(counter, names, dirs, layer, score))
        log.info("selectivity: %s done (%d units)", layer_label(layer), counter.tp.shape[2])
    cols = [
        "stage",
        "layer",
        "unit",
        "direction",
        "score",
        "precision",
        "recall",
        "f1",
        "on_inside",
        "on_outside",
        "run_coverage",
        "n_inside",
        "rank",
    ]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    df["stage"] = pd.Categorical(df["stage"], categories=names, ordered=True)
    df = df.sort_values(
        ["stage", "score", "layer", "unit", "direction"],
        ascending=[True, False, True, True, True],
        kind="stable",
    )
    df["rank"] = df.groupby("stage", observed=True).cumcount() + 1
    if top is not None:
        df = df[df["rank"] <= top]
    df["stage"] = df["stage"].astype(str)
    return df[cols].reset_index(drop=True)


def _stage_list(stages: Any) -> list[np.ndarray]:
    if isinstance(stages, np.ndarray):
        return [stages]
    return [np.asarray(s) for s in stages]


def _unit_moments(act: Any, stages: Any, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    total: np.ndarray | None = None
    sq: np.ndarray | None = None
    n = 0
    for a, _ in _blocks(act, stages, chunk):
        f = a.reshape(-1, a.shape[2]).astype(np.float64)
        total = f.sum(0) if total is None else total + f.sum(0)
        sq = (f * f).sum(0) if sq is None else sq + (f * f).sum(0)
        n += len(f)
    if total is None or sq is None:
        raise ValueError("no activations to take moments of")
    mu = total / n
    sd = np.sqrt(np.maximum(sq / n - mu * mu, 0.0))
    sd[sd == 0] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def _table(
    c: _Counter, names: list[str], dirs: list[str], layer: Hashable, score: str
) -> pd.DataFrame:
    with np.errstate(divide="ignore", invalid="ignore"):
        n_in = c.n_in[:, None, None]
        n_out = c.n_out[:, None, None]
        fp = c.on_valid - c.tp
        precision = np.where(c.on_valid > 0, c.tp / c.on_valid, 0.0)
        recall = np.where(n_in > 0, c.tp / n_in, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        on_out = np.where(n_out > 0, fp / n_out, 0.0)
        cover = np.where(c.n_runs[:, None, None] > 0, c.full_runs / c.n_runs[:, None, None], 0.0)
    value = f1 if score == "f1" else recall - on_out
    n_s, n_d, n_h = c.tp.shape
    s_idx, d_idx, h_idx = np.meshgrid(np.arange(n_s), np.arange(n_d), np.arange(n_h), indexing="ij")
    return pd.DataFrame(
        {
            "stage": np.asarray(names, dtype=object)[s_idx.ravel()],
            "layer": [layer] * s_idx.size,
            "unit": h_idx.ravel(),
            "direction": np.asarray(dirs, dtype=object)[d_idx.ravel()],
            "score": value.ravel(),
            "precision": precision.ravel(),
            "recall": recall.ravel(),
            "f1": f1.ravel(),
            "on_inside": recall.ravel(),
            "on_outside": on_out.ravel(),
            "run_coverage": cover.ravel(),
            "n_inside": np.broadcast_to(n_in, value.shape).ravel().astype(np.int64),
        }
    )
