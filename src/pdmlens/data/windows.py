"""Sliding windows over a prepared long table, sliced on demand.

Windows are never materialised as a whole: the table's feature columns are held once as a
float32 array (rows x features) and a window is an index range into it, so memory stays
O(rows) for any window length. ``batch`` gathers many windows at once with one fancy-index,
which is what training and explanation loops use; ``__getitem__`` serves torch's DataLoader.

A window ends at a row and covers the ``length`` rows up to and including it, within one
unit. Units shorter than the window are not dropped: their one window is left-padded.
``min_history`` = m < length also gives windows ending at a unit's m-th row onwards,
left-padded the same way, so that a model learns to read short histories (as it meets
them in the C-MAPSS test protocol, where units are cut off early). With
``pad="edge"`` the padding repeats the unit's first reading (the machine is taken to have
been steady before it was first observed); with ``pad="zero"`` the padding is zeros, which
after normalisation means "the training mean". ``max_windows`` keeps a seeded sample of
that many windows (in order) when there are more: a bound on the cost of training on a
large fleet (``window.max_train_windows``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pdmlens.data.fleet import TIME, UNIT


class WindowDataset(Dataset):
    """Windows of ``length`` rows over ``frame[features]``, one per valid end row."""

    def __init__(
        self,
        frame: pd.DataFrame,
        features: Sequence[str],
        length: int,
        target: str | None = None,
        stride: int = 1,
        pad: str = "edge",
        last_only: bool = False,
        full_only: bool = False,
        min_history: int | None = None,
        max_windows: int | None = None,
        sample_seed: int = 0,
    ) -> None:
        if length < 1:
            raise ValueError("window length must be >= 1")
        if min_history is not None and min_history < 1:
            raise ValueError("min_history must be >= 1")
        if pad not in ("edge", "zero"):
            raise ValueError("pad must be 'edge' or 'zero'")
        if max_windows is not None and max_windows < 1:
            raise ValueError("max_windows must be >= 1")
        self.features = list(features)
        self.length = int(length)
        self.target = target
        self.pad = pad
        self.values = np.ascontiguousarray(frame[self.features].to_numpy(dtype=np.float32))
        self.targets = (
            None if target is None else frame[target].to_numpy(dtype=np.float32, copy=True)
        )
        # Integer codes, not an object array of names: converting ten million Arrow
        # strings to Python objects costs seconds and ~60 bytes a row.
        codes, uniques = pd.factorize(frame[UNIT], sort=False)
        self.times = frame[TIME].to_numpy()
        # Row offsets of each unit: the table is grouped by unit (prepare guarantees it).
        change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        starts = np.concatenate([[0], change]).astype(np.int64)
        ends = np.concatenate([change, [len(codes)]]).astype(np.int64)
        names = np.asarray(uniques, dtype=object)
        self.unit_names = names[codes[starts]] if len(codes) else np.array([], dtype=object)
        if len(self.unit_names) != len(names):
            raise ValueError("frame must be grouped by unit (each unit's rows contiguous)")
        self.unit_start = starts
        self.unit_end = ends
        end_rows, end_unit = [], []
        for u, (s, e) in enumerate(zip(starts, ends, strict=True)):
            n = e - s
            if last_only:
                if full_only and n < self.length:
                    continue
                rows = np.array([e - 1])
            else:
                first = s + min(self.length if min_history is None else min_history, n) - 1
                if full_only and n < self.length:
                    continue
                # Count back from the last row so the final window is always included.
                rows = np.arange(e - 1, first - 1, -stride)[::-1]
            end_rows.append(rows)
            end_unit.append(np.full(len(rows), u, dtype=np.int64))
        self.end_row = np.concatenate(end_rows) if end_rows else np.zeros(0, np.int64)
        self.window_unit_index = np.concatenate(end_unit) if end_unit else np.zeros(0, np.int64)
        if max_windows is not None and len(self.end_row) > max_windows:
            # a seeded sample, kept in order (each unit's windows stay contiguous)
            rng = np.random.default_rng(sample_seed)
            keep = np.sort(rng.choice(len(self.end_row), size=max_windows, replace=False))
            self.end_row = self.end_row[keep]
            self.window_unit_index = self.window_unit_index[keep]
        self._offsets = np.arange(self.length, dtype=np.int64) - (self.length - 1)

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.end_row)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def window_units(self) -> np.ndarray:
        """Unit name of every window."""
        return self.unit_names[self.window_unit_index]

    @property
    def window_times(self) -> np.ndarray:
        """Time of the last row of every window."""
        return self.times[self.end_row]

    @property
    def window_targets(self) -> np.ndarray:
        if self.targets is None:
            raise ValueError("this WindowDataset has no target column")
        return self.targets[self.end_row]

    def rows(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Row numbers [len(idx), length] of the given windows, padding rows marked -1
        for zero padding or clipped to the unit's first row for edge padding."""
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.end_row[idx, None] + self._offsets[None, :]
        first = self.unit_start[self.window_unit_index[idx]][:, None]
        if self.pad == "edge":
            return np.maximum(rows, first)
        return np.where(rows < first, -1, rows)

    def batch(
        self, idx: np.ndarray | Sequence[int], out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Windows [len(idx), length, features] (float32) and their targets.

        ``out`` may be a preallocated buffer of at least that size, reused across calls.
        """
        rows = self.rows(idx)
        n = rows.shape[0]
        if out is None:
            out = np.empty((n, self.length, self.n_features), dtype=np.float32)
        else:
            out = out[:n]
        np.take(self.values, np.maximum(rows, 0), axis=0, out=out, mode="clip")
        if self.pad == "zero":
            out[rows < 0] = 0.0
        y = None if self.targets is None else self.targets[self.end_row[np.asarray(idx)]]
        return out, y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([i])
        target = torch.tensor(float("nan") if y is None else float(y[0]))
        return torch.from_numpy(x[0]), target

    def all_windows(self) -> np.ndarray:
        """Every window at once (memory O(windows x length)): for small sets only."""
        return self.batch(np.arange(len(self)))[0]

    def last_windows(self, full_only: bool = False) -> np.ndarray:
        """Indices of each unit's last window (the C-MAPSS test protocol)."""
        last = np.flatnonzero(
            np.r_[self.window_unit_index[1:] != self.window_unit_index[:-1], True]
        )
        if full_only:
            lengths = (self.unit_end - self.unit_start)[self.window_unit_index[last]]
            last = last[lengths >= self.length]
        return last

    def iter_batches(self, batch_size: int, idx: np.ndarray | None = None):
        """Yield (indices, x, y) in order, reusing one buffer (copy x if you keep it)."""
        idx = np.arange(len(self)) if idx is None else np.asarray(idx)
        buf = np.empty(
            (min(batch_size, max(len(idx), 1)), self.length, self.n_features), dtype=np.float32
        )
        for s in range(0, len(idx), batch_size):
            part = idx[s : s + batch_size]
            x, y = self.batch(part, out=buf)
            yield part, x, y


def cut_units(frame: pd.DataFrame, cuts: int, seed: int = 0, min_rows: int = 1) -> pd.DataFrame:
    """Each unit cut off ``cuts`` times at random rows (seeded), as the C-MAPSS test set
    cuts its engines: the copies are new units named ``<unit>@<rows kept>``. Scoring the
    last window of each copy (``WindowDataset(..., last_only=True)``) mirrors the test
    protocol on validation units, short histories included."""
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(frame[UNIT], sort=False)
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [len(codes)]]).astype(np.int64)
    pieces, names = [], []
    for s, e in zip(starts, ends, strict=True):
        n = int(e - s)
        lo = min(max(1, min_rows), n)
        keep = np.unique(rng.integers(lo, n + 1, size=cuts))
        unit = str(frame[UNIT].iat[s])
        for k in keep:
            pieces.append(np.arange(s, s + k))
            names.append(np.full(k, f"{unit}@{k}", dtype=object))
    if not pieces:
        return frame.iloc[:0].copy()
    out = frame.iloc[np.concatenate(pieces)].reset_index(drop=True)
    out[UNIT] = np.concatenate(names)
    return out
