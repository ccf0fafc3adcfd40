"""WindowDataset: slicing, padding of short units, last-window protocol, stride, memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pdmlens.data.windows import WindowDataset


def frame() -> pd.DataFrame:
    """Unit a: 5 rows, unit b: 2 rows (shorter than a 3-window). f = 10 * row + 1, g = -f."""
    f = np.array([1, 11, 21, 31, 41, 51, 61], dtype=np.float64)
    return pd.DataFrame(
        {
            "unit": ["a"] * 5 + ["b"] * 2,
            "time": [1, 2, 3, 4, 5, 1, 2],
            "f": f,
            "g": -f,
            "rul": [4.0, 3.0, 2.0, 1.0, 0.0, 9.0, 8.0],
        }
    )


def test_slices_every_window_ending_in_each_unit() -> None:
    ds = WindowDataset(frame(), ["f", "g"], length=3, target="rul")
    assert len(ds) == 3 + 1
    x, y = ds.batch(np.arange(len(ds)))
    assert x.dtype == np.float32 and x.shape == (4, 3, 2)
    assert x[:, :, 0].tolist() == [[1, 11, 21], [11, 21, 31], [21, 31, 41], [51, 51, 61]]
    assert np.array_equal(x[:, :, 1], -x[:, :, 0])
    assert y.tolist() == [2.0, 1.0, 0.0, 8.0]
    assert ds.window_units.tolist() == ["a", "a", "a", "b"]
    assert ds.window_times.tolist() == [3, 4, 5, 2]
    assert ds.window_targets.tolist() == [2.0, 1.0, 0.0, 8.0]


def test_short_unit_padding_edge_and_zero() -> None:
    # edge: the first reading repeated before the unit was observed.
    edge = WindowDataset(frame(), ["f"], length=4, pad="edge")
    b = edge.batch([len(edge) - 1])[0][0, :, 0]
    assert b.tolist() == [51, 51, 51, 61]
    # zero: zeros (the training mean after normalisation).
    zero = WindowDataset(frame(), ["f"], length=4, pad="zero")
    assert zero.batch([len(zero) - 1])[0][0, :, 0].tolist() == [0, 0, 51, 61]
    assert zero.rows([len(zero) - 1]).tolist() == [[-1, -1, 5, 6]]
    # full_only drops units shorter than the window.
    full = WindowDataset(frame(), ["f"], length=4, full_only=True)
    assert set(full.window_units) == {"a"} and len(full) == 2


def test_last_window_protocol() -> None:
    ds = WindowDataset(frame(), ["f"], length=3, target="rul", last_only=True)
    assert len(ds) == 2
    x, y = ds.batch([0, 1])
    assert x[:, :, 0].tolist() == [[21, 31, 41], [51, 51, 61]]
    assert y.tolist() == [0.0, 8.0]
    every = WindowDataset(frame(), ["f"], length=3, target="rul")
    assert every.last_windows().tolist() == [2, 3]
    assert every.last_windows(full_only=True).tolist() == [2]
    assert WindowDataset(
        frame(), ["f"], length=3, last_only=True, full_only=True
    ).window_units.tolist() == ["a"]


def test_stride_counts_back_from_the_last_row() -> None:
    ds = WindowDataset(frame(), ["f"], length=2, stride=2, target="rul")
    # unit a ends at rows 4 and 2 (row 0 cannot end a full window); b at its last row.
    assert ds.window_times.tolist() == [3, 5, 2]
    assert ds.batch([0, 1, 2])[0][:, :, 0].tolist() == [[11, 21], [31, 41], [51, 61]]


def test_iter_batches_reuses_one_buffer_and_covers_all() -> None:
    ds = WindowDataset(frame(), ["f", "g"], length=3, target="rul")
    seen, bufs, xs = [], set(), []
    for idx, x, y in ds.iter_batches(3):
        seen.extend(idx.tolist())
        bufs.add(x.base.__array_interface__["data"][0] if x.base is not None else id(x))
        xs.append(x.copy())
        assert y.tolist() == ds.window_targets[idx].tolist()
    assert seen == [0, 1, 2, 3] and len(bufs) == 1
    assert np.array_equal(np.concatenate(xs), ds.all_windows())


def test_getitem_for_torch() -> None:
    ds = WindowDataset(frame(), ["f"], length=3, target="rul")
    x, y = ds[3]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 1) and float(y) == 8.0
    assert torch.isnan(WindowDataset(frame(), ["f"], length=3)[0][1])


def test_memory_is_rows_not_windows() -> None:
    """Held arrays grow with the rows, not with window count x length."""
    n_units, n_rows = 50, 200
    big = pd.DataFrame(
        {
            "unit": np.repeat([f"u{i}" for i in range(n_units)], n_rows),
            "time": np.tile(np.arange(n_rows), n_units),
            "f": np.arange(n_units * n_rows, dtype=np.float64),
            "g": 1.0,
            "h": 2.0,
            "rul": 0.0,
        }
    )

    def held(ds: WindowDataset) -> int:
        return sum(v.nbytes for v in vars(ds).values() if isinstance(v, np.ndarray))

    feats = ["f", "g", "h"]
    short = WindowDataset(big, feats, length=5, target="rul")
    long = WindowDataset(big, feats, length=100, target="rul")
    rows = n_units * n_rows
    assert long.values.shape == (rows, 3)
    assert held(long) <= held(short) < 60 * rows  # bytes per row, whatever the length
    # Materialising all windows would take len(long) * 100 * 3 * 4 bytes: ten times more.
    assert len(long) * 100 * 3 * 4 > 10 * held(long)


def test_frame_must_be_grouped_by_unit() -> None:
    bad = frame().iloc[[0, 1, 5, 2, 3, 4, 6]]
    with pytest.raises(ValueError, match="grouped by unit"):
        WindowDataset(bad, ["f"], length=2)


def test_min_history_adds_left_padded_windows_of_short_histories() -> None:
    ds = WindowDataset(frame(), ["f"], length=3, target="rul", min_history=1)
    assert len(ds) == 5 + 2  # a window ending at every row
    x, y = ds.batch(np.arange(len(ds)))
    assert x[:, :, 0].tolist() == [
        [1, 1, 1],
        [1, 1, 11],
        [1, 11, 21],
        [11, 21, 31],
        [21, 31, 41],
        [51, 51, 51],
        [51, 51, 61],
    ]
    assert y.tolist() == [4.0, 3.0, 2.0, 1.0, 0.0, 9.0, 8.0]
    two = WindowDataset(frame(), ["f"], length=3, min_history=2)
    assert two.window_times.tolist() == [2, 3, 4, 5, 2]
    # the default (None) keeps full windows only, and last_only ignores min_history
    assert len(WindowDataset(frame(), ["f"], length=3)) == 4
    last = WindowDataset(frame(), ["f"], length=3, last_only=True, min_history=1)
    assert last.window_times.tolist() == [5, 2]
    with pytest.raises(ValueError, match="min_history"):
        WindowDataset(frame(), ["f"], length=3, min_history=0)


def test_cut_units_mirrors_the_test_protocol() -> None:
    from pdmlens.data.windows import cut_units

    cut = cut_units(frame(), cuts=3, seed=0)
    for unit, g in cut.groupby("unit", sort=False):
        name, kept = unit.rsplit("@", 1)
        src = frame()[frame()["unit"] == name]
        assert len(g) == int(kept) <= len(src)
        # a prefix of the unit, labels untouched
        assert g["time"].tolist() == src["time"].tolist()[: len(g)]
        assert g["rul"].tolist() == src["rul"].tolist()[: len(g)]
    assert cut.equals(cut_units(frame(), cuts=3, seed=0))  # seeded
    last = WindowDataset(cut, ["f"], length=3, target="rul", last_only=True)
    assert len(last) == cut["unit"].nunique()


def test_max_windows_keeps_a_seeded_ordered_sample() -> None:
    full = WindowDataset(frame(), ["f", "g"], length=2, target="rul")  # 4 + 1 windows
    assert len(full) == 5
    same = WindowDataset(frame(), ["f", "g"], length=2, target="rul", max_windows=5)
    assert np.array_equal(same.end_row, full.end_row)  # not more than asked: all kept
    picks = set()
    for seed in range(20):
        ds = WindowDataset(
            frame(), ["f", "g"], length=2, target="rul", max_windows=3, sample_seed=seed
        )
        assert len(ds) == 3
        assert np.all(np.diff(ds.end_row) > 0)  # in order, no repeats
        assert set(ds.end_row) <= set(full.end_row)
        x, y = ds.batch(np.arange(3))
        # each sampled window is the very window of the full set ending at that row
        at = np.searchsorted(full.end_row, ds.end_row)
        assert np.array_equal(x, full.batch(at)[0]) and np.array_equal(y, full.window_targets[at])
        assert ds.window_units.tolist() == full.window_units[at].tolist()
        again = WindowDataset(
            frame(), ["f", "g"], length=2, target="rul", max_windows=3, sample_seed=seed
        )
        assert np.array_equal(again.end_row, ds.end_row)  # a seed repeats exactly
        picks.add(tuple(ds.end_row))
    assert len(picks) > 1  # other seeds, other samples
    with pytest.raises(ValueError, match="max_windows"):
        WindowDataset(frame(), ["f"], length=2, max_windows=0)
