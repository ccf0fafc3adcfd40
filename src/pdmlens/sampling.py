"""Seeded samples of window indices, the one way every step and benchmark thins a split."""

from __future__ import annotations

import numpy as np


def sample_indices(n: int, size: int, seed: int, mask: np.ndarray | None = None) -> np.ndarray:
    """At most ``size`` sorted indices out of ``range(n)`` (among ``mask`` where it selects
    any), drawn without replacement with ``seed``; all of them when there are few enough."""
    pool = np.arange(n) if mask is None or not mask.any() else np.flatnonzero(mask)
    if len(pool) <= size:
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, size, replace=False))
