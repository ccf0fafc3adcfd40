"""The random-forest baseline: a scikit-learn forest on per-window sensor statistics.

It answers two questions beside the LSTM: is the deep model worth it, and do two very
different models blame the same sensors? The forest sees each window as the statistics of
:mod:`pdmlens.models.features` (``<sensor>__<stat>``), so its SHAP values fold back to the
sensors the LSTM's attributions speak of.

Its size is bounded on purpose: exact TreeSHAP costs O(trees x leaves x depth^2) per row,
and the explain step runs it on hundreds of windows, so depth, leaf size and the number of
trees are chosen (on validation units; see docs/model_choices.md) to keep a row's
attribution in milliseconds while the RMSE stays where a bigger forest would put it.

Features are computed batch by batch straight from the WindowDataset into one float32
array, so fitting on every training window of a large fleet never materialises the windows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from pdmlens.data.windows import WindowDataset
from pdmlens.errors import NotFittedError
from pdmlens.models.features import feature_names, window_features
from pdmlens.models.horizon import HorizonMixin
from pdmlens.task import TASK_NAMES

if TYPE_CHECKING:
    from pdmlens.config import RunConfig

log = logging.getLogger(__name__)

FORMAT = "pdmlens.forest/1"
TASKS = TASK_NAMES
DEFAULT_STATS = ("last", "mean", "slope")
"""the statistics chosen on validation units; all of STATS remain available."""


class ForestEstimator(HorizonMixin, BaseEstimator):
    """Random forest on window statistics for ``task="rul"`` (regression of the capped RUL)
    or ``task="horizon"`` (P(failure within the horizon)).

    ``stride`` > 1 fits on every stride-th training window (consecutive windows overlap
    almost entirely, so little is lost and fitting is stride times faster).
    ``predict`` returns the RUL in cycles, or the probability of failure for the horizon
    task (``predict_proba`` gives sklearn's [N, 2]).
    """

    def __init__(
        self,
        task: str = "rul",
        n_estimators: int = 100,
        max_depth: int | None = 10,
        min_samples_leaf: int = 20,
        max_features: float | str | None = 0.3,
        max_leaf_nodes: int | None = None,
        max_samples: float | None = None,
        stats: Sequence[str] = DEFAULT_STATS,
        stride: int = 1,
        seed: int = 0,
        n_jobs: int | None = None,
        threshold: float | None = None,
        batch_size: int = 4096,
    ) -> None:
        self.task = task
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.max_samples = max_samples
        self.stats = stats
        self.stride = stride
        self.seed = seed
        self.n_jobs = n_jobs
        self.threshold = threshold
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg: RunConfig, task: str | None = None) -> ForestEstimator:
        """An estimator with the run's forest parameters, task and seed."""
        c = cfg.model.forest
        return cls(
            task=task or cfg.model.task,
            n_estimators=c.n_estimators,
            max_depth=c.max_depth,
            min_samples_leaf=c.min_samples_leaf,
            max_features=c.max_features,
            max_leaf_nodes=c.max_leaf_nodes,
            max_samples=c.max_samples,
            stats=tuple(c.stats),
            stride=c.stride,
            seed=cfg.seed,
            n_jobs=c.n_jobs,
        )

    # --------------------------------------------------------------------- fit
    def _new_model(self) -> RandomForestRegressor | RandomForestClassifier:
        kw: dict[str, Any] = dict(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            max_leaf_nodes=self.max_leaf_nodes,
            max_samples=self.max_samples,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        if not self.classifies:
            return RandomForestRegressor(**kw)
        return RandomForestClassifier(**kw)

    def fit(self, train: WindowDataset, val: WindowDataset | None = None) -> ForestEstimator:
        """Fit on the statistics of ``train``'s windows (every ``stride``-th); with ``val``,
        record the validation figures in ``val_metrics_``."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if train.targets is None:
            raise ValueError("the training WindowDataset has no target column")
        if len(train) == 0:
            raise ValueError("the training WindowDataset has no windows")
        if self.stride < 1:
            raise ValueError("stride must be >= 1")
        self.feature_names_in_ = np.asarray(train.features, dtype=object)
        self.n_features_in_ = len(train.features)
        self.feature_names_ = feature_names(train.features, self.stats)
        idx = np.arange(0, len(train), int(self.stride))
        t0 = time.perf_counter()
        x = self._dataset_features(train, idx)
        y = train.window_targets[idx]
        if self.classifies:
            y = (y > 0.5).astype(np.int64)
        t1 = time.perf_counter()
        model = self._new_model()
        model.fit(x, y)
        # parallel prediction sums the trees in whatever order threads finish, which moves
        # the last bit; one thread repeats exactly (and predicting is cheap)
        model.set_params(n_jobs=1)
        self.model_ = model
        self.fit_seconds_ = time.perf_counter() - t0
        log.info(
            "forest: %d windows x %d features in %.1fs, fitted in %.1fs",
            len(idx),
            x.shape[1],
            t1 - t0,
            self.fit_seconds_ - (t1 - t0),
        )
        self.val_metrics_: dict[str, float] = {}
        self.threshold_ = 0.5 if self.threshold is None else float(self.threshold)
        if val is not None and len(val):
            from pdmlens import metrics

            pred = self.predict(val)
            truth = val.window_targets
            if not self.classifies:
                self.val_metrics_ = {
                    "rmse": metrics.rmse(pred, truth),
                    "mae": metrics.mae(pred, truth),
                }
            else:
                if self.threshold is None:
                    self.threshold_ = metrics.best_f1_threshold(pred, truth > 0.5)
                rep = metrics.classification_report(pred, truth > 0.5, self.threshold_)
                self.val_metrics_ = {k: rep[k] for k in ("f1", "roc_auc", "pr_auc")}
            log.info("forest validation: %s", self.val_metrics_)
        return self

    # --------------------------------------------------------------- features
    def _dataset_features(self, ds: WindowDataset, idx: np.ndarray | None = None) -> np.ndarray:
        idx = np.arange(len(ds)) if idx is None else np.asarray(idx)
        out = np.empty((len(idx), len(ds.features) * len(self.stats)), dtype=np.float32)
        for s, (_, xb, _) in zip(
            range(0, len(idx), self.batch_size),
            ds.iter_batches(self.batch_size, idx),
            strict=True,
        ):
            window_features(xb, ds.features, self.stats, out=out[s : s + len(xb)])
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit() or load() first"
            )

    def transform(self, x: np.ndarray | torch.Tensor | WindowDataset) -> np.ndarray:
        """Window statistics [N, F*S] (float32) in the order of ``feature_names_``."""
        self._check_fitted()
        names = [str(f) for f in self.feature_names_in_]
        if isinstance(x, WindowDataset):
            if list(x.features) != names:
                raise ValueError(
                    "the windows' features differ from those the model was fitted on: "
                    f"{list(x.features)} vs {names}"
                )
            return self._dataset_features(x)
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[-1] != self.n_features_in_:
            raise ValueError(
                f"x must be [N, W, {self.n_features_in_}] windows, got shape {arr.shape}"
            )
        return window_features(arr.astype(np.float32, copy=False), names, self.stats)[0]

    # ----------------------------------------------------------------- predict
    def predict(self, x: np.ndarray | torch.Tensor | WindowDataset) -> np.ndarray:
        """RUL in cycles (rul) or P(failure within the horizon) (horizon), [N]."""
        feats = self.transform(x)
        if self.classifies:
            return self._proba1(feats)
        return self.model_.predict(feats)

    def _proba1(self, feats: np.ndarray) -> np.ndarray:
        proba = self.model_.predict_proba(feats)
        classes = list(self.model_.classes_)
        if 1 in classes:
            return proba[:, classes.index(1)]
        return np.zeros(len(feats))

    # -------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> Path:
        """A joblib file (pickle: load only files you trust) with params and the forest."""
        import joblib

        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "params": self.get_params(),
            "model": self.model_,
            "feature_names_in": [str(f) for f in self.feature_names_in_],
            "val_metrics": dict(self.val_metrics_),
            "threshold": float(self.threshold_),
        }
        tmp = path.with_name(path.name + ".tmp")
        joblib.dump(payload, tmp, compress=3)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForestEstimator:
        import joblib

        payload = joblib.load(Path(path))
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved pdmlens forest")
        est = cls(**payload["params"])
        names = payload["feature_names_in"]
        est.model_ = payload["model"]
        est.feature_names_in_ = np.asarray(names, dtype=object)
        est.n_features_in_ = len(names)
        est.feature_names_ = feature_names(names, est.stats)
        est.val_metrics_ = dict(payload["val_metrics"])
        est.threshold_ = float(payload.get("threshold", 0.5))
        return est
