"""What the two estimators share for the horizon task (will the unit fail within h cycles).

Both return P(failure within the horizon) from ``predict``; this mixin adds scikit-learn's
``predict_proba`` and a thresholded ``predict_label`` on top, at the learned ``threshold_``
(the caller's ``threshold`` or the best-F1 one on the validation units).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pdmlens.task import Task


class HorizonMixin:
    """``predict_proba`` / ``predict_label`` for estimators whose ``predict`` gives P(fail)."""

    task: str
    threshold_: float
    predict: Any  # the estimator's own: P(failure within the horizon) for the horizon task

    @property
    def classifies(self) -> bool:
        """Does ``predict`` give P(failure within the horizon)? (the task says so)"""
        return Task.from_name(self.task).classifies

    def predict_proba(self, x: Any) -> np.ndarray:
        """[N, 2]: P(no failure within the horizon), P(failure within it). Horizon only."""
        if not self.classifies:
            raise ValueError("predict_proba is for the horizon task")
        p = self.predict(x)
        return np.stack([1.0 - p, p], axis=1)

    def predict_label(self, x: Any) -> np.ndarray:
        """0/1 failure-within-horizon decisions at ``threshold_``. Horizon only."""
        if not self.classifies:
            raise ValueError("predict_label is for the horizon task")
        return (self.predict(x) >= self.threshold_).astype(np.int64)
