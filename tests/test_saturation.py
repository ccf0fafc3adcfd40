"""Gate saturation (Karpathy et al. 2015) on constructed traces with known fractions, the
streaming counter, the summary table and the saturation figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.explain.gates import KEYS, GateTrace
from pdmlens.explain.saturation import (
    SaturationCounter,
    saturation,
    saturation_summary,
)


def constructed_trace() -> GateTrace:
    """1 layer, 2 samples x 5 steps, 2 units; fractions are counted by hand below."""
    n, t, h = 2, 5, 2
    layer = {k: np.full((n, t, h), 0.5, dtype=np.float32) for k in KEYS}
    # i, unit 0: below 0.1 at 3 of 10 steps, above 0.9 at 2; 0.1 and 0.9 themselves count
    # as neither (strict comparisons)
    layer["i"][0, :, 0] = [0.05, 0.0, 0.1, 0.95, 0.9]
    layer["i"][1, :, 0] = [0.5, 0.09, 0.5, 0.99, 0.5]
    # i, unit 1: never saturated (0.5 everywhere)
    # f, unit 1: always open
    layer["f"][:, :, 1] = 0.97
    # o, unit 0: closed at every step of sample 1 only
    layer["o"][1, :, 0] = 0.01
    # g (tanh): unit 0 below -0.9 twice, above 0.9 once; -0.9 itself is not saturated
    layer["g"][0, :, 0] = [-0.95, -0.99, -0.9, 0.92, 0.0]
    return GateTrace([layer], num_layers=1, hidden_size=h)


def frac(df: pd.DataFrame, gate: str, unit: int, col: str) -> float:
    row = df[(df["layer"] == 0) & (df["gate"] == gate) & (df["unit"] == unit)]
    assert len(row) == 1
    return float(row[col].iloc[0])


def test_known_fractions():
    sat = saturation(constructed_trace())
    assert list(sat.columns) == [
        "layer",
        "gate",
        "unit",
        "left_saturated",
        "right_saturated",
        "n_steps",
    ]
    assert len(sat) == 3 * 2  # gates i, f, o x 2 units; g excluded by default
    assert set(sat["gate"]) == {"i", "f", "o"}
    assert (sat["n_steps"] == 10).all()
    assert frac(sat, "i", 0, "left_saturated") == 0.3
    assert frac(sat, "i", 0, "right_saturated") == 0.2
    assert frac(sat, "i", 1, "left_saturated") == 0.0
    assert frac(sat, "i", 1, "right_saturated") == 0.0
    assert frac(sat, "f", 1, "right_saturated") == 1.0
    assert frac(sat, "f", 0, "right_saturated") == 0.0
    assert frac(sat, "o", 0, "left_saturated") == 0.5
    assert frac(sat, "o", 1, "left_saturated") == 0.0


def test_cell_candidate_uses_absolute_threshold():
    sat = saturation(constructed_trace(), gates=("g",))
    assert frac(sat, "g", 0, "left_saturated") == 0.2
    assert frac(sat, "g", 0, "right_saturated") == 0.1
    looser = saturation(constructed_trace(), gates=("g",), g_threshold=0.5)
    assert frac(looser, "g", 0, "left_saturated") == 0.3


def test_custom_thresholds():
    sat = saturation(constructed_trace(), low=0.2, high=0.6)
    # i unit 0: 0.05, 0.0, 0.1, 0.09 < 0.2; 0.95, 0.9, 0.99 > 0.6
    assert frac(sat, "i", 0, "left_saturated") == 0.4
    assert frac(sat, "i", 0, "right_saturated") == 0.3


def test_streaming_counter_equals_whole_trace():
    rng = np.random.default_rng(0)
    layers = [
        {k: rng.uniform(0, 1, size=(9, 6, 4)).astype(np.float32) for k in KEYS} for _ in range(2)
    ]
    whole = GateTrace(layers, 2, 4)
    counter = SaturationCounter(gates=("i", "f", "g", "o"))
    for rows in (slice(0, 4), slice(4, 5), slice(5, 9)):
        counter.update(GateTrace([{k: v[rows] for k, v in lay.items()} for lay in layers], 2, 4))
    pd.testing.assert_frame_equal(counter.frame(), saturation(whole, gates=("i", "f", "g", "o")))
    assert (counter.frame()["n_steps"] == 54).all()


def test_counter_rejects_bad_arguments_and_mismatched_traces():
    with pytest.raises(ValueError, match="low < high"):
        SaturationCounter(low=0.9, high=0.1)
    with pytest.raises(ValueError, match="subset of i, f, g, o"):
        SaturationCounter(gates=("c",))
    counter = SaturationCounter().update(constructed_trace())
    two = GateTrace([constructed_trace().layers[0]] * 2, 2, 2)
    with pytest.raises(ValueError, match="layers"):
        counter.update(two)
    empty = SaturationCounter().frame()
    assert list(empty.columns)[:3] == ["layer", "gate", "unit"] and len(empty) == 0


def test_summary_counts_mostly_saturated_units():
    summ = saturation_summary(saturation(constructed_trace()), threshold=0.4)
    row = summ[(summ["layer"] == 0) & (summ["gate"] == "f")].iloc[0]
    assert row["units"] == 2
    assert row["units_mostly_open"] == 1
    assert row["units_mostly_closed"] == 0
    assert row["mean_right_saturated"] == 0.5
    o_row = summ[summ["gate"] == "o"].iloc[0]
    assert o_row["units_mostly_closed"] == 1  # 0.5 > 0.4


def test_saturation_figure():
    from matplotlib.figure import Figure

    from pdmlens.report.gate_plots import plot_saturation

    rng = np.random.default_rng(1)
    layers = [
        {k: rng.uniform(0, 1, size=(3, 4, 5)).astype(np.float32) for k in KEYS} for _ in range(2)
    ]
    sat = saturation(GateTrace(layers, 2, 5))
    fig = plot_saturation(sat)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["LSTM layer 1", "LSTM layer 2"]
    ax = fig.axes[0]
    assert "fully open" in ax.get_xlabel() and "fully closed" in ax.get_ylabel()
    # one scatter per gate, each with a dot per unit at (right, left)
    offsets = [c.get_offsets() for c in ax.collections]
    assert len(offsets) == 3 and all(len(o) == 5 for o in offsets)
    part = sat[(sat["layer"] == 0) & (sat["gate"] == "i")]
    np.testing.assert_allclose(offsets[0][:, 0], part["right_saturated"])
    np.testing.assert_allclose(offsets[0][:, 1], part["left_saturated"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["input gate", "forget gate", "output gate", "always saturated (a switch)"]
    with pytest.raises(ValueError, match="lacks columns"):
        plot_saturation(sat.drop(columns=["left_saturated"]))
