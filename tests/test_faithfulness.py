"""Deletion curves: the top-attributed sensors against a random order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestRegressor
from torch import nn

from pdmlens.explain.attributions import Attribution, explain_forest, explain_lstm
from pdmlens.explain.faithfulness import (
    baseline_from,
    deletion_curve,
    deletion_for,
    model_predictor,
)
from pdmlens.models.features import window_features
from pdmlens.runtime.threads import compute_threads


@pytest.fixture(autouse=True)
def _one_thread():
    # one thread: two crawl when the other core is busy (shared machine); held, not set, so
    # that nothing is left behind for the tests that follow
    with compute_threads(1):
        yield


def sensor0_total(x: np.ndarray) -> np.ndarray:
    return x[:, :, 0].sum(axis=1).astype(np.float64)


def test_exact_curves_for_a_model_reading_sensor_0_only() -> None:
    rng = np.random.default_rng(0)
    n, w, f = 7, 4, 5
    x = rng.normal(size=(n, w, f)).astype(np.float32)
    scores = np.tile(np.array([9.0, 1.0, 2.0, 3.0, 4.0]), (n, 1))  # sensor 0 first
    res = deletion_curve(
        sensor0_total, x, scores, np.zeros((w, f), np.float32), n_random=f, seed=3, batch_size=3
    )
    m = float(np.mean(np.abs(sensor0_total(x))))
    np.testing.assert_allclose(res.top, [0.0] + [m] * f, rtol=1e-6)
    # n_random = F: sensor 0 sits at every position once -> random[k] = m k / F exactly
    np.testing.assert_allclose(res.random, m * np.arange(f + 1) / f, rtol=1e-6)
    assert res.area == pytest.approx(m * (f - 1) / (2 * f), rel=1e-6)
    assert res.full_move == pytest.approx(m, rel=1e-6)
    assert res.ratio(1) == pytest.approx(f)
    assert res.area_rel == pytest.approx((f - 1) / (2 * f), rel=1e-6)
    # ranking sensor 0 last is worse than random: negative area
    last = np.tile(np.array([0.5, 1.0, 2.0, 3.0, 4.0]), (n, 1))
    worst = deletion_curve(sensor0_total, x, last, np.zeros((w, f), np.float32), n_random=f, seed=3)
    assert worst.area == pytest.approx(-m * (f - 1) / (2 * f), rel=1e-6)
    assert worst.top[f - 1] == 0.0


def test_baseline_replaces_whole_sensor_columns() -> None:
    x = np.ones((2, 3, 2), np.float32)
    base = np.array([[1.0, 5.0], [1.0, 6.0], [1.0, 7.0]], np.float32)
    seen = []

    def predict(xx: np.ndarray) -> np.ndarray:
        seen.append(xx.copy())
        return xx[:, :, 1].sum(1).astype(np.float64)

    res = deletion_curve(
        predict, x, np.array([[0.0, 1.0], [0.0, 1.0]]), base, k_max=1, n_random=1, seed=0
    )
    assert res.top[1] == pytest.approx(18.0 - 3.0)
    np.testing.assert_array_equal(seen[2][0, :, 1], [5.0, 6.0, 7.0])  # after base, f0
    np.testing.assert_array_equal(seen[2][0, :, 0], [1.0, 1.0, 1.0])


class Sensor0Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 2, batch_first=True)
        self.head = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x[:, :, 0]).sum(1) * 3.0 + 0.01 * x[:, :, 1:].sum((1, 2))


def test_top_k_beats_random_for_lstm_attributions_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, 4, generator=g)
    bg = torch.randn(8, 5, 4, generator=g)
    net = Sensor0Net()
    attr = explain_lstm(net, x, bg, nsamples=8, seed=0)
    res = deletion_for(net, attr, x.numpy(), bg.numpy(), n_random=3, seed=1)
    assert res.top[1] > 2 * res.random[1]
    assert res.area > 0 and res.ratio(1) > 2
    again = deletion_for(net, attr, x.numpy(), bg.numpy(), n_random=3, seed=1)
    np.testing.assert_array_equal(res.random, again.random)
    other = deletion_for(net, attr, x.numpy(), bg.numpy(), n_random=3, seed=2)
    assert not np.array_equal(res.random, other.random)
    np.testing.assert_allclose(baseline_from(bg.numpy()), bg.mean(0).numpy(), atol=1e-6)


class ToyForest:
    def __init__(self, model, sensors: list[str]) -> None:
        self.model_ = model
        self.sensors = sensors
        self.feature_names_ = window_features(
            np.zeros((1, 2, len(sensors)), np.float32), sensors, ("last", "mean")
        )[1]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return window_features(x, self.sensors, ("last", "mean"))[0]


def test_forest_predictor_and_deletion() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 4, 3)).astype(np.float32)
    y = 4 * x[:, -1, 2]
    forest = ToyForest(None, ["a", "b", "c"])
    forest.model_ = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0).fit(
        forest.transform(x), y
    )
    predict = model_predictor(forest)
    np.testing.assert_allclose(predict(x[:5]), forest.model_.predict(forest.transform(x[:5])))
    attr = explain_forest(forest, x[:40])
    res = deletion_for(forest, attr, x[:40], x[100:], n_random=3, seed=0)
    assert res.top[1] > 1.5 * res.random[1] and res.area > 0


def test_input_checks() -> None:
    x = np.zeros((2, 3, 2), np.float32)
    with pytest.raises(ValueError, match="scores"):
        deletion_curve(sensor0_total, x, np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="baseline"):
        deletion_curve(sensor0_total, x, np.zeros((2, 2)), np.zeros((2, 2)))
    attr = Attribution(
        values=np.zeros((2, 2)),
        sensor_names=["a", "b"],
        base_value=0.0,
        predictions=np.zeros(2),
        model="m",
        method="hand",
    )
    res = deletion_curve(sensor0_total, x, attr, np.zeros((3, 2)), k_max=0)
    assert res.area == 0.0 and res.top.tolist() == [0.0]


def test_deletion_plot(tmp_path) -> None:
    from pdmlens.report.attribution_plots import deletion_plot

    x = np.random.default_rng(0).normal(size=(4, 3, 3)).astype(np.float32)
    res = deletion_curve(
        sensor0_total, x, np.tile([3.0, 2.0, 1.0], (4, 1)), np.zeros((3, 3), np.float32), n_random=3
    )
    fig = deletion_plot({"lstm": res, "forest": res}, k_true=1)
    assert len(fig.axes[0].lines) == 5  # 2 curves per model and the k_true line
    fig.savefig(tmp_path / "del.png")
