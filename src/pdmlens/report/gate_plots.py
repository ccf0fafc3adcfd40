"""Figures for LSTM gates: one window's gate heatmaps and the per-unit saturation map.

Each function returns a matplotlib Figure on an Agg canvas (no pyplot global state, safe in
threads and pipelines); the caller saves or embeds it. Titles and axis labels are written
for an analyst: "input gate", "time step in the window", "share of time fully open".

- :func:`plot_gate_heatmap`: for one window (one sample of a trace), a grid with a row per
  LSTM layer and a column per gate or state; each panel shows time (x) against hidden unit
  (y), coloured by the activation, with its own colour bar.
- :func:`plot_saturation`: Karpathy et al. (2015)'s saturation map: one dot per unit and
  gate, x = share of time steps right-saturated (fully open, > 0.9), y = share left-saturated
  (fully closed, < 0.1), a panel per layer, a colour per gate. Dots can only lie below the
  diagonal x + y = 1, which is drawn as a guide: a dot on it is always saturated, a switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pdmlens.explain.gates import KEYS, GateTrace

_LABELS = {
    "i": "Input gate (i)",
    "f": "Forget gate (f)",
    "g": "Cell candidate (g)",
    "o": "Output gate (o)",
    "c": "Cell state (c)",
    "h": "Hidden state (h)",
}
_COLORBAR = {
    "i": "0 = closed, 1 = open",
    "f": "0 = forget, 1 = keep",
    "g": "proposed update (-1..1)",
    "o": "0 = hidden, 1 = shown",
    "c": "memory value",
    "h": "output value (-1..1)",
}
_GATE_COLORS = {"i": "#1f77b4", "f": "#d62728", "o": "#2ca02c", "g": "#9467bd"}


def _colour_scale(key: str, data: np.ndarray) -> dict[str, Any]:
    """imshow's colour map and limits for a gate or state: gates in [0, 1], the candidate
    and hidden state in [-1, 1], the cell state symmetric around 0 at its own largest value."""
    if key in ("i", "f", "o"):
        return {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
    if key in ("g", "h"):
        return {"cmap": "RdBu_r", "vmin": -1.0, "vmax": 1.0}
    lim = float(np.nanmax(np.abs(data))) if data.size else 1.0
    lim = lim if np.isfinite(lim) and lim > 0 else 1.0
    return {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def layer_name(layer: int) -> str:
    """Readable name of trace layer ``layer`` (0-based index): "LSTM layer 1", ..."""
    return f"LSTM layer {int(layer) + 1}"


def plot_gate_heatmap(
    trace: GateTrace,
    sample: int,
    title: str | None = None,
    keys: Sequence[str] = KEYS,
    layers: Sequence[int] | None = None,
    time_labels: Sequence[Any] | None = None,
    time_axis_label: str | None = None,
) -> Figure:
    """Heatmaps of one window's gates and states (time x hidden unit), a row per layer.

    ``sample`` indexes the trace's samples; ``keys`` picks the columns (default all of
    i, f, g, o, c, h); ``time_labels`` (length T, e.g. the machine's cycle numbers) replace
    the 0-based step numbers on the time axis, named ``time_axis_label`` (e.g. "cycle").
    """
    n = trace.n_samples
    if not -n <= int(sample) < n:
        raise IndexError(f"sample {sample} out of range (trace has {n} samples)")
    bad = [k for k in keys if k not in KEYS]
    if bad or not keys:
        raise ValueError(f"keys must be a non-empty subset of {KEYS}, got {list(keys)}")
    rows = list(range(trace.num_layers)) if layers is None else [int(v) for v in layers]
    if not rows:
        raise ValueError("no layers to plot")
    steps = trace.n_steps
    if time_labels is not None and len(time_labels) != steps:
        raise ValueError(f"time_labels has {len(time_labels)} entries, the trace {steps} steps")
    xlabel = time_axis_label or ("time step in the window" if time_labels is None else "time")
    fig = _figure(3.0 * len(keys) + 1.0, 2.6 * len(rows) + 0.8)
    axes = np.atleast_2d(fig.subplots(len(rows), len(keys), squeeze=False))
    for r, li in enumerate(rows):
        layer = trace.layers[li]
        for col, k in enumerate(keys):
            ax = axes[r, col]
            data = np.asarray(layer[k][sample], dtype=np.float32).T  # [H, T]
            kw = _colour_scale(k, data)
            im = ax.imshow(data, aspect="auto", origin="lower", interpolation="nearest", **kw)
            cb = fig.colorbar(im, ax=ax, shrink=0.9)
            cb.set_label(_COLORBAR[k], fontsize=8)
            cb.ax.tick_params(labelsize=7)
            ax.set_title(f"{_LABELS[k]}\n{layer_name(li)}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            if col == 0:
                ax.set_ylabel("hidden unit", fontsize=8)
            ax.tick_params(labelsize=7)
            if time_labels is not None:
                ticks = np.unique(np.linspace(0, steps - 1, min(steps, 6)).round().astype(int))
                ax.set_xticks(ticks)
                ax.set_xticklabels([str(time_labels[t]) for t in ticks])
    fig.suptitle(
        title
        or f"Inside the LSTM for window {int(sample)}: how open each unit's "
        "gates were at each time step",
        fontsize=11,
    )
    return fig


def plot_saturation(
    sat: pd.DataFrame, title: str | None = None, low: float = 0.1, high: float = 0.9
) -> Figure:
    """Karpathy-style saturation map from :func:`pdmlens.explain.saturation.saturation`:
    a panel per layer, a dot per unit and gate (x: share of steps fully open, y: share of
    steps fully closed). ``low``/``high`` only label the axes; pass the thresholds used."""
    need = {"layer", "gate", "unit", "left_saturated", "right_saturated"}
    missing = need - set(sat.columns)
    if missing:
        raise ValueError(f"saturation table lacks columns {sorted(missing)}")
    layers = sorted(sat["layer"].unique())
    if not layers:
        raise ValueError("saturation table is empty")
    fig = _figure(4.2 * len(layers) + 0.6, 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(layers), squeeze=False)[0])
    for ax, li in zip(axes, layers, strict=True):
        part = sat[sat["layer"] == li]
        for g in [g for g in ("i", "f", "o", "g") if g in set(part["gate"])]:
            pts = part[part["gate"] == g]
            ax.scatter(
                pts["right_saturated"],
                pts["left_saturated"],
                s=18,
                alpha=0.75,
                color=_GATE_COLORS[g],
                edgecolors="none",
                label=_LABELS[g].split(" (")[0].lower(),
            )
        ax.plot([0, 1], [1, 0], ls="--", lw=0.8, color="0.5", label="always saturated (a switch)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_title(layer_name(li), fontsize=10)
        ax.set_xlabel(f"share of time steps fully open (> {high:g})", fontsize=9)
        ax.set_ylabel(f"share of time steps fully closed (< {low:g})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right", title="gate", title_fontsize=7)
    fig.suptitle(
        title
        or "How often each LSTM gate is fully open or fully closed "
        "(one dot per unit; near the corners = behaves like a switch)",
        fontsize=10,
    )
    return fig


def unit_order_by_selectivity(
    trace: GateTrace, near: Sequence[int], healthy: Sequence[int], key: str = "h"
) -> dict[int, np.ndarray]:
    """Per layer (trace index), the hidden units ordered by how much more active ``key``
    (default the hidden state) is in the ``near``-failure samples than in the ``healthy``
    ones, averaged over time: the "alarm-bell" units first, the units that quiet down
    near failure last. The same order serves every panel and both windows, so a unit keeps
    its row from figure to figure."""
    out = {}
    for li, layer in enumerate(trace.layers):
        a = np.asarray(layer[key], dtype=np.float64)  # [N, T, H]
        diff = a[list(near)].mean(axis=(0, 1)) - a[list(healthy)].mean(axis=(0, 1))
        out[li] = np.argsort(-diff, kind="stable")
    return out


def plot_gate_layer(
    trace: GateTrace,
    sample: int,
    layer: int,
    order: Sequence[int] | np.ndarray | None = None,
    title: str | None = None,
    keys: Sequence[str] = KEYS,
    ncols: int = 3,
    width: float = 8.6,
) -> Figure:
    """One window's gates and states of one layer at a readable size: a panel per key
    wrapped ``ncols`` to a row (``width`` inches wide, about what a report column shows at
    100 dpi, so nothing is shrunk), hidden units as rows in ``order`` (e.g.
    :func:`unit_order_by_selectivity`; default index order) with the first row on top,
    labelled by unit number."""
    n = trace.n_samples
    if not -n <= int(sample) < n:
        raise IndexError(f"sample {sample} out of range (trace has {n} samples)")
    if not 0 <= int(layer) < trace.num_layers:
        raise IndexError(f"layer {layer} out of range (trace has {trace.num_layers} layers)")
    bad = [k for k in keys if k not in KEYS]
    if bad or not keys:
        raise ValueError(f"keys must be a non-empty subset of {KEYS}, got {list(keys)}")
    data_layer = trace.layers[int(layer)]
    hidden = np.asarray(data_layer[keys[0]]).shape[-1]
    rows_order = np.arange(hidden) if order is None else np.asarray(order, dtype=int)
    if sorted(rows_order.tolist()) != list(range(hidden)):
        raise ValueError(f"order must be a permutation of the {hidden} hidden units")
    ncols = max(1, min(ncols, len(keys)))
    nrows = int(np.ceil(len(keys) / ncols))
    panel_h = min(4.5, 1.2 + 0.12 * hidden)
    fig = _figure(width, panel_h * nrows + 0.7)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    step = max(1, int(np.ceil(hidden / 16)))
    ticks = np.arange(0, hidden, step)
    for ax, k in zip(axes, keys, strict=False):
        data = np.asarray(data_layer[k][sample], dtype=np.float32).T[rows_order]  # [H, T]
        kw = _colour_scale(k, data)
        im = ax.imshow(data, aspect="auto", origin="upper", interpolation="nearest", **kw)
        cb = fig.colorbar(im, ax=ax, shrink=0.9)
        cb.set_label(_COLORBAR[k], fontsize=8)
        cb.ax.tick_params(labelsize=7)
        ax.set_title(_LABELS[k], fontsize=10)
        ax.set_xlabel("time step in the window", fontsize=8)
        ax.set_yticks(ticks, [str(int(rows_order[t])) for t in ticks])
        ax.tick_params(labelsize=7)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for r in range(nrows):
        axes[r * ncols].set_ylabel(
            "hidden unit" + ("" if order is None else " (most raised near failure on top)"),
            fontsize=8,
        )
    fig.suptitle(title or f"{layer_name(layer)}, window {int(sample)}", fontsize=11)
    return fig
