"""Activation signatures, their clusters, and what the clusters mean in health terms.

A *signature* is one sample's activation vector at one layer: by default the LSTM's hidden
and cell state (h, c) at the last time step of a window, optionally with the time-pooled
gates i, f, o. Everything here works on plain arrays ``[n_samples, n_dims]`` keyed by
layer, so the input window (layer 0) and every LSTM layer (1, 2, ...) are handled alike.

Clustering answers "which behaviours does the network distinguish": signatures are
standardized and grouped by k-means, k chosen by silhouette unless given. The clusters are
then read against health stages (RUL bins: purity, majority stage) and against the input
sensors (which sensors are unusually high or low in each cluster), so an analyst gets a
sentence such as "cluster 3 = critical (<30), driven by sensor_4 (high), sensor_11 (high)".
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from pdmlens.errors import NotFittedError

log = logging.getLogger(__name__)

GATES = ("i", "f", "g", "o", "c", "h")
POOLED_GATES = ("i", "f", "o")
UNKNOWN_STAGE = "unknown"


# --------------------------------------------------------------------------- signatures
def layer_label(layer: Hashable) -> str:
    """Readable name of a signature layer: 0 is the input window, n >= 1 an LSTM layer."""
    if isinstance(layer, (int, np.integer)):
        return "input" if int(layer) == 0 else f"LSTM layer {int(layer)}"
    return str(layer)


def _trace_layers(trace: Any) -> Sequence[Mapping[str, np.ndarray]]:
    layers = getattr(trace, "layers", trace)
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError("trace must have a non-empty sequence of layers (GateTrace.layers)")
    return layers


def _as_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def signatures_from_trace(
    trace: Any,
    states: Sequence[str] = ("h", "c"),
    pool: str | None = None,
    step: int = -1,
) -> dict[int, np.ndarray]:
    """Per-layer signatures ``{layer: [N, D]}`` from a GateTrace (or its ``layers`` list).

    Keys are 1-based (``trace.layers[0]`` -> 1) so that 0 is free for the input window.
    ``states`` are taken at time ``step`` (default the last) and concatenated in order;
    ``pool="mean"`` appends the time-mean of the gates i, f, o over the window.
    """
    if pool not in (None, "mean"):
        raise ValueError(f"pool must be None or 'mean', got {pool!r}")
    bad = [s for s in states if s not in GATES]
    if bad:
        raise ValueError(f"unknown states {bad}; choose from {GATES}")
    if not states and pool is None:
        raise ValueError("a signature needs at least one state or pool='mean'")
    out: dict[int, np.ndarray] = {}
    for li, layer in enumerate(_trace_layers(trace)):
        parts = [_as_numpy(layer[s])[:, step, :] for s in states]
        if pool == "mean":
            parts += [_as_numpy(layer[g]).mean(axis=1) for g in POOLED_GATES]
        out[li + 1] = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
    return out


def signatures_from_lstm(lstm: Any, x: Any, batch_size: int = 1024) -> dict[int, np.ndarray]:
    """The default signatures (h then c at the last step, per layer) straight from an
    ``nn.LSTM``'s final states, without recording gates: ``x`` is an array [N, T, F] or a
    WindowDataset (anything with ``iter_batches``). Equal to
    ``signatures_from_trace(extract_gates(lstm, x))`` at a fraction of the memory.
    """
    import torch

    if not getattr(lstm, "batch_first", False):
        raise ValueError("signatures_from_lstm expects a batch_first nn.LSTM")
    if getattr(lstm, "bidirectional", False) or getattr(lstm, "proj_size", 0):
        raise ValueError("bidirectional or projected LSTMs are not supported")
    param = next(lstm.parameters())
    n_layers, hidden = int(lstm.num_layers), int(lstm.hidden_size)
    if hasattr(x, "iter_batches"):
        n = len(x)
        batches = ((idx, xb) for idx, xb, _ in x.iter_batches(batch_size))
    else:
        arr = _as_numpy(x)
        if arr.ndim != 3:
            raise ValueError(f"x must be [N, T, F], got shape {arr.shape}")
        n = len(arr)
        batches = (
            (np.arange(s, min(s + batch_size, n)), arr[s : s + batch_size])
            for s in range(0, n, batch_size)
        )
    out = {li + 1: np.empty((n, 2 * hidden), dtype=np.float32) for li in range(n_layers)}
    was_training = lstm.training
    lstm.eval()
    try:
        with torch.no_grad():
            for idx, xb in batches:
                xt = torch.as_tensor(np.asarray(xb), dtype=param.dtype, device=param.device)
                _, (h_n, c_n) = lstm(xt)
                h_np, c_np = h_n.cpu().numpy(), c_n.cpu().numpy()
                for li in range(n_layers):
                    out[li + 1][idx, :hidden] = h_np[li]
                    out[li + 1][idx, hidden:] = c_np[li]
    finally:
        lstm.train(was_training)
    return out


def input_signature(x: Any, mode: str = "last_mean") -> np.ndarray:
    """Layer-0 signature of input windows ``x [N, W, F]``.

    ``last_mean``: last step and window mean of each feature (2F dims, the analogue of
    "state at the last step" plus pooling); ``last``: the last step only; ``flat``: the
    whole window flattened (W*F dims).
    """
    x = _as_numpy(x)
    if x.ndim != 3:
        raise ValueError(f"x must be [N, W, F], got shape {x.shape}")
    if mode == "last":
        sig = x[:, -1, :]
    elif mode == "last_mean":
        sig = np.concatenate([x[:, -1, :], x.mean(axis=1)], axis=1)
    elif mode == "flat":
        sig = x.reshape(len(x), -1)
    else:
        raise ValueError(f"mode must be 'last', 'last_mean' or 'flat', got {mode!r}")
    return np.ascontiguousarray(sig, dtype=np.float32)


# --------------------------------------------------------------------------- clustering
class SignatureClusterer:
    """Standardize, then k-means; k chosen by silhouette over ``k_range`` unless ``k``.

    The silhouette is computed on a subsample of at most ``silhouette_sample`` points
    (drawn with ``seed``), so choosing k stays cheap for many samples and is deterministic.
    """

    def __init__(
        self,
        k: int | None = None,
        k_range: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
        seed: int = 0,
        n_init: int = 10,
        silhouette_sample: int = 2000,
    ) -> None:
        self.k = k
        self.k_range = k_range
        self.seed = seed
        self.n_init = n_init
        self.silhouette_sample = silhouette_sample

    def fit(self, X: np.ndarray, y: Any = None) -> SignatureClusterer:
        X = self._check_X(X)
        n = len(X)
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        candidates = [int(self.k)] if self.k is not None else sorted({int(k) for k in self.k_range})
        candidates = [k for k in candidates if 1 <= k <= n]
        if not candidates:
            raise ValueError(
                f"no usable k in {self.k if self.k is not None else self.k_range} for {n} samples"
            )
        rng = np.random.RandomState(self.seed)
        sub = (
            np.sort(rng.choice(n, self.silhouette_sample, replace=False))
            if n > self.silhouette_sample
            else np.arange(n)
        )
        self.silhouette_scores_: dict[int, float] = {}
        best: tuple[float, int, KMeans] | None = None
        for k in candidates:
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.seed).fit(Z)
            labels = km.labels_[sub]
            n_used = len(np.unique(labels))
            score = (
                float(silhouette_score(Z[sub], labels)) if 1 < n_used < len(sub) else float("nan")
            )
            self.silhouette_scores_[k] = score
            log.debug("k=%d silhouette=%.4f", k, score)
            # a single given k is kept whatever its silhouette; else the best score wins
            key = -np.inf if np.isnan(score) else score
            if best is None or key > best[0]:
                best = (key, k, km)
        assert best is not None
        _, self.k_, self.kmeans_ = best
        self.silhouette_ = self.silhouette_scores_[self.k_]
        self.labels_ = self.kmeans_.labels_.astype(np.int64)
        self.centroids_ = self.kmeans_.cluster_centers_  # in standardized space
        self.n_features_in_ = X.shape[1]
        log.info(
            "signature clusters: k=%d (silhouette %.3f) on %d samples x %d dims",
            self.k_,
            self.silhouette_,
            n,
            X.shape[1],
        )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "kmeans_"):
            raise NotFittedError("SignatureClusterer is not fitted; call fit first")

    @staticmethod
    def _check_X(X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(
                f"signatures must be a non-empty [n_samples, n_dims] array, got shape {X.shape}"
            )
        if not np.isfinite(X).all():
            raise ValueError("signatures contain NaN or inf")
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Distance of each sample to every centroid (standardized space), [N, k]."""
        self._check_fitted()
        return self.kmeans_.transform(self.scaler_.transform(self._check_X(X)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.kmeans_.predict(self.scaler_.transform(self._check_X(X))).astype(np.int64)

    def fit_predict(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(X).labels_


# --------------------------------------------------------------------------- health stages
_STAGE_NAMES = {
    1: ["all"],
    2: ["failing", "healthy"],
    3: ["critical", "degrading", "healthy"],
    4: ["critical", "late degradation", "early degradation", "healthy"],
    5: ["critical", "late degradation", "degrading", "early degradation", "healthy"],
}


def _fmt(v: float) -> str:
    return f"{v:g}"


def stage_names(bins: Sequence[float], names: Sequence[str] | None = None) -> list[str]:
    """Readable stage labels for RUL bin edges, most severe first.

    ``[0, 30, 75, 125]`` -> ``["critical (<30)", "degrading (30-75)", "healthy (>=75)"]``.
    The first stage takes everything below the second edge and the last everything from
    its lower edge up (the top edge is the RUL cap and bounds nothing).
    """
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(b >= a for a, b in zip(edges[1:], edges[:-1], strict=False)):
        raise ValueError(f"bins must be at least two strictly increasing edges, got {bins}")
    n = len(edges) - 1
    words = (
        list(names)
        if names is not None
        else _STAGE_NAMES.get(n, [f"stage {i + 1}" for i in range(n)])
    )
    if len(words) != n:
        raise ValueError(f"{n} stages need {n} names, got {len(words)}")
    if n == 1:
        return [words[0]]
    out = []
    for i, w in enumerate(words):
        if i == 0:
            out.append(f"{w} (<{_fmt(edges[1])})")
        elif i == n - 1:
            out.append(f"{w} (>={_fmt(edges[i])})")
        else:
            out.append(f"{w} ({_fmt(edges[i])}-{_fmt(edges[i + 1])})")
    return out


def stage_of(
    rul: Any, bins: Sequence[float] = (0, 30, 75, 125), names: Sequence[str] | None = None
) -> np.ndarray:
    """Health-stage label (str, see ``stage_names``) of every RUL value; NaN -> "unknown".

    Bins are right-open: with ``[0, 30, 75, 125]`` RUL 29.9 is critical, 30 is degrading,
    75 and above (and anything beyond the cap) healthy. Any shape is kept.
    """
    labels = np.asarray(stage_names(bins, names), dtype=object)
    rul = np.asarray(rul, dtype=np.float64)
    idx = np.searchsorted(np.asarray(bins[1:-1], dtype=np.float64), rul, side="right")
    out = labels[np.minimum(idx, len(labels) - 1)]
    out[np.isnan(rul)] = UNKNOWN_STAGE
    return out


def _ordered(values: np.ndarray, order: Sequence[str] | None) -> list:
    present = list(pd.unique(pd.Series(values)))
    if order is None:
        return sorted(present, key=str)
    known = [s for s in order if s in set(present)]
    return known + sorted((s for s in present if s not in set(order)), key=str)


def purity_score(labels: Any, stages: Any) -> float:
    """Fraction of samples whose stage is their cluster's majority stage."""
    table = pd.crosstab(np.asarray(labels), np.asarray(stages))
    return float(table.max(axis=1).sum() / table.to_numpy().sum()) if table.size else float("nan")


def cluster_stage_table(
    labels: Any, stages: Any, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Counts cluster x stage, with ``n``, the ``majority`` stage and ``purity`` per cluster.

    ``order`` fixes the stage column order (e.g. ``stage_names(bins)``); the overall purity
    is in ``table.attrs["purity"]``.
    """
    labels = np.asarray(labels)
    stages = np.asarray(stages)
    if labels.shape != stages.shape:
        raise ValueError(f"labels {labels.shape} and stages {stages.shape} differ in shape")
    cols = _ordered(stages, order)
    table = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(stages, name="stage"))
    table = table.reindex(columns=cols, fill_value=0).sort_index()
    counts = table.copy()
    table.columns = [str(c) for c in table.columns]
    table.columns.name = "stage"
    table["n"] = counts.sum(axis=1).to_numpy()
    table["majority"] = counts.idxmax(axis=1).to_numpy()
    table["purity"] = (counts.max(axis=1) / counts.sum(axis=1)).to_numpy()
    table.attrs["purity"] = float(counts.max(axis=1).sum() / max(counts.to_numpy().sum(), 1))
    return table


def cluster_profiles(labels: Any, features: pd.DataFrame, top: int | None = 3) -> pd.DataFrame:
    """Per-cluster mean of each input feature, z-scored over all given samples.

    ``features`` holds one row per sample (e.g. the sensors at the window's last step);
    a value of +1.5 means "1.5 standard deviations above the fleet average in this cluster".
    With ``top``, a last column ``top_features`` names the ``top`` features with the largest
    absolute mean z per cluster, e.g. ``"sensor_4 (+1.8), sensor_11 (+1.5)"``.
    """
    labels = np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"{len(labels)} labels for {len(features)} feature rows")
    values = features.to_numpy(dtype=np.float64)
    mu = values.mean(axis=0)
    sd = values.std(axis=0)
    sd[sd == 0] = 1.0
    z = pd.DataFrame((values - mu) / sd, columns=features.columns, index=features.index)
    prof = z.groupby(labels).mean()
    prof.index.name = "cluster"
    if top:
        prof["top_features"] = [
            ", ".join(f"{f} ({v:+.1f})" for f, v in pairs)
            for pairs in top_features(prof, top).values()
        ]
    return prof


def top_features(profiles: pd.DataFrame, top: int = 3) -> dict[Any, list[tuple[str, float]]]:
    """The ``top`` features per cluster by absolute mean z-score, as (name, z) pairs."""
    out: dict[Any, list[tuple[str, float]]] = {}
    profiles = profiles.select_dtypes(include="number")
    for c, row in profiles.iterrows():
        order = np.argsort(-np.abs(row.to_numpy()), kind="stable")[:top]
        out[c] = [(str(profiles.columns[j]), float(row.iloc[j])) for j in order]
    return out


def describe_clusters(
    labels: Any,
    stages: Any,
    features: pd.DataFrame | None = None,
    top: int = 3,
    order: Sequence[str] | None = None,
    min_z: float = 0.25,
) -> list[str]:
    """One plain sentence per cluster: its size, majority health stage, purity and the
    input features most unusual in it, e.g.
    ``"cluster 3 (412 samples): critical (<30), 88% pure; driven by sensor_4 (high, +1.8 sd),
    sensor_11 (high, +1.5 sd)"``. Features with |z| < ``min_z`` are not called drivers.
    """
    table = cluster_stage_table(labels, stages, order)
    tops = top_features(cluster_profiles(labels, features), top) if features is not None else {}
    lines = []
    for c, row in table.iterrows():
        s = (
            f"cluster {c} ({int(row['n'])} samples): {row['majority']}, "
            f"{100 * row['purity']:.0f}% pure"
        )
        drivers = [(f, z) for f, z in tops.get(c, []) if abs(z) >= min_z]
        if drivers:
            s += "; driven by " + ", ".join(
                f"{f} ({'high' if z > 0 else 'low'}, {z:+.1f} sd)" for f, z in drivers
            )
        elif features is not None:
            s += "; no input feature stands out"
        lines.append(s)
    return lines
