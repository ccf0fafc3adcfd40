"""Operating regimes: clusters of the ``setting_*`` columns, found once and applied anywhere.

Turbofans (C-MAPSS FD002/FD004) and most machines run at a few operating points (altitude,
speed, load); each point shifts every sensor's level far more than wear does, so sensors are
normalised per regime. The regimes are k-means clusters of the settings, z-scored per
setting; k is chosen by silhouette over 2..max_regimes.

Deciding that there is only *one* regime (C-MAPSS FD001: settings are measurement noise
around a single point) cannot use the silhouette's argmax, which always names some k >= 2.
The rule, in order:

1. settings whose standard deviation is below ``constant_tol`` are ignored (FD001's
   ``setting_3`` is exactly 100); none left -> one regime;
2. fewer than two distinct setting vectors in the sample -> one regime;
3. the best silhouette over k = 2..max_regimes below ``min_silhouette`` (default 0.7) -> one
   regime. Real operating points are tight, far-apart clusters (FD002 and the simulator
   score above 0.95); noise around one point scores about 0.3-0.5 whatever its shape
   (FD001 scores 0.40).

A setting that is pure noise but quantised to two or three values would still look like
separate regimes; ``n_regimes`` (``PrepareConfig.n_regimes``) overrides the detection.

Regimes are numbered by their centroid in lexicographic order of the original setting
values, so the numbering does not depend on k-means' label order. Assignment is nearest
centroid in the z-scored space, computed in row chunks with reused buffers (memory O(chunk)).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CHUNK = 1 << 18
"""Rows per chunk in the vectorised loops of prepare (a few MiB of float64 per buffer)."""


def chunks(n: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(n)`` in steps of ``size``."""
    for a in range(0, n, size):
        yield a, min(n, a + size)


def gather(src: np.ndarray, rows: np.ndarray | None, a: int, b: int, buf: np.ndarray) -> np.ndarray:
    """``src[rows[a:b]]`` into ``buf`` (or the slice ``src[a:b]`` when rows is None)."""
    if rows is None:
        return src[a:b]
    out = buf[: b - a]
    np.take(src, rows[a:b], out=out, mode="clip")
    return out


@dataclass
class RegimeModel:
    """Fitted regimes: which settings, their scaling, and the centroids (original units)."""

    columns: list[str] = field(default_factory=list)
    center: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))
    silhouettes: dict[int, float] = field(default_factory=dict)

    @property
    def n_regimes(self) -> int:
        return int(self.centroids.shape[0])

    def assign(
        self, arrays: Sequence[np.ndarray], rows: np.ndarray | None = None, n: int | None = None
    ) -> np.ndarray:
        """Regime (int32) of each row. ``arrays`` are the full setting columns (in
        ``columns`` order, float64); ``rows`` selects and orders rows (None = all)."""
        total = (len(rows) if rows is not None else len(arrays[0]) if arrays else n) or 0
        out = np.zeros(total, dtype=np.int32)
        if self.n_regimes <= 1 or total == 0:
            return out
        inv = 1.0 / self.scale
        size = min(CHUNK, total)
        gbuf = np.empty(size)
        tmp, dist, best = np.empty(size), np.empty(size), np.empty(size)
        better = np.empty(size, dtype=bool)
        for a, b in chunks(total):
            m = b - a
            t, d, bst, bet = tmp[:m], dist[:m], best[:m], better[:m]
            for c in range(self.n_regimes):
                d.fill(0.0)
                for j, col in enumerate(arrays):
                    x = gather(col, rows, a, b, gbuf)
                    np.subtract(x, self.centroids[c, j], out=t)
                    np.multiply(t, inv[j], out=t)
                    np.multiply(t, t, out=t)
                    np.add(d, t, out=d)
                if c == 0:
                    bst[:] = d
                    continue
                np.less(d, bst, out=bet)
                np.copyto(bst, d, where=bet)
                out[a:b][bet] = c
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "centroids": self.centroids.tolist(),
            "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegimeModel:
        cols = list(d["columns"])
        # the number of centroids comes from the list itself: with no setting columns
        # (events, tables without settings) a centroid is an empty row, and reshape(-1, 0)
        # cannot infer how many there are
        n_centroids = len(d["centroids"])
        return cls(
            columns=cols,
            center=np.asarray(d["center"], dtype=np.float64).reshape(len(cols)),
            scale=np.asarray(d["scale"], dtype=np.float64).reshape(len(cols)),
            centroids=np.asarray(d["centroids"], dtype=np.float64).reshape(n_centroids, len(cols)),
            silhouettes={int(k): float(v) for k, v in d.get("silhouettes", {}).items()},
        )


