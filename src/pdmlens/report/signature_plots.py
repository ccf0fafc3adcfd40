"""Figures for activation signatures: clusters, layer separation, novelty.

Each function returns a matplotlib Figure (Agg canvas, no pyplot global state, so it is
safe in threads and in pipelines); the caller saves or embeds it. Titles and axis labels
are written for an analyst, not for the person who wrote the model.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from pdmlens.signatures.cluster import _ordered, layer_label

_METRIC_LABELS = {
    "purity": "cluster purity",
    "ari": "adjusted Rand index",
    "nmi": "normalized mutual information",
    "probe_accuracy": "linear probe accuracy",
    "probe_cv_accuracy": "linear probe accuracy (cross-validated)",
    "majority_baseline": "chance level (commonest stage)",
}
# severe -> healthy: red ... green, spread over however many stages there are
_STAGE_COLORS = ["#c0392b", "#e67e22", "#f1c40f", "#7fb800", "#27ae60"]


def stage_colors(order: Sequence[str]) -> dict[str, str]:
    """One colour per health stage, most severe (red) to healthiest (green), the same in
    every chart of a run: the colour follows the stage's place in ``order`` (the stage
    names, most severe first), never which stages a chart happens to show."""
    n = len(order)
    if n == 0:
        return {}
    if n == 1:
        return {str(order[0]): _STAGE_COLORS[-1]}
    picks = np.linspace(0, len(_STAGE_COLORS) - 1, n).round().astype(int)
    return {str(st): _STAGE_COLORS[i] for st, i in zip(order, picks, strict=True)}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _at(table: pd.DataFrame, row: Hashable, col: str) -> float:
    value: Any = table.at[row, col]
    return float(value)


def _subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).choice(n, max_points, replace=False))


def plot_signature_projection(
    signatures: Mapping[Hashable, np.ndarray],
    clusters: Mapping[Hashable, Any],
    stages: Any,
    order: Sequence[str] | None = None,
    max_points: int = 3000,
    seed: int = 0,
) -> Figure:
    """Per layer (rows), a 2-D PCA map of the signatures coloured by cluster (left) and by
    the true health stage (right): where the two pictures agree the layer separates stages.
    """
    layers = list(signatures)
    if not layers:
        raise ValueError("no layers to plot")
    stages = np.asarray(stages)
    names = _ordered(stages, order)
    colors = stage_colors(list(order) if order is not None else names)
    fig = _figure(10, 3.6 * len(layers))
    axes = fig.subplots(len(layers), 2, squeeze=False)
    for r, layer in enumerate(layers):
        X = np.asarray(signatures[layer], dtype=np.float64)
        lab = np.asarray(clusters[layer])
        idx = _subsample(len(X), max_points, seed)
        Z = StandardScaler().fit_transform(X[idx])
        n_comp = min(2, Z.shape[1], len(Z))
        pca = PCA(n_components=n_comp, random_state=seed).fit(Z)
        P = pca.transform(Z)
        if P.shape[1] == 1:
            P = np.c_[P, np.zeros(len(P))]
        var = pca.explained_variance_ratio_
        ax_c, ax_s = axes[r]
        for c in np.unique(lab):
            m = lab[idx] == c
            ax_c.scatter(P[m, 0], P[m, 1], s=6, alpha=0.6, label=f"cluster {c}")
        for st in names:
            m = stages[idx] == st
            ax_s.scatter(P[m, 0], P[m, 1], s=6, alpha=0.6, label=str(st), color=colors[str(st)])
        title = layer_label(layer)
        ax_c.set_title(f"{title}: samples grouped by activation pattern")
        ax_s.set_title(f"{title}: same samples by true health stage")
        for ax in (ax_c, ax_s):
            ax.set_xlabel(f"main direction 1 ({100 * var[0]:.0f}% of variation)")
            ax.set_ylabel(
                f"main direction 2 ({100 * var[1]:.0f}% of variation)" if len(var) > 1 else ""
            )
            ax.legend(fontsize=7, markerscale=2, loc="best")
    return fig


def plot_layer_separation(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("purity", "ari", "nmi", "probe_accuracy"),
    chosen: Hashable | None = None,
    raw: Hashable = 0,
) -> Figure:
    """How well each layer separates health stages (higher = better), one line per
    measure, with the chance level, the raw input's probe accuracy (the bar a layer must
    clear) and the layer the verdict names (none drawn when no layer beats the raw input).
    """
    fig = _figure(7, 4)
    ax = fig.subplots()
    x = np.arange(len(table))
    labels = (
        [str(n) for n in table["name"]]
        if "name" in table.columns
        else [layer_label(i) for i in table.index]
    )
    lo = 0.0
    for m in metrics:
        if m in table.columns and table[m].notna().any():
            y = table[m].to_numpy(dtype=float)
            lo = min(lo, float(np.nanmin(y)))
            ax.plot(x, y, marker="o", label=_METRIC_LABELS.get(m, m))
    if "majority_baseline" in table.columns:
        ax.plot(
            x,
            table["majority_baseline"].to_numpy(dtype=float),
            ls=":",
            color="grey",
            label=_METRIC_LABELS["majority_baseline"],
        )
    if raw in table.index and "probe_accuracy" in table.columns:
        ax.axhline(
            _at(table, raw, "probe_accuracy"),
            color="0.4",
            ls="-.",
            lw=0.8,
            label="linear probe on the raw input (a layer must beat it)",
        )
    if chosen is not None and chosen in table.index:
        pos = list(table.index).index(chosen)
        ax.axvline(
            pos,
            color="black",
            ls="--",
            lw=1,
            label="first layer to separate and beat the raw input",
        )
    ax.set_xticks(x, labels)
    ax.set_ylim(lo - 0.02, 1.05)
    ax.set_xlabel("layer (0 = the raw input window, then LSTM layers 1, 2, ...)")
    ax.set_ylabel("agreement with health stage on held-out machines")
    ax.set_title("Which layer separates healthy from failing machines?")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_novelty_distributions(
    scores: Mapping[Hashable, Mapping[str, np.ndarray]],
    thresholds: Mapping[Hashable, float] | None = None,
    table: pd.DataFrame | None = None,
    familiar_label: str = "familiar (fault mode seen in training)",
    unfamiliar_label: str = "unfamiliar (unseen fault mode)",
    bins: int = 40,
) -> Figure:
    """Per layer, histograms of novelty scores for familiar vs unfamiliar samples with the
    alarm threshold; ``scores[layer]`` has arrays "familiar" and "unfamiliar" (e.g. from
    ``novelty_by_layer``); ``table`` adds the AUROC and the flagged shares (detection and
    false-alarm rates) to each panel title, and its ``threshold`` column draws the
    threshold line when ``thresholds`` is not given.
    """
    layers = list(scores)
    if not layers:
        raise ValueError("no layers to plot")
    ncol = min(3, len(layers))
    nrow = int(np.ceil(len(layers) / ncol))
    fig = _figure(4.5 * ncol, 3.4 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, layer in zip(axes, layers, strict=False):
        fam = np.asarray(scores[layer]["familiar"], dtype=float)
        unf = np.asarray(scores[layer]["unfamiliar"], dtype=float)
        both = np.r_[fam, unf]
        hi = float(np.quantile(both, 0.995)) if len(both) else 1.0
        edges = np.linspace(float(both.min()), max(hi, float(both.min()) + 1e-9), bins + 1)
        ax.hist(
            np.minimum(fam, edges[-1]),
            bins=edges,
            alpha=0.55,
            density=True,
            label=familiar_label,
            color="#2980b9",
        )
        ax.hist(
            np.minimum(unf, edges[-1]),
            bins=edges,
            alpha=0.55,
            density=True,
            label=unfamiliar_label,
            color="#c0392b",
        )
        thr = None
        if thresholds is not None and layer in thresholds:
            thr = float(thresholds[layer])
        elif table is not None and layer in table.index and "threshold" in table.columns:
            thr = _at(table, layer, "threshold")
        if thr is not None:
            ax.axvline(thr, color="black", ls="--", lw=1, label="alarm threshold")
        title = layer_label(layer)
        if table is not None and layer in table.index and "auroc" in table.columns:
            auroc: Any = table.at[layer, "auroc"]
            title += f" (AUROC {float(auroc):.2f})"
            if {"detection_rate", "false_alarm_rate"} <= set(table.columns):
                det = _at(table, layer, "detection_rate")
                fa = _at(table, layer, "false_alarm_rate")
                title += f"\nabove the line: {100 * det:.0f}% of red, {100 * fa:.0f}% of blue"
        ax.set_title(title)
        ax.set_xlabel("novelty score (distance from training data)")
        ax.set_ylabel("share of samples")
    for ax in axes[len(layers) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle("Does the model notice data unlike its training data?")
    return fig


def plot_unit_selectivity(
    selectivity: pd.DataFrame, top: int = 5, order: Sequence[str] | None = None
) -> Figure:
    """The ``top`` most stage-selective hidden units per health stage (bars of score), a
    panel per stage of ``order`` (every stage, in the run's colours); a stage no unit is
    selective for says so in its panel instead of vanishing."""
    stages = list(order) if order is not None else list(pd.unique(selectivity["stage"]))
    if not stages:
        raise ValueError("empty selectivity table")
    colors = stage_colors(stages)
    fig = _figure(4.2 * len(stages), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(stages), squeeze=False)).ravel()
    for ax, st in zip(axes, stages, strict=True):
        d = selectivity[selectivity["stage"] == st].nsmallest(top, "rank")
        ax.set_title(f"units on during: {st}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("selectivity (1 = on exactly in this stage)")
        if d.empty:
            ax.set_yticks([])
            ax.text(
                0.5,
                0.5,
                "no unit is selective\nfor this stage",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
                color="0.35",
            )
            continue
        labels = [f"{layer_label(r.layer)}, unit {r.unit} ({r.direction})" for r in d.itertuples()]
        ax.barh(np.arange(len(d))[::-1], d["score"].to_numpy(dtype=float), color=colors[str(st)])
        ax.set_yticks(np.arange(len(d))[::-1], labels, fontsize=7)
    return fig
