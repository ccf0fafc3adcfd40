"""Plotly figures of the explorer's views (pure functions of DataFrames and arrays).

Axes say their units ("(cycles)"), layers are counted from 1, and stage colours are fixed
per stage name so every chart colours a stage the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MODEL_COLORS = {"lstm": "#1f77b4", "forest": "#ff7f0e", "true": "#222222"}
STAGE_PALETTE = ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b")
CLUSTER_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def empty(message: str) -> go.Figure:
    """A blank figure that says why it is blank."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", 240)


def rul_history(hist: pd.DataFrame, unit: str, cycle: float | None, cap: float) -> go.Figure:
    """Predicted vs true RUL over a machine's evaluated cycles, both models."""
    fig = go.Figure()
    if "true_capped" in hist.columns:
        fig.add_scatter(
            x=hist["time"],
            y=hist["true_capped"],
            name=f"true RUL (capped at {cap:g})",
            line={"color": MODEL_COLORS["true"], "dash": "dash"},
        )
    for m in ("lstm", "forest"):
        fig.add_scatter(x=hist["time"], y=hist[m], name=m, line={"color": MODEL_COLORS[m]})
    if cycle is not None:
        fig.add_vline(x=cycle, line={"color": "#888", "width": 1})
    fig.update_xaxes(title="cycle (cycles)")
    fig.update_yaxes(title="RUL (cycles)", rangemode="tozero")
    return _layout(fig, f"{unit}: predicted vs true remaining useful life")


def shap_heatmap(attr: pd.DataFrame, unit: str, cycle: float) -> go.Figure:
    """SHAP values sensor x cycle of one window (red raises the predicted RUL)."""
    z = attr.T.to_numpy()
    lim = float(np.nanmax(np.abs(z))) if z.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=attr.index,
            y=list(attr.columns),
            colorscale="RdBu_r",
            zmin=-lim,
            zmax=lim,
            colorbar={"title": "SHAP (cycles)"},
        )
    )
    fig.update_xaxes(title="cycle (cycles)")
    fig.update_yaxes(title="sensor", autorange="reversed")
    return _layout(
        fig,
        f"{unit}, window ending at cycle {cycle:g}: LSTM SHAP per sensor and cycle",
        max(320, 22 * len(attr.columns) + 120),
    )


def raw_readings(
    raw: pd.DataFrame, unit: str, sensors: Sequence[str], window: tuple[float, float]
) -> go.Figure:
    """The raw readings of a few sensors over the machine's recorded life, one panel per
    sensor (their scales differ), the explained window shaded."""
    from plotly.subplots import make_subplots

    rows = raw[raw["unit"].astype(str) == str(unit)].sort_values("time")
    shown = [s for s in sensors if s in rows.columns] or list(sensors)[:1]
    fig = make_subplots(rows=len(shown), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for i, s in enumerate(shown, start=1):
        if s in rows.columns:
            fig.add_scatter(x=rows["time"], y=rows[s], name=s, mode="lines", row=i, col=1)
        fig.update_yaxes(title_text=s, row=i, col=1)
        fig.add_vrect(
            x0=window[0], x1=window[1], fillcolor="#888", opacity=0.15, line_width=0, row=i, col=1
        )
    fig.update_xaxes(title_text="cycle (cycles)", row=len(shown), col=1)
    return _layout(
        fig,
        f"{unit}: raw readings of the window's top sensors (window shaded)",
        140 * len(shown) + 120,
    )


def gate_heatmap(
    values: np.ndarray, cycles: np.ndarray, units: Sequence[int], title: str, diverging: bool
) -> go.Figure:
    """Units (rows, in the given order) x cycles of one gate."""
    z = values[:, list(units)].T
    kw: dict[str, object] = {"colorscale": "Viridis"}
    if diverging:
        lim = float(np.nanmax(np.abs(z))) if z.size else 1.0
        kw = {"colorscale": "RdBu_r", "zmin": -lim, "zmax": lim}
    fig = go.Figure(
        go.Heatmap(z=z, x=cycles, y=[f"unit {u}" for u in units], colorbar={"title": ""}, **kw)
    )
    fig.update_xaxes(title="cycle (cycles)" if not diverging else "step in window")
    fig.update_yaxes(title="hidden unit (most selective first)", autorange="reversed")
    return _layout(fig, title, max(360, 14 * len(units) + 140))


def novelty_line(nov: pd.DataFrame, unit: str, layer_name: str) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=nov["time"], y=nov["score"], name="novelty score", mode="lines+markers")
    thr = float(nov["threshold"].iloc[0])
    fig.add_hline(y=thr, line={"color": "#d62728", "dash": "dash"}, annotation_text="threshold")
    fig.update_xaxes(title="cycle (cycles)")
    fig.update_yaxes(title="novelty (distance)")
    return _layout(fig, f"{unit}: novelty of the {layer_name} signature over its life")


def stage_colors(order: Sequence[str]) -> dict[str, str]:
    return {s: STAGE_PALETTE[i % len(STAGE_PALETTE)] for i, s in enumerate(order)}


def signature_map(
    xy: np.ndarray, labels: np.ndarray, by: str, order: Sequence[str], title: str
) -> go.Figure:
    """The 2-D map of signatures coloured by cluster or by health stage."""
    fig = go.Figure()
    if by == "stage":
        colors = stage_colors(order)
        groups = [s for s in order if s in set(labels)]
    else:
        groups = sorted(set(labels.tolist()))
        colors = {g: CLUSTER_PALETTE[i % len(CLUSTER_PALETTE)] for i, g in enumerate(groups)}
    for g in groups:
        m = labels == g
        fig.add_scattergl(
            x=xy[m, 0],
            y=xy[m, 1],
            mode="markers",
            name=str(g) if by == "stage" else f"cluster {int(g) + 1}",
            marker={"color": colors[g], "size": 6, "opacity": 0.8},
        )
    fig.update_xaxes(title="PC 1")
    fig.update_yaxes(title="PC 2")
    return _layout(fig, title, 420)


def novelty_histograms(
    scores: dict[str, np.ndarray], threshold: float, layer_name: str, new_label: str
) -> go.Figure:
    """Novelty score distributions: calibration (validation), familiar, new data."""
    fig = go.Figure()
    for key, label, color in (
        ("familiar", "familiar (evaluated windows)", "#1f77b4"),
        ("unfamiliar", new_label, "#d62728"),
    ):
        if key in scores:
            fig.add_histogram(
                x=scores[key],
                name=f"{label} (n={len(scores[key])})",
                opacity=0.6,
                marker={"color": color},
                nbinsx=40,
                histnorm="probability",
            )
    fig.add_vline(x=threshold, line={"color": "#222", "dash": "dash"}, annotation_text="threshold")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="novelty score")
    fig.update_yaxes(title="share of windows")
    return _layout(fig, f"{layer_name}: novelty scores", 300)
