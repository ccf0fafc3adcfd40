"""Attributions: expected gradients for the LSTM, TreeExplainer for the forest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from torch import nn

from pdmlens.explain.attributions import (
    Attribution,
    background_indices,
    eg_draws,
    expected_gradients,
    explain_forest,
    explain_lstm,
    healthy_mask,
    select_background,
    shap_gradient,
    tree_shap,
)
from pdmlens.models.features import fold_to_sensors, window_features
from pdmlens.runtime.threads import compute_threads


@pytest.fixture(autouse=True)
def _one_thread():
    # one thread: two crawl when the other core is busy (shared machine); held, not set, so
    # that nothing is left behind for the tests that follow
    with compute_threads(1):
        yield


class LastStepSensor2(nn.Module):
    """LSTM-shaped ([N, T, F] -> [N], with .lstm/.head) but f depends on x[:, -1, 2] only."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.head = nn.Linear(1, 1)
        with torch.no_grad():
            self.head.weight.fill_(2.0)
            self.head.bias.fill_(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(x[:, -1, 2:3])).squeeze(-1)


class Linear(nn.Module):
    def __init__(self, t: int, f: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(t, f, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).sum(dim=(1, 2)) + 1.5


class Separable(nn.Module):
    """f(x) = sum_j c_j tanh(x[-1, j])^2 + 0.3 * mean_t x[t, j]: expected gradients has the
    closed form phi = g(x) - mean_b g(b) per additive term."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("c", torch.tensor([1.0, -2.0, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.c * torch.tanh(x[:, -1, :]) ** 2 + 0.3 * x.mean(1)).sum(-1)


def separable_exact(x: torch.Tensor, bg: torch.Tensor, c: torch.Tensor) -> np.ndarray:
    t = x.shape[1]
    out = 0.3 * (x - bg.mean(0)) / t
    out[:, -1] += c * torch.tanh(x[:, -1]) ** 2 - (c * torch.tanh(bg[:, -1]) ** 2).mean(0)
    return out.numpy()


def windows(n: int, t: int, f: int, seed: int) -> torch.Tensor:
    return torch.randn(n, t, f, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ LSTM / expected gradients
def test_attributions_concentrate_on_the_only_input_used() -> None:
    net = LastStepSensor2()
    x, bg = windows(6, 5, 4, 0), windows(8, 5, 4, 1)
    attr = explain_lstm(net, x, bg, sensor_names=["a", "b", "c", "d"], nsamples=16, seed=0)
    assert attr.values.shape == (6, 5, 4)
    mask = np.zeros((5, 4), dtype=bool)
    mask[-1, 2] = True
    assert np.all(attr.values[:, ~mask] == 0.0)
    assert np.all(np.abs(attr.values[:, -1, 2]) > 0)
    assert (attr.ranking()[:, 0] == 2).all()
    assert attr.global_importance().idxmax() == "c"
    assert attr.per_time().shape == (6, 5)
    np.testing.assert_allclose(attr.per_time()[:, -1], attr.values[:, -1, 2], rtol=1e-6)


def test_linear_model_is_exact_with_a_balanced_background() -> None:
    net = Linear(5, 3)
    x, bg = windows(7, 5, 3, 2), windows(4, 5, 3, 3)
    attr = explain_lstm(net, x, bg, nsamples=8, batch_size=3, seed=1)  # 8 = 2 x background
    expected = (net.w.detach() * (x - bg.mean(0))).numpy()
    np.testing.assert_allclose(attr.values, expected, atol=1e-5)
    assert attr.base_value == pytest.approx(float(net(bg).mean().detach()), abs=1e-5)
    assert attr.completeness_gap < 1e-5
    assert np.abs(attr.residual).max() < 1e-4


def test_expected_gradients_matches_closed_form_and_shap() -> None:
    net = Separable()
    x, bg = windows(2, 4, 3, 4), windows(8, 4, 3, 5)
    exact = separable_exact(x, bg, net.c)
    ours = expected_gradients(net, x, bg, nsamples=512, batch_size=2, seed=0)
    np.testing.assert_allclose(ours, exact, atol=5e-3)
    # shap's GradientExplainer has the same expectation with i.i.d. draws (more noise).
    theirs = shap_gradient(net, x[:1], bg, nsamples=1024, batch_size=1, seed=0)
    assert np.abs(theirs - exact[:1]).max() < 0.1
    assert np.corrcoef(theirs.ravel(), exact[:1].ravel())[0, 1] > 0.98


def test_expected_gradients_is_deterministic_for_a_seed() -> None:
    lstm = LSTMish(3)
    x, bg = windows(5, 6, 3, 6), windows(4, 6, 3, 7)
    a = expected_gradients(lstm, x, bg, nsamples=6, batch_size=2, seed=11)
    b = expected_gradients(lstm, x, bg, nsamples=6, batch_size=4, seed=11)
    c = expected_gradients(lstm, x, bg, nsamples=6, batch_size=2, seed=12)
    np.testing.assert_array_equal(
        a, expected_gradients(lstm, x, bg, nsamples=6, batch_size=2, seed=11)
    )
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # batching does not matter


class LSTMish(nn.Module):
    """The contract's network shape: nn.LSTM (batch_first) and a linear head on the last h."""

    def __init__(self, f: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(f, 8, num_layers=2, batch_first=True, dropout=0.5)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)


def test_real_lstm_attributions_are_nearly_complete_and_leave_mode_alone() -> None:
    net = LSTMish(3).train()  # dropout on: the explainer must switch it off, then restore
    x, bg = windows(6, 6, 3, 8), windows(4, 6, 3, 9)
    seen = []
    attr = explain_lstm(
        net,
        x,
        bg,
        nsamples=64,
        batch_size=4,
        seed=0,
        callback=lambda done, total: seen.append((done, total)),
    )
    assert net.training
    assert seen == [(4, 6), (6, 6)]
    with torch.no_grad():
        net.eval()
        np.testing.assert_allclose(attr.predictions, net(x).numpy(), rtol=1e-5, atol=1e-6)
    assert attr.completeness_gap < 0.1
    assert attr.settings["nsamples"] == 64 and attr.method == "expected_gradients"
    np.testing.assert_array_equal(attr.inputs, x[:, -1].numpy())


def test_eg_draws_are_balanced_and_stratified() -> None:
    rng = np.random.default_rng(0)
    idx, alpha = eg_draws(rng, 3, 8, 4)
    assert idx.shape == alpha.shape == (3, 8)
    for row in idx:  # each background row exactly twice per window
        np.testing.assert_array_equal(np.bincount(row, minlength=4), [2, 2, 2, 2])
    k = np.arange(8)
    assert np.all((alpha >= k / 8) & (alpha < (k + 1) / 8))
    idx2, _ = eg_draws(rng, 2, 3, 10)  # fewer draws than rows: distinct rows
    assert all(len(set(r.tolist())) == 3 for r in idx2)


def test_background_indices() -> None:
    a = background_indices(100, 10, seed=1)
    assert len(set(a.tolist())) == 10 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, background_indices(100, 10, seed=1))
    np.testing.assert_array_equal(background_indices(5, 10), np.arange(5))
    rul = np.array([125.0, 3.0, 125.0, 50.0, 125.0, 125.0])
    healthy = healthy_mask(rul, rul_cap=125.0)
    np.testing.assert_array_equal(healthy, [True, False, True, False, True, True])
    b = background_indices(6, 3, seed=0, among=healthy)
    assert len(b) == 3 and healthy[b].all()
    np.testing.assert_array_equal(background_indices(6, 9, among=healthy), [0, 2, 4, 5])
    np.testing.assert_array_equal(healthy_mask(np.array([0.0, 1.0]), task="horizon"), [True, False])


