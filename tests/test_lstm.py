"""LSTM estimator: conventions, exact repeatability for a seed, save/load, both tasks."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from pdmlens.config import RunConfig
from pdmlens.data.windows import WindowDataset
from pdmlens.errors import NotFittedError
from pdmlens.models.lstm import LSTMEstimator, LSTMNet, augment, fit_horizon_scale

FEATURES = ["sensor_a", "sensor_b"]


def _frame(n_units: int = 6, length: int = 25, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_units):
        rul = np.arange(length - 1, -1, -1, dtype=float)
        a = 1.0 - rul / length + rng.normal(0, 0.05, length)
        b = rng.normal(0, 1, length)
        rows.append(
            pd.DataFrame(
                {
                    "unit": f"u{u}",
                    "time": np.arange(1, length + 1),
                    "sensor_a": a,
                    "sensor_b": b,
                    "rul": np.minimum(rul, 15.0),
                    "fails_within_5": (rul <= 5).astype(float),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _data(target: str = "rul"):
    frame = _frame()
    train = frame[frame.unit.isin(["u0", "u1", "u2", "u3"])].reset_index(drop=True)
    val = frame[frame.unit.isin(["u4", "u5"])].reset_index(drop=True)
    return (
        WindowDataset(train, FEATURES, 6, target=target),
        WindowDataset(val, FEATURES, 6, target=target),
    )


def _small(**kw) -> LSTMEstimator:
    params = dict(
        hidden_size=4,
        num_layers=2,
        dropout=0.1,
        epochs=2,
        batch_size=16,
        lr=1e-2,
        device="cpu",
        rul_cap=15.0,
        seed=3,
        num_threads=1,
    )
    params.update(kw)
    return LSTMEstimator(**params)


def test_conventions_params_untouched_and_unfitted_raises():
    est = _small(clip_grad=None)
    assert est.get_params()["clip_grad"] is None and est.get_params()["epochs"] == 2
    with pytest.raises(NotFittedError):
        est.predict(np.zeros((1, 6, 2), np.float32))
    with pytest.raises(NotFittedError):
        est.save("never.pt")
    train, val = _data()
    assert est.fit(train, val) is est
    assert est.get_params() == _small(clip_grad=None).get_params()
    assert est.n_features_in_ == 2 and list(est.feature_names_in_) == FEATURES
    assert isinstance(est.network_, LSTMNet) and isinstance(est.network_.lstm, torch.nn.LSTM)
    assert est.network_.lstm.batch_first and isinstance(est.network_.head, torch.nn.Linear)
    assert len(est.history_) == 2 and 0 <= est.best_epoch_ < 2
    assert est.device_ == torch.device("cpu")
    with pytest.raises(ValueError, match="task"):
        LSTMEstimator(task="nope").fit(train)


def test_same_seed_same_bits_different_seed_differs():
    train, val = _data()
    x = val.all_windows()
    a = _small().fit(train, val).predict(x)
    b = _small().fit(train, val).predict(x)
    c = _small(seed=4).fit(train, val).predict(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # fitting leaves the caller's global RNG alone
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _small(epochs=1).fit(train)
    torch.testing.assert_close(torch.rand(3), expected)


def test_level_noise_shifts_whole_windows_and_repeats_for_a_seed():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    assert augment(x) is x
    torch.manual_seed(0)
    shifted = augment(x, level_noise=1.0) - x
    # one offset per window and feature, the same at every step, different across windows
    torch.testing.assert_close(shifted, shifted[:, :1].expand_as(shifted))
    assert shifted[:, 0].abs().min() > 0 and not torch.equal(shifted[0, 0], shifted[1, 0])
    jitter = augment(x, noise=1.0) - x
    assert jitter.std(dim=1).min() > 0  # step noise varies along time
    # the augmentation is part of the seeded training: same seed, same bits; and it is
    # used (the fitted weights differ from those trained without it)
    train, val = _data()
    xv = val.all_windows()
    a = _small(level_noise=0.5, input_noise=0.1).fit(train, val).predict(xv)
    b = _small(level_noise=0.5, input_noise=0.1).fit(train, val).predict(xv)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _small().fit(train, val).predict(xv))


def test_predict_accepts_arrays_tensors_datasets_any_length():
    train, val = _data()
    est = _small().fit(train, val)
    from_ds = est.predict(val)
    x = val.all_windows()
    np.testing.assert_array_equal(from_ds, est.predict(x))
    np.testing.assert_array_equal(from_ds, est.predict(torch.from_numpy(x)))
    # network_(x) gives the same cycles as predict
    with torch.inference_mode():
        net_out = est.network_(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net_out, from_ds, rtol=1e-6)
    longer = np.concatenate([x[:, :1]] * 4 + [x], axis=1)
    assert est.predict(longer).shape == (len(x),)
    with pytest.raises(ValueError, match="windows"):
        est.predict(np.zeros((2, 6, 3), np.float32))


def test_save_load_predicts_identically(tmp_path):
    train, val = _data()
    est = _small().fit(train, val)
    path = est.save(tmp_path / "m" / "lstm.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["feature_names"] == FEATURES
    back = LSTMEstimator.load(path)
    assert back.get_params() == est.get_params()
    assert back.history_ == est.history_ and back.best_epoch_ == est.best_epoch_
    x = val.all_windows()
    np.testing.assert_array_equal(back.predict(x), est.predict(x))
    np.testing.assert_array_equal(back.predict(x[:, 2:]), est.predict(x[:, 2:]))


def test_early_stopping_restores_best_epoch_and_reports_progress(caplog):
    train, val = _data()
    seen: list[tuple[int, dict]] = []
    est = _small(epochs=30, patience=2, lr=0.05, schedule="constant")
    with caplog.at_level(logging.INFO, logger="pdmlens.models.lstm"):
        est.fit(train, val, callback=lambda e, m: seen.append((e, m)))
    hist = est.history_
    assert [e for e, _ in seen] == list(range(len(hist)))
    assert {"train_loss", "val_loss", "val_rmse", "lr", "seconds"} <= set(seen[0][1])
    best = min(range(len(hist)), key=lambda i: hist[i]["val_loss"])
    assert est.best_epoch_ == best
    if len(hist) < 30:  # stopped early: exactly `patience` epochs without improvement
        assert len(hist) == best + 1 + 2
    # the restored weights are the best epoch's: their validation loss is the best one
    pred = est.predict(val)
    mse_scaled = float(np.mean(((pred - val.window_targets) / 15.0) ** 2))
    assert mse_scaled == pytest.approx(hist[best]["val_loss"], rel=1e-4)
    assert any("epoch 1/30" in r.getMessage() for r in caplog.records)


def test_rul_learns_the_trend():
    train, val = _data()
    est = _small(hidden_size=8, epochs=40, lr=2e-2, dropout=0.0).fit(train, val)
    pred = est.predict(val)
    truth = val.window_targets
    constant = np.sqrt(np.mean((truth - truth.mean()) ** 2))
    assert np.sqrt(np.mean((pred - truth) ** 2)) < 0.6 * constant


def test_horizon_task_learns_the_rul_and_gives_probabilities():
    train, val = _data()  # the target is the RUL; the label (RUL <= 5) is derived
    est = _small(task="horizon", horizon=5, horizon_cap=2.0, epochs=3).fit(train, val)
    p = est.predict(val)
    assert p.dtype == np.float32 and np.all((p > 0) & (p < 1))
    proba = est.predict_proba(val)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba[:, 1], p)
    # the network regresses the RUL capped at horizon_cap horizons (10 cycles here) ...
    assert est._scale() == 10.0 and est.history_[0]["val_rmse"] > 0
    rul = est._outputs(val, raw=True).astype(np.float64) * 10.0
    # ... and P(fail within 5) = sigmoid((5.5 - RUL) / s), s fitted on the validation units
    s = est.horizon_scale_
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(5.5 - rul) / s)), rtol=1e-5, atol=1e-6)
    assert s == fit_horizon_scale(rul.astype(np.float32), val.window_targets, 5)
    # the decision is the horizon itself: threshold 0.5 <=> predicted RUL <= 5.5
    assert est.threshold_ == 0.5
    np.testing.assert_array_equal(est.predict_label(val), (p >= 0.5).astype(int))
    fixed = _small(task="horizon", horizon=5, epochs=1, threshold=0.3).fit(train, val)
    assert fixed.threshold_ == 0.3
    assert fixed.alarm_rule().endswith("; an alarm at 0.3")  # no RUL cut at another threshold
    assert ", the scale fitted on the validation units;" in fixed.alarm_rule()
    # without validation units the scale is fitted on the training units, and says so
    no_val = _small(task="horizon", horizon=5, epochs=1).fit(train)
    assert ", the scale fitted on the training units;" in no_val.alarm_rule()
    given = _small(task="horizon", horizon=5, epochs=1, horizon_scale=1.5).fit(train, val)
    assert given.horizon_scale_ == 1.5  # a given scale is used, not fitted
    assert given.alarm_rule("the scale given") == (
        "P(failure within 5 cycles) = sigmoid((5.5 - predicted RUL) / 1.50), the scale given; "
        "an alarm at 0.5, i.e. predicted RUL <= 5.5"
    )
    with pytest.raises(ValueError):
        _small().fit(*_data()).predict_proba(val)


def test_horizon_task_refuses_a_label_target_and_a_cap_below_the_horizon():
    with pytest.raises(ValueError, match="remaining useful life.*fails_within_5"):
        _small(task="horizon", horizon=5).fit(*_data("fails_within_5"))
    with pytest.raises(ValueError, match="never exceeds the horizon"):
        _small(task="horizon", horizon=20).fit(*_data())  # the RUL is capped at 15
    with pytest.raises(ValueError, match="horizon_cap"):
        _small(task="horizon", horizon=5, horizon_cap=1.0).fit(*_data())
    rul_model = _small().fit(*_data())
    with pytest.raises(ValueError, match="horizon task"):
        rul_model.set_horizon_scale(2.0)
    with pytest.raises(ValueError, match="horizon task"):
        rul_model.alarm_rule()


def test_fit_horizon_scale_is_the_log_loss_minimiser():
    # z = h + 0.5 - rul = (1, 1, -1, -1), labels (1, 0, 0, 0): the gradient
    # sum((sigmoid(w z) - y) z) = 4 sigmoid(w) - 3 vanishes at w = ln 3, s = 1 / ln 3
    rul = np.array([4.5, 4.5, 6.5, 6.5])
    true = np.array([2.0, 9.0, 9.0, 9.0])
    assert fit_horizon_scale(rul, true, 5) == pytest.approx(1 / np.log(3), rel=1e-9)
    # perfectly separated: as sharp as allowed; one class wrong everywhere: as flat
    assert fit_horizon_scale(rul, np.array([2.0, 2.0, 9.0, 9.0]), 5) == 0.05
    assert fit_horizon_scale(rul, np.array([9.0, 9.0, 2.0, 2.0]), 5) == 1000.0


def test_horizon_model_saves_and_loads_and_reads_models_saved_before_the_shift(tmp_path):
    train, val = _data()
    est = _small(task="horizon", horizon=5).fit(train, val)
    path = est.save(tmp_path / "h.pt")
    back = LSTMEstimator.load(path)
    assert back.horizon_scale_ == est.horizon_scale_
    x = val.all_windows()
    np.testing.assert_array_equal(back.predict(x), est.predict(x))
    rul = _small().fit(train, val)
    payload = torch.load(rul.save(tmp_path / "r.pt"), weights_only=True)
    del payload["state_dict"]["out_shift"]
    torch.save(payload, tmp_path / "old.pt")
    np.testing.assert_array_equal(
        LSTMEstimator.load(tmp_path / "old.pt").predict(x), rul.predict(x)
    )


def test_from_config_uses_run_parameters():
    cfg = RunConfig().with_overrides(
        {"seed": 7, "model.lstm.hidden_size": 5, "prepare.rul_cap": 99.0, "model.task": "horizon"}
    )
    est = LSTMEstimator.from_config(cfg)
    assert (est.seed, est.hidden_size, est.rul_cap, est.task) == (7, 5, 99.0, "horizon")
    assert (est.horizon, est.horizon_cap) == (30, 3.0)
    assert LSTMEstimator.from_config(cfg, task="rul").task == "rul"


def test_average_last_keeps_the_averaged_weights_it_judged():
    train, val = _data()
    plain = _small(epochs=6, patience=0, schedule="constant").fit(train, val)
    avg = _small(epochs=6, patience=0, schedule="constant", average_last=3).fit(train, val)
    # same trajectory (same seed), so training losses agree; the judged models differ
    assert [h["train_loss"] for h in avg.history_] == [h["train_loss"] for h in plain.history_]
    assert avg.history_[0]["val_loss"] == plain.history_[0]["val_loss"]
    assert avg.history_[2]["val_loss"] != plain.history_[2]["val_loss"]
    best = min(range(6), key=lambda i: avg.history_[i]["val_loss"])
    pred = avg.predict(val)
    mse_scaled = float(np.mean(((pred - val.window_targets) / 15.0) ** 2))
    assert mse_scaled == pytest.approx(avg.history_[best]["val_loss"], rel=1e-4)


def test_forget_bias_opens_every_layers_forget_gate():
    net = LSTMNet(3, 4, 2, forget_bias=2.0)
    for layer in range(2):
        b_ih = getattr(net.lstm, f"bias_ih_l{layer}").detach()
        b_hh = getattr(net.lstm, f"bias_hh_l{layer}").detach()
        torch.testing.assert_close(b_ih[4:8] + b_hh[4:8], torch.full((4,), 2.0))
        assert not torch.all(b_ih[:4] == 0)  # the other gates keep PyTorch's initialisation


def test_late_weight_costs_late_errors_more_and_reads_lower():
    out = torch.tensor([0.6, 0.4])
    y = torch.tensor([0.5, 0.5])  # one prediction 0.1 late, one 0.1 early
    plain = _small()._loss_fn()(out, y)
    late = _small(late_weight=3.0)._loss_fn()(out, y)
    assert float(plain) == pytest.approx(0.01)
    assert float(late) == pytest.approx((3 * 0.01 + 0.01) / 2)
    with pytest.raises(ValueError, match="late_weight"):
        _small(late_weight=0.0).fit(*_data())
    # on inputs that say nothing of the RUL (noise alone) the plain network reads about the
    # mean, the late-weighted one lower; validation RMSE is the plain RMSE either way
    frame = _frame(n_units=6, length=25)
    train = WindowDataset(frame[frame.unit != "u5"], ["sensor_b"], 6, target="rul")
    val = WindowDataset(frame[frame.unit == "u5"], ["sensor_b"], 6, target="rul")
    kw = dict(epochs=8, patience=0, dropout=0.0, level_noise=0.0)
    est_plain = _small(**kw).fit(train, val)
    est_late = _small(late_weight=4.0, **kw).fit(train, val)
    assert est_late.predict(val).mean() < est_plain.predict(val).mean() - 0.5
    best = est_late.history_[est_late.best_epoch_]["val_rmse"]
    rmse = np.sqrt(np.mean((est_late.predict(val) - np.minimum(val.window_targets, 15.0)) ** 2))
    assert best == pytest.approx(rmse, rel=1e-4)
