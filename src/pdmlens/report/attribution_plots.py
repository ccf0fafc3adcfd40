"""Figures for the attributions: which sensors, when, do the models agree, are they faithful.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot: no global state,
nothing shown, no backend chosen, safe in threads; ``savefig`` renders with Agg) and returns
it; the caller saves it (``fig.savefig(path)``) or embeds it in the report. Titles and
labels are written for an analyst, not for a SHAP specialist: "how much each sensor moved
the prediction".

- :func:`importance_bar`: global mean |attribution| per sensor, largest on top.
- :func:`dot_summary`: a beeswarm-like dot plot, one row per sensor, one dot per sample at
  its attribution, coloured by the sensor's reading at the window's last step (low blue,
  high red, scaled per sensor by rank). Drawn by hand: cheaper than ``shap.summary_plot``,
  which draws on pyplot's current figure.
- :func:`shap_summary`: both side by side for one model.
- :func:`time_sensor_heatmap`: time x sensor attributions of one window, or the mean of
  several (a unit), on a diverging colormap centred at 0.
- :func:`agreement_plot`: both models' normalised importance side by side and their ranks
  against each other, Spearman's rho in the title.
- :func:`deletion_plot`: deletion curves, attribution order against random order, per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from scipy.stats import rankdata

from pdmlens.explain.agreement import agreement
from pdmlens.explain.attributions import Attribution
from pdmlens.explain.faithfulness import DeletionResult

MODEL_LABELS = {"lstm": "LSTM", "forest": "random forest"}
COLORS = {"lstm": "tab:blue", "forest": "tab:orange"}


def _label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def _order(attr: Attribution, top: int | None) -> np.ndarray:
    imp = attr.global_importance().to_numpy()
    order = np.argsort(-imp, kind="stable")
    return order if top is None else order[:top]


def _units(units: str) -> str:
    return f" ({units})" if units else ""


def _bar(ax: Any, attr: Attribution, order: np.ndarray, units: str) -> None:
    imp = attr.global_importance().to_numpy()
    names = [attr.sensor_names[j] for j in order]
    ax.barh(np.arange(len(order))[::-1], imp[order], color=COLORS.get(attr.model, "tab:gray"))
    ax.set_yticks(np.arange(len(order))[::-1], names)
    ax.set_xlabel(f"average size of the sensor's effect on the prediction{_units(units)}")


def _dots(ax: Any, attr: Attribution, order: np.ndarray, units: str, seed: int = 0) -> Any:
    per = attr.per_sensor()
    rng = np.random.default_rng(seed)
    sc = None
    for row, j in enumerate(order):
        y = len(order) - 1 - row + rng.uniform(-0.3, 0.3, size=per.shape[0])
        if attr.inputs is not None:
            colour = (rankdata(attr.inputs[:, j]) - 1) / max(per.shape[0] - 1, 1)
            sc = ax.scatter(
                per[:, j],
                y,
                c=colour,
                cmap="coolwarm",
                vmin=0,
                vmax=1,
                s=6,
                alpha=0.7,
                linewidths=0,
            )
        else:
            ax.scatter(per[:, j], y, color="tab:gray", s=6, alpha=0.6, linewidths=0)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(np.arange(len(order))[::-1], [attr.sensor_names[j] for j in order])
    ax.set_xlabel(f"effect on this prediction{_units(units)}: < 0 lowers it, > 0 raises it")
    return sc


def importance_bar(
    attr: Attribution, top: int | None = 20, units: str = "cycles", title: str | None = None
) -> Figure:
    """Bar chart of mean |attribution| per sensor (most important on top)."""
    order = _order(attr, top)
    fig = Figure(figsize=(6.5, 0.3 * len(order) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    _bar(ax, attr, order, units)
    ax.set_title(title or f"Which sensors drive the {_label(attr.model)}'s predictions")
    return fig


def dot_summary(
    attr: Attribution, top: int | None = 20, units: str = "cycles", title: str | None = None
) -> Figure:
    """Beeswarm-like dot plot: one row per sensor, a dot per sample, coloured by reading."""
    order = _order(attr, top)
    fig = Figure(figsize=(7.5, 0.3 * len(order) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    sc = _dots(ax, attr, order, units)
    if sc is not None:
        cb = fig.colorbar(sc, ax=ax, ticks=[0, 1])
        cb.ax.set_yticklabels(["low", "high"])
        cb.set_label("sensor reading (last step)")
    ax.set_title(title or f"How each sensor pushed the {_label(attr.model)}'s predictions")
    return fig


def shap_summary(attr: Attribution, top: int | None = 20, units: str = "cycles") -> Figure:
    """Importance bars and the dot plot of one model, side by side."""
    order = _order(attr, top)
    fig = Figure(figsize=(13, 0.3 * len(order) + 2.0), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    _bar(ax1, attr, order, units)
    sc = _dots(ax2, attr, order, units)
    if sc is not None:
        cb = fig.colorbar(sc, ax=ax2, ticks=[0, 1])
        cb.ax.set_yticklabels(["low", "high"])
        cb.set_label("sensor reading (last step)")
    fig.suptitle(
        f"{_label(attr.model)}: which sensors matter, and in which direction "
        f"({attr.n_samples} windows explained)"
    )
    return fig


def time_sensor_heatmap(
    attr: Attribution,
    samples: int | Sequence[int] = 0,
    units: str = "cycles",
    title: str | None = None,
) -> Figure:
    """Time x sensor attributions of one window (``samples`` an int) or their mean over
    several windows (a sequence, e.g. one unit's), red raising the prediction, blue
    lowering it, white no effect."""
    if not attr.has_time:
        raise ValueError(f"the {attr.model} attributions have no time axis")
    idx = [samples] if isinstance(samples, (int, np.integer)) else list(samples)
    if not idx:
        raise ValueError("no samples to draw")
    grid = attr.values[idx].mean(axis=0).T  # [sensor, time]
    vmax = float(np.abs(grid).max()) or 1.0
    t = grid.shape[1]
    fig = Figure(figsize=(9, 0.3 * grid.shape[0] + 1.8), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(
        grid,
        aspect="auto",
        cmap="RdBu_r",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax),
        extent=(-t + 0.5, 0.5, grid.shape[0] - 0.5, -0.5),
        interpolation="nearest",
    )
    ax.set_yticks(np.arange(grid.shape[0]), attr.sensor_names)
    ax.set_xlabel("time step (0 = the moment of the prediction)")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(f"effect on the prediction{_units(units)}")
    what = f"window {idx[0]}" if len(idx) == 1 else f"mean of {len(idx)} windows"
    ax.set_title(
        title
        or f"When and through which sensors the {_label(attr.model)} "
        f"reached its prediction ({what})"
    )
    return fig


def agreement_plot(
    a: Attribution, b: Attribution, k: int | None = None, result: Mapping[str, Any] | None = None
) -> Figure:
    """Both models' sensor importance (each as a share of its total) side by side, and
    their ranks against each other; Spearman's rho and the top-k overlap in the title."""
    res = result if result is not None else agreement(a, b, k=k)
    imp = res["importance"]
    la, lb = imp.columns[0], imp.columns[1]
    share_a = imp[la] / max(float(imp[la].sum()), 1e-300)
    share_b = imp[lb] / max(float(imp[lb].sum()), 1e-300)
    order = np.argsort(-(share_a.to_numpy() + share_b.to_numpy()), kind="stable")
    names = [str(imp.index[j]) for j in order]
    fig = Figure(figsize=(13, 0.3 * len(names) + 2.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    y = np.arange(len(names))[::-1]
    ax1.barh(
        y + 0.2,
        share_a.to_numpy()[order],
        height=0.4,
        label=_label(a.model),
        color=COLORS.get(a.model, "tab:blue"),
    )
    ax1.barh(
        y - 0.2,
        share_b.to_numpy()[order],
        height=0.4,
        label=_label(b.model),
        color=COLORS.get(b.model, "tab:orange"),
    )
    ax1.set_yticks(y, names)
    ax1.set_xlabel("share of the model's total sensor importance")
    ax1.legend(loc="lower right")
    ra, rb = imp[f"{la}_rank"].to_numpy(), imp[f"{lb}_rank"].to_numpy()
    ax2.scatter(ra, rb, color="tab:purple")
    for name, x0, y0 in zip(imp.index, ra, rb, strict=True):
        ax2.annotate(str(name), (x0, y0), fontsize=7, xytext=(3, 3), textcoords="offset points")
    n = len(ra)
    ax2.plot([1, n], [1, n], color="gray", lw=0.8, ls="--")
    ax2.set_xlabel(f"rank by the {_label(a.model)} (1 = most important)")
    ax2.set_ylabel(f"rank by the {_label(b.model)}")
    ax2.invert_xaxis()
    ax2.invert_yaxis()
    fig.suptitle(
        f"Do the {_label(a.model)} and the {_label(b.model)} blame the same sensors? "
        f"Spearman rho = {res['spearman']:.2f}, top-{res['k']} overlap = "
        f"{res['top_k_overlap']:.2f}"
    )
    return fig


def deletion_plot(
    results: Mapping[str, DeletionResult],
    k_true: int | None = None,
    units: str = "cycles",
    baseline: str = "a healthy machine's average",
) -> Figure:
    """Deletion curves per model: removing the sensors the model blames (solid) against
    removing sensors in random order (dashed, band = spread over the random orders);
    ``baseline`` names what a removed sensor is replaced by, for the axis label."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for name, r in results.items():
        c = COLORS.get(name)
        ax.plot(
            r.k,
            r.top,
            marker="o",
            color=c,
            label=f"{_label(name)}: most important first (area {r.area:.2f})",
        )
        ax.plot(r.k, r.random, ls="--", color=c, label=f"{_label(name)}: random order")
        ax.fill_between(
            r.k, r.random - r.random_std, r.random + r.random_std, color=c, alpha=0.15, lw=0
        )
    if k_true is not None:
        ax.axvline(k_true, color="gray", lw=0.8, ls=":", label="number of true fault sensors")
    ax.set_xlabel(f"number of sensors replaced by {baseline}")
    ax.set_ylabel(f"average change of the prediction{_units(units)}")
    ax.set_title(
        "Are the explanations faithful? Removing the blamed sensors should move "
        "the prediction most",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return fig