# ------------------------------------------------------------------ Attribution helpers
def test_completeness_gap_definition() -> None:
    values = np.array([[1.0, 2.0], [0.5, 0.5]])
    attr = Attribution(
        values=values,
        sensor_names=["a", "b"],
        base_value=1.0,
        predictions=np.array([4.5, 3.0]),
        model="m",
        method="hand",
    )
    # residuals: 1+2+1-4.5 = -0.5, 0.5+0.5+1-3 = -1 ; |f - base| = 3.5, 2
    np.testing.assert_allclose(attr.residual, [-0.5, -1.0])
    assert attr.completeness_gap == pytest.approx(0.75 / 2.75)
    np.testing.assert_allclose(attr.global_importance().to_numpy(), [0.75, 1.25])
    frame = attr.to_frame()
    assert list(frame["attribution"]) == [1.0, 2.0, 0.5, 0.5]
    assert list(frame["sensor"]) == ["a", "b", "a", "b"]
    with pytest.raises(ValueError, match="no time axis"):
        attr.per_time()
    sub = attr.subset([1])
    np.testing.assert_allclose(sub.residual, [-1.0])


# ------------------------------------------------------------------ forest / TreeExplainer
class ToyForest:
    """ForestEstimator-like: a sklearn forest on window features ``<sensor>__<stat>``."""

    def __init__(self, model, sensors: list[str], stats: tuple[str, ...]) -> None:
        self.model_ = model
        self.sensors = sensors
        self.stats = stats
        self.feature_names_ = window_features(
            np.zeros((1, 2, len(sensors)), np.float32), sensors, stats
        )[1]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return window_features(x, self.sensors, self.stats)[0]


