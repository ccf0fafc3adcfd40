"""Readable gate figures: one layer per figure at a report column's width, the units
ordered so that the alarm bells (most raised near failure) come first, in every figure."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pdmlens.explain.gates import extract_gates  # noqa: E402
from pdmlens.report.gate_plots import plot_gate_layer, unit_order_by_selectivity  # noqa: E402


@pytest.fixture(scope="module")
def trace():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 8, num_layers=2, batch_first=True)
    return extract_gates(lstm, torch.randn(2, 6, 3))


def test_units_ordered_by_how_much_they_rise_near_failure(trace) -> None:
    order = unit_order_by_selectivity(trace, near=[0], healthy=[1])
    for li, layer in enumerate(trace.layers):
        h = np.asarray(layer["h"], dtype=np.float64)
        diff = h[0].mean(axis=0) - h[1].mean(axis=0)
        assert sorted(order[li].tolist()) == list(range(8))
        assert np.all(np.diff(diff[order[li]]) <= 0)  # largest rise first


def test_one_layer_at_readable_size_in_the_given_order(trace) -> None:
    order = unit_order_by_selectivity(trace, near=[0], healthy=[1])[1]
    fig = plot_gate_layer(trace, 0, 1, order=order, title="LSTM layer 2: machine m7")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    width = int.from_bytes(buf.getvalue()[16:20], "big")
    assert width <= 900  # shown at its own size in an 858 px report column
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "Input gate (i)",
        "Forget gate (f)",
        "Cell candidate (g)",
        "Output gate (o)",
        "Cell state (c)",
        "Hidden state (h)",
    ]
    # first row on top is the first unit of the order, labelled with its own number
    assert [t.get_text() for t in panels[0].get_yticklabels()] == [str(u) for u in order]
    img = panels[5].get_images()[0].get_array()
    np.testing.assert_array_equal(img, trace.layers[1]["h"][0].T[order])
    assert "most raised near failure" in panels[0].get_ylabel()
    with pytest.raises(ValueError, match="permutation"):
        plot_gate_layer(trace, 0, 1, order=[0, 1])
    with pytest.raises(IndexError):
        plot_gate_layer(trace, 0, 2)
