"""Metrics against hand-computed values, and the last-window / 93-engine protocols."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pdmlens import metrics as M
from pdmlens.data.windows import WindowDataset

E = math.e


def test_rmse_mae_by_hand():
    pred, true = [1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 6.0, 4.0]
    # errors 0, 2, -3, 0: squared 0 4 9 0 -> mean 13/4
    assert M.rmse(pred, true) == pytest.approx(math.sqrt(13 / 4))
    assert M.mae(pred, true) == pytest.approx(5 / 4)
    with pytest.raises(ValueError):
        M.rmse([1.0], [1.0, 2.0])


def test_phm08_score_by_hand():
    # h = -13 (early by 13) and h = 10 (late by 10): (e - 1) + (e - 1)
    assert M.phm08_score([0.0, 20.0], [13.0, 10.0]) == pytest.approx(2 * (E - 1))
    # h = 0 costs nothing; late costs more than early by the same amount
    assert M.phm08_score([5.0], [5.0]) == 0.0
    assert M.phm08_score([15.0], [10.0]) > M.phm08_score([5.0], [10.0])
    assert M.phm08_score([15.0], [10.0]) == pytest.approx(math.exp(0.5) - 1)
    assert M.phm08_score([5.0], [10.0]) == pytest.approx(math.exp(5 / 13) - 1)


def test_regression_report_caps_truth_and_drops_unknown():
    pred = [120.0, 10.0, 50.0]
    true = [200.0, 20.0, float("nan")]
    rep = M.regression_report(pred, true, cap=125.0)
    # capped truth 125, 20: errors -5, -10
    assert rep["n"] == 2
    assert rep["rmse"] == pytest.approx(math.sqrt((25 + 100) / 2))
    assert rep["mae"] == pytest.approx(7.5)
    assert rep["bias"] == pytest.approx(-7.5)
    assert rep["score"] == pytest.approx(math.expm1(5 / 13) + math.expm1(10 / 13))
    assert rep["late_20"] == 0.0
    # uncapped truth 200, 20: errors -80, -10
    assert rep["rmse_uncapped"] == pytest.approx(math.sqrt((6400 + 100) / 2))
    assert rep["mae_uncapped"] == pytest.approx(45.0)


def test_late_share_counts_predictions_more_than_20_cycles_late():
    # errors +25 (late), +20 (not more than 20), -30 (early), +21 (late)
    assert M.late_share([125.0, 40.0, 10.0, 51.0], [100.0, 20.0, 40.0, 30.0]) == 0.5
    rep = M.regression_report([125.0, 40.0], [100.0, 200.0], cap=125.0)
    # capped truth 100, 125: errors +25 (late), -85
    assert rep["late_20"] == 0.5


def test_classification_report_by_hand():
    prob = [0.9, 0.8, 0.3, 0.6, 0.1, 0.2]
    label = [1, 1, 1, 0, 0, 0]
    rep = M.classification_report(prob, label, threshold=0.5)
    # predicted positive: 0.9, 0.8, 0.6 -> tp 2, fp 1, fn 1, tn 2
    assert (rep["tp"], rep["fp"], rep["fn"], rep["tn"]) == (2, 1, 1, 2)
    assert rep["precision"] == pytest.approx(2 / 3)
    assert rep["recall"] == pytest.approx(2 / 3)
    assert rep["f1"] == pytest.approx(2 / 3)
    assert rep["accuracy"] == pytest.approx(4 / 6)
    # ROC-AUC: pairs (pos, neg) ranked right: 0.9>all3, 0.8>all3, 0.3>0.1,0.2 -> 8/9
    assert rep["roc_auc"] == pytest.approx(8 / 9)
    # average precision: positives at ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3
    assert rep["pr_auc"] == pytest.approx((1 + 1 + 0.75) / 3)
    one_class = M.classification_report([0.2, 0.7], [0, 0])
    assert math.isnan(one_class["roc_auc"]) and one_class["f1"] == 0.0


def _frame(lengths: list[int], rul_end: list[int]) -> pd.DataFrame:
    rows = []
    for u, (n, end) in enumerate(zip(lengths, rul_end, strict=True)):
        for t in range(n):
            rul = end + n - 1 - t
            rows.append(
                {
                    "unit": f"u{u}",
                    "time": t + 1,
                    "sensor_a": float(t),
                    "rul_raw": float(rul),
                    "fails_within_3": float(rul <= 3),
                }
            )
    return pd.DataFrame(rows)


def test_last_full_windows_protocol_skips_short_units():
    frame = _frame([6, 3, 5], [2, 10, 4])
    ds = M.last_full_windows(frame, ["sensor_a"], 5, "fails_within_3")
    assert ds.window_units.tolist() == ["u0", "u2"]
    assert ds.window_targets.tolist() == [1.0, 0.0]
    rep = M.evaluate_horizon(lambda d: np.array([0.7, 0.6]), ds)
    assert (rep["tp"], rep["fp"], rep["n"]) == (1, 1, 2)
    # sklearn-style [N, 2] probabilities are accepted too
    rep2 = M.evaluate_horizon(lambda d: np.array([[0.3, 0.7], [0.6, 0.4]]), ds)
    assert rep2["accuracy"] == 1.0


def test_evaluate_rul_last_and_all_windows():
    frame = _frame([4, 3], [130, 5])
    last = WindowDataset(frame, ["sensor_a"], 2, target="rul_raw", last_only=True)
    every = WindowDataset(frame, ["sensor_a"], 2, target="rul_raw")
    out = M.evaluate_rul(lambda d: np.full(len(d), 100.0), last, every, cap=125.0)
    # last windows: truth 130 -> 125 and 5: errors -25, 95
    assert out["last"]["rmse"] == pytest.approx(math.sqrt((625 + 95**2) / 2))
    assert out["last"]["rmse_uncapped"] == pytest.approx(math.sqrt((900 + 95**2) / 2))
    # all windows end at rows 1..3 of unit 0 (truth 132, 131, 130 -> 125) and rows 1..2 of
    # unit 1 (truth 6, 5)
    assert out["all"]["n"] == 3 + 2
    assert out["all"]["mae"] == pytest.approx((25 * 3 + 94 + 95) / 5)


def test_best_f1_threshold_by_hand() -> None:
    from pdmlens.metrics import best_f1_threshold

    # sorted: 0.9(1) 0.8(1) 0.6(0) 0.4(1) 0.1(0); F1 at top-2 = 2*2/(2+3) = 0.8,
    # top-4 = 2*3/(4+3) = 0.857 -> threshold between 0.4 and 0.1
    prob = [0.1, 0.4, 0.6, 0.8, 0.9]
    label = [0, 1, 0, 1, 1]
    assert best_f1_threshold(prob, label) == pytest.approx(0.25)
    assert best_f1_threshold([0.2, 0.3], [0, 0]) == 0.5  # one class: the default
    # ties are never split
    assert best_f1_threshold([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.3)