def toy_forest(classifier: bool = False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6, 3)).astype(np.float32)
    y = 3 * x[:, -1, 1] + x[:, :, 0].mean(1)
    stats = ("last", "mean", "slope")
    sensors = ["s0", "s1", "s2"]
    feats = window_features(x, sensors, stats)[0]
    if classifier:
        model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0)
        model.fit(feats, y > 0)
    else:
        model = RandomForestRegressor(n_estimators=8, max_depth=5, random_state=0)
        model.fit(feats, y)
    return ToyForest(model, sensors, stats), x


def test_tree_shap_is_additive_and_folds_to_sensors() -> None:
    forest, x = toy_forest()
    seen = []
    attr = explain_forest(forest, x[:50], batch_size=20, callback=lambda d, t: seen.append(d))
    assert seen == [20, 40, 50]
    assert attr.values.shape == (50, 3) and attr.sensor_names == ["s0", "s1", "s2"]
    pred = forest.model_.predict(forest.transform(x[:50]))
    np.testing.assert_allclose(attr.predictions, pred, rtol=1e-6)
    np.testing.assert_allclose(attr.values.sum(1) + attr.base_value, pred, atol=1e-6)
    assert attr.completeness_gap < 1e-6
    np.testing.assert_allclose(attr.values, attr.feature_values.reshape(50, 3, 3).sum(2))
    assert attr.global_importance().idxmax() == "s1"
    np.testing.assert_array_equal(attr.inputs, x[:50, -1])


def test_tree_shap_classifier_explains_probability() -> None:
    forest, x = toy_forest(classifier=True)
    attr = explain_forest(forest, x[:30])
    p = forest.model_.predict_proba(forest.transform(x[:30]))[:, 1]
    np.testing.assert_allclose(attr.values.sum(1) + attr.base_value, p, atol=1e-6)


def test_tree_shap_interventional_needs_background_and_is_additive() -> None:
    forest, x = toy_forest()
    feats = forest.transform(x)
    with pytest.raises(ValueError, match="background"):
        tree_shap(forest.model_, feats[:5], forest.feature_names_, perturbation="interventional")
    attr = tree_shap(
        forest.model_,
        feats[:10],
        forest.feature_names_,
        perturbation="interventional",
        background=feats[60:100],
    )
    assert attr.base_value == pytest.approx(forest.model_.predict(feats[60:100]).mean())
    assert attr.completeness_gap < 1e-6
    # explain_forest picks interventional when given background windows
    auto = explain_forest(forest, x[:10], x[60:100])
    assert auto.settings["perturbation"] == "interventional"
    np.testing.assert_allclose(auto.values, attr.values, atol=1e-9)


