"""Random-forest estimator: features from windows, conventions, save/load, both tasks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.config import RunConfig
from pdmlens.data.windows import WindowDataset
from pdmlens.errors import NotFittedError
from pdmlens.models.features import window_features
from pdmlens.models.forest import ForestEstimator

FEATURES = ["sensor_a", "sensor_b"]


def _frame(n_units: int = 6, length: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for u in range(n_units):
        rul = np.arange(length - 1, -1, -1, dtype=float)
        parts.append(
            pd.DataFrame(
                {
                    "unit": f"u{u}",
                    "time": np.arange(1, length + 1),
                    "sensor_a": (length - rul) ** 1.5 / length + rng.normal(0, 0.1, length),
                    "sensor_b": rng.normal(0, 1, length),
                    "rul": np.minimum(rul, 20.0),
                    "fails_within_5": (rul <= 5).astype(float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _data(target: str = "rul"):
    frame = _frame()
    train = frame[frame.unit.isin(["u0", "u1", "u2", "u3"])].reset_index(drop=True)
    val = frame[frame.unit.isin(["u4", "u5"])].reset_index(drop=True)
    return (
        WindowDataset(train, FEATURES, 5, target=target),
        WindowDataset(val, FEATURES, 5, target=target),
    )


def _small(**kw) -> ForestEstimator:
    params = dict(n_estimators=10, max_depth=4, min_samples_leaf=2, seed=0, n_jobs=1)
    params.update(kw)
    return ForestEstimator(**params)


def test_conventions_and_feature_names():
    est = _small(stats=("last", "slope"))
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((1, 5, 2), np.float32))
    train, val = _data()
    assert est.fit(train, val) is est
    assert est.get_params()["stats"] == ("last", "slope")
    assert est.feature_names_ == [
        "sensor_a__last",
        "sensor_a__slope",
        "sensor_b__last",
        "sensor_b__slope",
    ]
    assert est.model_.n_features_in_ == 4 and len(est.model_.estimators_) == 10
    assert set(est.val_metrics_) == {"rmse", "mae"}


def test_transform_is_window_features_and_predict_agrees_across_inputs():
    train, val = _data()
    est = _small(batch_size=7).fit(train, val)
    x = val.all_windows()
    feats = est.transform(val)
    np.testing.assert_array_equal(feats, window_features(x, FEATURES, est.stats)[0])
    np.testing.assert_array_equal(est.transform(x), feats)
    np.testing.assert_array_equal(est.predict(val), est.predict(x))
    np.testing.assert_array_equal(est.predict(val), est.model_.predict(feats))
    # the slope of a line is its slope, read back through the forest's feature names
    line = np.stack([np.arange(5.0) * 3.0, np.zeros(5)], axis=1)[None]
    row = dict(zip(est.feature_names_, est.transform(line)[0].tolist(), strict=True))
    assert row["sensor_a__slope"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="windows"):
        est.predict(np.zeros((2, 5, 3), np.float32))


def test_seed_repeats_and_stride_subsamples():
    train, val = _data()
    a = _small().fit(train).predict(val)
    b = _small().fit(train).predict(val)
    np.testing.assert_array_equal(a, b)
    strided = _small(stride=3).fit(train)
    assert strided.model_.estimators_[0].tree_.n_node_samples[0] <= int(np.ceil(len(train) / 3))


def test_learns_better_than_a_constant():
    train, val = _data()
    pred = _small(n_estimators=30, max_depth=6).fit(train).predict(val)
    truth = val.window_targets
    assert np.sqrt(np.mean((pred - truth) ** 2)) < 0.5 * truth.std()


def test_save_load_predicts_identically(tmp_path):
    train, val = _data()
    est = _small().fit(train, val)
    back = ForestEstimator.load(est.save(tmp_path / "f" / "forest.joblib"))
    assert back.get_params() == est.get_params()
    assert back.feature_names_ == est.feature_names_
    np.testing.assert_array_equal(back.predict(val), est.predict(val))


def test_horizon_task():
    train, val = _data("fails_within_5")
    est = _small(task="horizon").fit(train, val)
    p = est.predict(val)
    assert p.min() >= 0 and p.max() <= 1
    np.testing.assert_allclose(est.predict_proba(val).sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict_label(val), (p >= 0.5).astype(int))
    labels = val.window_targets > 0.5
    assert p[labels].mean() > p[~labels].mean() + 0.3
    assert set(est.val_metrics_) == {"f1", "roc_auc", "pr_auc"}


def test_from_config():
    cfg = RunConfig().with_overrides(
        {"seed": 5, "model.forest.n_estimators": 7, "model.forest.stats": ["last", "max"]}
    )
    est = ForestEstimator.from_config(cfg, task="horizon")
    assert (est.seed, est.n_estimators, tuple(est.stats), est.task) == (
        5,
        7,
        ("last", "max"),
        "horizon",
    )
