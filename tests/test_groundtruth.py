"""Precision@k of sensor rankings against the simulator's true fault sensors."""

from __future__ import annotations

import numpy as np
import pytest

from pdmlens.explain.attributions import Attribution
from pdmlens.explain.groundtruth import (
    deviation_scores,
    groundtruth_precision,
    precision_at_k,
    unit_precision,
)


def test_precision_at_k_hand_made() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.3],  # ranking 0, 2, 3, 1
            [0.1, -0.9, 0.5, 0.3],
        ]
    )  # |.|: ranking 1, 2, 3, 0
    truth = np.array([[True, False, False, True], [True, False, False, True]])
    np.testing.assert_allclose(precision_at_k(scores, truth), [0.5, 0.0])
    np.testing.assert_allclose(precision_at_k(scores, truth, k=3), [2 / 3, 1 / 3])
    assert np.isnan(precision_at_k(scores[:1], np.zeros(4, bool))[0])


def test_groundtruth_per_mode_and_unit_with_selection() -> None:
    names = ["s0", "s1", "s2", "s3"]
    values = np.array(
        [
            [5.0, 4.0, 0.0, 0.0],  # unit A (mode m1: s0, s1): precision 1
            [5.0, 0.0, 4.0, 0.0],  # unit A: 0.5
            [0.0, 0.0, 0.0, 9.0],  # unit A, healthy (rul at cap): excluded
            [0.0, 0.0, 1.0, 2.0],  # unit B (mode m2: s3, and s9 unseen -> k = 1): precision 1
            [3.0, 0.0, 1.0, 2.0],  # unit B: 0
            [1.0, 1.0, 1.0, 1.0],  # unit C: fault mode unknown -> excluded
        ]
    )
    attr = Attribution(
        values=values,
        sensor_names=names,
        base_value=0.0,
        predictions=values.sum(1),
        model="forest",
        method="hand",
    )
    units = np.array(["A", "A", "A", "B", "B", "C"])
    rul = np.array([10.0, 50.0, 125.0, 20.0, 30.0, 5.0])
    modes = {"A": "m1", "B": "m2"}
    sensors = {"m1": ["s0", "s1"], "m2": ["s3", "s9"]}
    per_unit = unit_precision(attr, units, modes, sensors, rul=rul, rul_max=125.0)
    assert list(per_unit["unit"]) == ["A", "B"]
    assert list(per_unit["k"]) == [2, 1]
    np.testing.assert_allclose(per_unit["precision_sample"], [0.75, 0.5])
    # pooled |attr|: A = [5, 2, 2, 0] -> top2 {s0, s1 (tie with s2, sensor order)} -> 1.0
    # B = [1.5, 0, 1, 2] -> top1 s3 -> 1.0
    np.testing.assert_allclose(per_unit["precision_unit"], [1.0, 1.0])
    table = groundtruth_precision(attr, units, modes, sensors, rul=rul, rul_max=125.0)
    assert list(table["fault_mode"]) == ["m1", "m2", "all"]
    np.testing.assert_allclose(table["precision_sample"], [0.75, 0.5, 0.625])
    assert list(table["n_samples"]) == [2, 2, 4]
    assert table["k"].iloc[0] == 2 and np.isnan(table["k"].iloc[2])
    # without the RUL selection the healthy window of A counts: ranking s3, s0 -> 0.5
    t2 = groundtruth_precision(attr, units, modes, sensors)
    assert t2.set_index("fault_mode").loc["m1", "precision_sample"] == pytest.approx(
        (1.0 + 0.5 + 0.5) / 3
    )


def test_deviation_scores_rank_the_sensors_that_moved() -> None:
    x = np.zeros((1, 8, 3))
    x[0, -5:, 1] = 2.0  # sensor 1 moved over the last 5 steps
    x[0, -5:, 2] = -0.5
    base = np.zeros((8, 3))
    np.testing.assert_allclose(deviation_scores(x, base), [[0.0, 2.0, 0.5]])
    np.testing.assert_allclose(deviation_scores(x, base, last=8), [[0.0, 1.25, 0.3125]])


def test_inputs_that_are_not_sensors_are_left_out_of_the_ranking() -> None:
    # age dominates the attributions; among the sensors the fault sensor still ranks first
    names = ["sensor_a", "sensor_b", "age", "setting_1"]
    values = np.array([[1.0, 0.5, 9.0, 8.0], [0.2, 0.4, 9.0, 8.0]])
    units = np.array(["A", "A"])
    per_unit = unit_precision(values, units, {"A": "m"}, {"m": ["sensor_a"]}, sensor_names=names)
    np.testing.assert_allclose(per_unit["precision_sample"], [0.5])  # 1, then 0
    assert per_unit["top_sensors"].iloc[0] == ["sensor_a"]  # pooled: a 0.6 > b 0.45
    np.testing.assert_allclose(per_unit["precision_unit"], [1.0])
