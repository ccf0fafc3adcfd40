"""Does the model know it is looking at something new? Novelty scores on signatures.

A model trained on one fault mode (or operating regime) should at least *notice* when it is
shown another: its activation signatures should lie away from those of the training data.
``NoveltyScorer`` measures that distance per layer, with one of

- ``mahalanobis``: distance to the training signatures modelled as one Gaussian with a
  Ledoit-Wolf shrinkage covariance (stable when dims are many and samples few);
- ``knn``: distance to the k-th nearest training signature (local, no shape assumption);
- ``centroid``: distance to the nearest k-means centroid of the training signatures.

Signatures are standardized on the training data first. Queries run in chunks so memory is
bounded for many samples. The same scorer on raw input features is the baseline a layer
must beat. ``calibrate`` sets the alarm threshold on familiar validation samples (e.g. 95%
of them pass) and ``novelty_report`` scores familiar vs unfamiliar samples: AUROC, the
false-alarm rate when 95% of the unfamiliar are caught, and the detection rate at the
calibrated threshold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from pdmlens.errors import NotFittedError
from pdmlens.signatures.cluster import SignatureClusterer, layer_label

log = logging.getLogger(__name__)

METHODS = ("mahalanobis", "knn", "centroid")


class NoveltyScorer:
    """Distance of new signatures from the training signatures (larger = more novel)."""

    def __init__(
        self,
        method: str = "mahalanobis",
        k: int = 5,
        n_clusters: int | None = None,
        chunk_size: int = 4096,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.k = k
        self.n_clusters = n_clusters
        self.chunk_size = chunk_size
        self.seed = seed

    def fit(self, X: np.ndarray, y: Any = None) -> NoveltyScorer:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        X = _check(X)
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        if self.method == "mahalanobis":
            lw = LedoitWolf().fit(Z)
            self.location_ = lw.location_
            self.precision_ = lw.precision_
            self.shrinkage_ = float(lw.shrinkage_)
        elif self.method == "knn":
            if not 1 <= self.k <= len(Z):
                raise ValueError(f"k={self.k} needs 1..{len(Z)} training samples")
            self.nn_ = NearestNeighbors(n_neighbors=self.k).fit(Z)
        else:
            self.clusterer_ = SignatureClusterer(k=self.n_clusters, seed=self.seed).fit(Z)
        self.n_features_in_ = X.shape[1]
        self.n_train_ = len(X)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scaler_"):
            raise NotFittedError("NoveltyScorer is not fitted; call fit first")

    def score_samples(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Novelty score of every row of ``X`` [N, D] (float64 [N]; larger = more novel)."""
        self._check_fitted()
        X = _check(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} dims, the scorer was fitted on {self.n_features_in_}"
            )
        out = np.empty(len(X)) if out is None else out[: len(X)]
        for s in range(0, len(X), self.chunk_size):
            Z = self.scaler_.transform(X[s : s + self.chunk_size])
            out[s : s + len(Z)] = self._score_chunk(Z)
        return out

    def _score_chunk(self, Z: np.ndarray) -> np.ndarray:
        if self.method == "mahalanobis":
            d = Z - self.location_
            return np.sqrt(np.maximum(((d @ self.precision_) * d).sum(axis=1), 0.0))
        if self.method == "knn":
            dist, _ = self.nn_.kneighbors(Z, n_neighbors=self.k)
            return dist[:, -1]
        return self.clusterer_.transform(Z).min(axis=1)