def fit_regimes(
    sample: np.ndarray,
    columns: Sequence[str],
    *,
    max_regimes: int = 6,
    n_regimes: int | None = None,
    min_silhouette: float = 0.7,
    constant_tol: float = 1e-6,
    seed: int = 0,
) -> RegimeModel:
    """Fit the regime model on a sample of setting rows ``[n, len(columns)]`` (float64)."""
    sample = np.asarray(sample, dtype=np.float64).reshape(len(sample), len(columns))
    if n_regimes is not None and n_regimes < 1:
        raise ValueError("n_regimes must be >= 1")
    if len(sample) == 0:
        return _one_regime([], np.zeros((0, 0)), {})
    std = sample.std(axis=0)
    keep = std >= constant_tol
    cols = [c for c, k in zip(columns, keep, strict=True) if k]
    x = sample[:, keep]
    if n_regimes == 1 or not cols:
        return _one_regime(cols, x, {})
    center, scale = x.mean(axis=0), x.std(axis=0)
    z = (x - center) / scale
    n_distinct = len(np.unique(z, axis=0))
    if n_regimes is not None:
        if n_regimes > n_distinct:
            raise ValueError(
                f"n_regimes={n_regimes} but the settings take only {n_distinct} distinct values"
            )
        labels, sil = _kmeans(z, n_regimes, seed)
        return _model(cols, center, scale, x, labels, {n_regimes: sil})
    k_max = min(max_regimes, n_distinct, len(z) - 1)
    if k_max < 2:
        return _one_regime(cols, x, {})
    scores: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    for k in range(2, k_max + 1):
        fits[k], scores[k] = _kmeans(z, k, seed)
    best = max(scores, key=lambda k: (scores[k], -k))
    if scores[best] < min_silhouette:
        logger.info(
            "settings %s: best silhouette %.3f (k=%d) < %.2f -> one operating regime",
            cols,
            scores[best],
            best,
            min_silhouette,
        )
        return _one_regime(cols, x, scores)
    logger.info("settings %s: %d operating regimes (silhouette %.3f)", cols, best, scores[best])
    return _model(cols, center, scale, x, fits[best], scores)


def _kmeans(z: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from pdmlens.runtime.threads import compute_threads

    # One thread: the problem is tiny, and OpenMP threads on a busy machine spin-wait
    # (measured 0.9 s with 2 threads vs 0.04 s with one, on a loaded 2-core box).
    with warnings.catch_warnings(), compute_threads(1):
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=k, n_init=2, max_iter=100, random_state=seed).fit_predict(z)
        if len(np.unique(labels)) < 2:
            return labels, -1.0
        sil = silhouette_score(z, labels, sample_size=min(len(z), 2000), random_state=seed)
    return labels, float(sil)


def _one_regime(cols: list[str], x: np.ndarray, scores: dict[int, float]) -> RegimeModel:
    d = len(cols)
    center = x.mean(axis=0) if len(x) else np.zeros(d)
    scale = x.std(axis=0) if len(x) else np.ones(d)
    return RegimeModel(cols, center, np.where(scale > 0, scale, 1.0), center[None, :], scores)


def _model(
    cols: list[str],
    center: np.ndarray,
    scale: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    scores: dict[int, float],
) -> RegimeModel:
    k = int(labels.max()) + 1
    cent = np.stack([x[labels == c].mean(axis=0) for c in range(k)])
    order = np.lexsort(cent.T[::-1])  # lexicographic: first setting most significant
    return RegimeModel(cols, center, scale, cent[order], scores)
