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
# severe -> healthy: red, orange, ..., green
_STAGE_COLORS = ["#c0392b", "#e67e22", "#f1c40f", "#7fb800", "#27ae60", "#2980b9"]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


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
        for i, st in enumerate(names):
            m = stages[idx] == st
            ax_s.scatter(
                P[m, 0],
                P[m, 1],
                s=6,
                alpha=0.6,
                label=str(st),
                color=_STAGE_COLORS[i % len(_STAGE_COLORS)],
            )
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
) -> Figure:
    """How well each layer separates health stages (higher = better), one line per
    measure, with the chance level and the layer picked by the "from which layer" rule.
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
    if chosen is not None and chosen in table.index:
        pos = list(table.index).index(chosen)
        ax.axvline(
            pos,
            color="black",
            ls="--",
            lw=1,
            label="first layer to separate (within tolerance of the best)",
        )
    ax.set_xticks(x, labels)
    ax.set_ylim(lo - 0.02, 1.05)
    ax.set_xlabel("layer (input window, then each LSTM layer)")
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
    ``novelty_by_layer``), ``table`` adds the AUROC to each panel title.
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
        if thresholds is not None and layer in thresholds:
            ax.axvline(thresholds[layer], color="black", ls="--", lw=1, label="alarm threshold")
        title = layer_label(layer)
        if table is not None and layer in table.index and "auroc" in table.columns:
            auroc: Any = table.at[layer, "auroc"]
            title += f" (AUROC {float(auroc):.2f})"
        ax.set_title(title)
        ax.set_xlabel("novelty score (distance from training data)")
        ax.set_ylabel("share of samples")
    for ax in axes[len(layers) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle("Does the model notice data unlike its training data?")
    return fig


def plot_unit_selectivity(selectivity: pd.DataFrame, top: int = 5) -> Figure:
    """The ``top`` most stage-selective hidden units per health stage (bars of score)."""
    stages = list(pd.unique(selectivity["stage"]))
    if not stages:
        raise ValueError("empty selectivity table")
    fig = _figure(4.2 * len(stages), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(stages), squeeze=False)).ravel()
    for i, (ax, st) in enumerate(zip(axes, stages, strict=True)):
        d = selectivity[selectivity["stage"] == st].nsmallest(top, "rank")
        labels = [f"{layer_label(r.layer)}, unit {r.unit} ({r.direction})" for r in d.itertuples()]
        ax.barh(
            np.arange(len(d))[::-1],
            d["score"].to_numpy(dtype=float),
            color=_STAGE_COLORS[i % len(_STAGE_COLORS)],
        )
        ax.set_yticks(np.arange(len(d))[::-1], labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(f"units on during: {st}", fontsize=9)
        ax.set_xlabel("selectivity (1 = on exactly in this stage)")
    return fig
