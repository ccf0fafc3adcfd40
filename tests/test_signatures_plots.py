"""Signature figures render, with one panel per layer and readable labels."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pdmlens.report.signature_plots import (
    plot_layer_separation,
    plot_novelty_distributions,
    plot_signature_projection,
    plot_unit_selectivity,
)
from pdmlens.signatures.selectivity import unit_selectivity


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def test_projection_has_cluster_and_stage_panel_per_layer():
    rng = np.random.default_rng(0)
    sigs = {0: rng.normal(size=(50, 4)), 1: rng.normal(size=(50, 6))}
    clusters = {0: rng.integers(0, 3, 50), 1: rng.integers(0, 2, 50)}
    stages = np.where(rng.random(50) < 0.5, "critical (<30)", "healthy (>=75)")
    fig = plot_signature_projection(sigs, clusters, stages, max_points=30)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    assert axes[0].get_title() == "input: samples grouped by activation pattern"
    assert axes[3].get_title() == "LSTM layer 1: same samples by true health stage"
    assert "% of variation" in axes[0].get_xlabel()
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == [
        "critical (<30)",
        "healthy (>=75)",
    ]
    assert png_bytes(fig).startswith(b"\x89PNG")


def test_separation_plot_marks_the_chosen_layer():
    t = pd.DataFrame(
        {
            "name": ["input", "LSTM layer 1", "LSTM layer 2"],
            "purity": [0.5, 0.8, 0.82],
            "ari": [-0.05, 0.4, 0.45],
            "nmi": [0.1, 0.5, 0.52],
            "probe_accuracy": [0.6, 0.9, 0.9],
            "majority_baseline": [0.5, 0.5, 0.5],
        },
        index=[0, 1, 2],
    )
    fig = plot_layer_separation(t, chosen=1)
    ax = fig.axes[0]
    assert [tk.get_text() for tk in ax.get_xticklabels()] == list(t["name"])
    # metrics, chance level, the raw input's probe (the bar to beat), chosen marker
    assert len(ax.get_lines()) == 4 + 1 + 1 + 1
    assert ax.get_ylim()[0] < -0.05
    assert "separates" in ax.get_title()
    png_bytes(fig)


def test_novelty_plot_one_panel_per_layer_with_threshold():
    rng = np.random.default_rng(1)
    scores = {
        L: {"familiar": rng.normal(size=100), "unfamiliar": rng.normal(2, 1, 100)}
        for L in (0, 1, 2, 3)
    }
    table = pd.DataFrame({"auroc": [0.9, 0.8, 0.95, 0.7]}, index=[0, 1, 2, 3])
    fig = plot_novelty_distributions(scores, {L: 1.0 for L in scores}, table)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    assert visible[2].get_title() == "LSTM layer 2 (AUROC 0.95)"
    assert any(line.get_xdata()[0] == 1.0 for line in visible[0].get_lines())
    png_bytes(fig)
    with pytest.raises(ValueError):
        plot_novelty_distributions({})


def test_selectivity_plot():
    rng = np.random.default_rng(2)
    act = rng.normal(0, 0.5, size=(10, 12, 4))
    stages = np.where(np.arange(12) < 6, "a", "b")[None, :].repeat(10, 0)
    df = unit_selectivity(act, stages)
    fig = plot_unit_selectivity(df, top=3)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 3
    png_bytes(fig)