def test_fold_to_sensors_sums_each_sensors_features() -> None:
    vals = np.array([[1.0, 2.0, 10.0, 20.0, 100.0]])
    names = ["a__last", "a__mean", "b__last", "b__std", "c__max"]
    folded, sensors = fold_to_sensors(vals, names)
    assert sensors == ["a", "b", "c"]
    np.testing.assert_array_equal(folded, [[3.0, 30.0, 100.0]])


def test_summary_and_heatmap_figures(tmp_path) -> None:
    from matplotlib.figure import Figure

    from pdmlens.report.attribution_plots import (
        dot_summary,
        importance_bar,
        shap_summary,
        time_sensor_heatmap,
    )

    net = LastStepSensor2()
    attr = explain_lstm(net, windows(6, 5, 4, 0), windows(4, 5, 4, 1), nsamples=4)
    for fig in (
        importance_bar(attr),
        dot_summary(attr, top=3),
        shap_summary(attr),
        time_sensor_heatmap(attr, 0),
        time_sensor_heatmap(attr, [0, 1, 2]),
    ):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / "f.png")
    bars = importance_bar(attr).axes[0].patches
    assert len(bars) == 4 and max(b.get_width() for b in bars) == pytest.approx(
        attr.global_importance().max()
    )
    heat = time_sensor_heatmap(attr, 0).axes[0].images[0]
    assert heat.get_array().shape == (4, 5)  # sensor x time
    assert heat.norm.vcenter == 0.0
    forest, x = toy_forest()
    with pytest.raises(ValueError, match="no time axis"):
        time_sensor_heatmap(explain_forest(forest, x[:5]))


def test_select_background_draws_healthy_windows() -> None:
    import pandas as pd

    from pdmlens.data.windows import WindowDataset

    frame = pd.DataFrame(
        {
            "unit": ["a"] * 6 + ["b"] * 4,
            "time": list(range(6)) + list(range(4)),
            "s": np.arange(10, dtype=float),
            "rul": [125, 125, 125, 2, 1, 0, 125, 125, 1, 0],
        }
    )
    ds = WindowDataset(frame, ["s"], 2, target="rul")
    bg = select_background(ds, 3, "healthy", seed=0, rul_cap=125)
    assert bg.shape == (3, 2, 1)
    # healthy windows end at rows 0, 1, 2, 6, 7 (the first window of a unit is edge-padded)
    ends = bg[:, -1, 0]
    assert set(ends.tolist()) <= {0.0, 1.0, 2.0, 6.0, 7.0}
    assert select_background(ds, 20, "random").shape == (len(ds), 2, 1)
    with pytest.raises(ValueError, match="kind"):
        select_background(ds, 2, "sick")


def test_torch_threads_hold_one_thread_then_return_to_the_default() -> None:
    """Held, not saved and restored: afterwards the thread is at the process default, not at
    whatever it saw (in a fresh thread: the module's fixture holds one thread here)."""
    import threading

    from pdmlens.explain.attributions import torch_threads
    from pdmlens.runtime.threads import DEFAULT_THREADS, budget_state

    seen: dict = {}

    def body() -> None:
        torch.set_num_threads(DEFAULT_THREADS + 1)  # what it sees, set behind its back
        with torch_threads(1):
            seen["inside"] = torch.get_num_threads()
        seen["after"] = torch.get_num_threads()
        attr = explain_lstm(
            LastStepSensor2(), windows(2, 3, 4, 0), windows(2, 3, 4, 1), nsamples=2, num_threads=1
        )
        seen["settings"] = attr.settings["num_threads"]
        seen["after_explain"] = torch.get_num_threads()

    t = threading.Thread(target=body)
    t.start()
    t.join(60)
    assert seen == {
        "inside": 1,
        "after": DEFAULT_THREADS,
        "settings": 1,
        "after_explain": DEFAULT_THREADS,
    }
    assert budget_state() == (1, 1)  # only this module's fixture