def _check(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(
            f"signatures must be a non-empty [n_samples, n_dims] array, got shape {X.shape}"
        )
    if not np.isfinite(X).all():
        raise ValueError("signatures contain NaN or inf")
    return X


def calibrate(val_scores: Any, tnr: float = 0.95) -> float:
    """Threshold such that a fraction ``tnr`` of familiar validation scores are <= it.

    A sample is flagged novel when its score is strictly above the threshold. With n
    distinct scores exactly ceil(tnr * n) of them pass, i.e. the true-negative rate on the
    calibration set is within 1/n of ``tnr`` (never below it).
    """
    v = np.sort(np.asarray(val_scores, dtype=np.float64).reshape(-1))
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError("calibration needs a non-empty set of finite scores")
    if not 0.0 <= tnr <= 1.0:
        raise ValueError(f"tnr must be in [0, 1], got {tnr}")
    idx = math.ceil(tnr * len(v) - 1e-9) - 1
    if idx < 0:
        return float(np.nextafter(v[0], -np.inf))
    return float(v[idx])


def novelty_report(
    familiar_scores: Any, unfamiliar_scores: Any, threshold: float | None = None
) -> dict[str, float]:
    """How well novelty scores tell unfamiliar samples (positives) from familiar ones.

    ``auroc``; ``fpr_at_95_tpr``: the fraction of familiar samples flagged when the
    threshold is set to catch 95% of the unfamiliar; with a ``threshold``,
    ``detection_rate`` (unfamiliar flagged, score > threshold) and ``false_alarm_rate``.
    """
    fam = np.asarray(familiar_scores, dtype=np.float64).reshape(-1)
    unf = np.asarray(unfamiliar_scores, dtype=np.float64).reshape(-1)
    if len(fam) == 0 or len(unf) == 0:
        raise ValueError("novelty_report needs familiar and unfamiliar scores")
    y = np.r_[np.zeros(len(fam)), np.ones(len(unf))]
    s = np.r_[fam, unf]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out = {
        "auroc": float(roc_auc_score(y, s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "n_familiar": float(len(fam)),
        "n_unfamiliar": float(len(unf)),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
        out["detection_rate"] = float(np.mean(unf > threshold))
        out["false_alarm_rate"] = float(np.mean(fam > threshold))
    return out


def novelty_by_layer(
    train: Mapping[Hashable, np.ndarray],
    val: Mapping[Hashable, np.ndarray],
    familiar: Mapping[Hashable, np.ndarray],
    unfamiliar: Mapping[Hashable, np.ndarray],
    method: str = "mahalanobis",
    k: int = 5,
    tnr: float = 0.95,
    seed: int = 0,
    chunk_size: int = 4096,
) -> tuple[pd.DataFrame, dict[Hashable, dict[str, np.ndarray]]]:
    """Fit a scorer per layer on ``train``, calibrate on ``val`` (familiar, held out), and
    report ``familiar`` vs ``unfamiliar`` (held out). Returns the per-layer table (index
    layer; columns name, method, auroc, fpr_at_95_tpr, threshold, detection_rate,
    false_alarm_rate, ...) and the scores ``{layer: {"val", "familiar", "unfamiliar"}}``
    for plotting.
    """
    rows, scores = [], {}
    for layer in train:
        sc = NoveltyScorer(method=method, k=k, seed=seed, chunk_size=chunk_size)
        sc.fit(train[layer])
        s_val = sc.score_samples(val[layer])
        s_fam = sc.score_samples(familiar[layer])
        s_unf = sc.score_samples(unfamiliar[layer])
        thr = calibrate(s_val, tnr)
        rep = novelty_report(s_fam, s_unf, thr)
        rows.append({"layer": layer, "name": layer_label(layer), "method": method, **rep})
        scores[layer] = {"val": s_val, "familiar": s_fam, "unfamiliar": s_unf}
        log.info(
            "novelty %s (%s): auroc=%.3f fpr@95tpr=%.3f",
            layer_label(layer),
            method,
            rep["auroc"],
            rep["fpr_at_95_tpr"],
        )
    return pd.DataFrame(rows).set_index("layer"), scores


def novelty_verdict(
    table: pd.DataFrame,
    familiar: str = "validation machines",
    unfamiliar: str = "test machines",
    tnr: float = 0.95,
) -> list[str]:
    """Plain sentences on :func:`novelty_by_layer`'s table: how the threshold was set, and
    per layer the share of ``unfamiliar`` windows flagged (detection rate) against the
    share of ``familiar`` ones (false-alarm rate), with a verdict. A layer "notices" the
    new data when it flags at least twice the false-alarm rate and its AUROC is 0.6 or
    more; otherwise the new data looks familiar to it."""
    from pdmlens.signatures.cluster import layer_label

    out = [
        f"The alarm threshold of each layer is set so that {100 * (1 - tnr):.0f}% of the "
        f"{familiar}' windows score above it (the dashed line in the charts); a window above "
        "it is flagged as unfamiliar."
    ]
    for layer, row in table.iterrows():
        name = str(row["name"]) if "name" in table.columns else layer_label(layer)
        det = float(row.get("detection_rate", float("nan")))
        fa = float(row.get("false_alarm_rate", float("nan")))
        auc = float(row.get("auroc", float("nan")))
        notices = det >= 2 * max(fa, 1e-9) and auc >= 0.6
        verdict = (
            f"it notices that the {unfamiliar} differ"
            if notices
            else f"the {unfamiliar} look familiar to it"
        )
        out.append(
            f"{name}: threshold {float(row['threshold']):.3g}; flags {100 * det:.0f}% of the "
            f"{unfamiliar}' windows (detection rate) and {100 * fa:.0f}% of the {familiar}' "
            f"(false-alarm rate); AUROC {auc:.2f} (0.5 = cannot tell them apart): {verdict}."
        )
    return out
