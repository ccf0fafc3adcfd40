"""The Task: each task's decision rule, headline metric and direction, and its scoring on
hand-made numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from pdmlens.config import RunConfig
from pdmlens.task import HORIZON, RUL, TASKS, Task, task_of, task_scored_by


def test_names_resolve_to_the_two_tasks_and_nothing_else() -> None:
    assert Task.from_name("rul") is RUL and Task.from_name("horizon") is HORIZON
    assert list(TASKS) == ["rul", "horizon"]
    with pytest.raises(ValueError, match="task must be one of"):
        Task.from_name("RUL")
    assert task_of(RunConfig()) is RUL
    assert task_of(RunConfig().with_overrides(["model.task=horizon"])) is HORIZON


def test_headline_metric_and_direction() -> None:
    assert (RUL.headline, RUL.higher_is_better, RUL.classifies) == ("rmse", False, False)
    assert (HORIZON.headline, HORIZON.higher_is_better, HORIZON.classifies) == (
        "all_pr_auc",
        True,
        True,
    )
    assert RUL.headline_label == "RMSE" and RUL.headline_unit == "cycles"
    assert HORIZON.headline_label == "PR-AUC (all test windows)"
    # a run summary's model section says which task it was scored on
    assert task_scored_by({"rmse": 1.0, "mae": 2.0}) is RUL
    assert task_scored_by(["f1", "all_pr_auc"]) is HORIZON
    with pytest.raises(ValueError):
        task_scored_by(["f1"])


def test_decision_rule() -> None:
    assert RUL.better(10.0, 12.0) and not RUL.better(12.0, 10.0)
    assert HORIZON.better(0.9, 0.8) and not HORIZON.better(0.8, 0.9)
    assert not RUL.better(1.0, 1.0) and not HORIZON.better(1.0, 1.0)
    assert RUL.verdict(10.0, 12.0) == "LSTM" and RUL.verdict(12.0, 10.0) == "random forest"
    assert HORIZON.verdict(0.9, 0.8) == "LSTM" and HORIZON.verdict(0.8, 0.9) == "random forest"
    assert RUL.verdict(1.0, 1.0) == "neither" and HORIZON.verdict(None, 0.5) is None


def test_targets_per_split() -> None:
    data = SimpleNamespace(horizon_col="fails_within_30")
    assert RUL.target(data) == "rul" and RUL.lstm_target == "rul"
    assert RUL.eval_target(data, "test") == "rul_raw" and RUL.eval_target(data, "val") == "rul"
    assert HORIZON.target(data) == HORIZON.eval_target(data, "test") == "fails_within_30"
    assert HORIZON.lstm_target == "rul"  # the LSTM learns the RUL for both tasks


def _windows(targets: list[float]) -> SimpleNamespace:
    return SimpleNamespace(window_targets=np.asarray(targets, dtype=np.float64))


def test_rul_scoring_on_hand_made_numbers() -> None:
    last = _windows([10.0, 20.0])
    every = _windows([10.0, 20.0, 30.0, 40.0])
    last_rep, all_rep = RUL.score(
        lambda w: np.zeros(len(w.window_targets)),
        last,
        np.array([13.0, 16.0]),  # errors +3, -4
        np.array([10.0, 20.0, 30.0, 42.0]),  # one error, +2
        every,
        threshold=0.5,
        cap=125.0,
    )
    assert last_rep["rmse"] == pytest.approx(math.sqrt((9 + 16) / 2))
    assert last_rep["mae"] == pytest.approx(3.5)
    assert last_rep["n"] == 2
    assert all_rep["rmse"] == pytest.approx(1.0) and all_rep["n"] == 4
    # without the last windows' predictions it predicts them itself
    rep, _ = RUL.score(lambda w: w.window_targets + 1, last, None, np.zeros(4), every, 0.5, 125.0)
    assert rep["rmse"] == pytest.approx(1.0)


def test_horizon_scoring_on_hand_made_numbers() -> None:
    every = _windows([0, 0, 1, 1])
    last = every
    # perfectly ranked, alarms at 0.5: one false negative (0.4 for a failing window)
    last_rep, all_rep = HORIZON.score(
        lambda w: np.array([0.1, 0.2, 0.4, 0.9]),
        last,
        None,
        np.array([0.1, 0.6, 0.4, 0.9]),
        every,
        threshold=0.5,
        cap=125.0,
    )
    assert last_rep["precision"] == 1.0 and last_rep["recall"] == 0.5
    assert last_rep["roc_auc"] == 1.0
    assert all_rep["precision"] == 0.5 and all_rep["recall"] == 0.5
    assert all_rep["roc_auc"] == pytest.approx(0.75)


def test_which_windows_are_near_failure_and_healthy() -> None:
    order = np.array([3, 1, 0, 2])  # ascending target
    assert RUL.near_and_healthy(order) == (3, 2)  # smallest RUL is nearest to failure
    assert HORIZON.near_and_healthy(order) == (2, 3)  # label 1 is nearest to failure
    t = np.array([5.0, 125.0, 80.0])
    np.testing.assert_array_equal(RUL.degrading(t, 125.0), [True, False, True])
    assert HORIZON.degrading(np.array([0.0, 1.0]), 125.0) is None
    np.testing.assert_array_equal(RUL.healthy_mask(t, 125.0), [False, True, False])
    np.testing.assert_array_equal(RUL.healthy_mask(t, None), [False, True, False])
    np.testing.assert_array_equal(HORIZON.healthy_mask(np.array([0.0, 1.0]), 125), [True, False])
    assert RUL.near_failure_rul(30) == 30.0 and HORIZON.near_failure_rul(30) is None
    assert RUL.describe_target(12.4) == "true RUL 12"
    assert HORIZON.describe_target(1.0) == "fails within the horizon: yes"
