"""Predicted-vs-true figure: the truth capped like the metrics, one RMSE, machines named."""

from __future__ import annotations

import numpy as np

from pdmlens.report.model_plots import predicted_vs_true


def test_truth_is_capped_and_the_title_rmse_is_against_it() -> None:
    true = np.array([200.0, 50.0, 10.0])
    pred = np.array([125.0, 50.0, 14.0])  # perfect on the capped truth but for 4 cycles
    fig = predicted_vs_true(pred, true, cap=125, title="lstm")
    ax = fig.axes[0]
    rmse = np.sqrt(16 / 3)
    assert f"RMSE {rmse:.1f}" in ax.get_title()
    assert "capped at 125" in ax.get_title()
    xs = ax.collections[0].get_offsets()[:, 0]
    assert list(xs) == [125.0, 50.0, 10.0]
    assert "(cycles)" in ax.get_xlabel() and "(cycles)" in ax.get_ylabel()


def test_both_models_and_the_worst_machines_are_labelled() -> None:
    true = np.array([100.0, 80.0, 60.0, 40.0])
    preds = {"lstm": np.array([100.0, 80.0, 60.0, 90.0]), "forest": np.array([70.0, 80, 60, 40])}
    fig = predicted_vs_true(preds, true, cap=125, units=["m1", "m2", "m3", "m4"], n_labels=1)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["m4", "m1"]  # each model's largest error
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "lstm (RMSE 25.0)" in legend and "forest (RMSE 15.0)" in legend


def test_trajectories_show_the_chosen_machines_against_the_capped_truth() -> None:
    from pdmlens.report.model_plots import rul_trajectories

    units = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    times = np.tile([1, 2, 3], 3)
    true = np.array([150.0, 149, 148, 30, 29, 28, 10, 9, 8])
    pred = {"LSTM": true * 0 + 50, "random forest": true * 0 + 60}
    fig = rul_trajectories(
        units, times, pred, true, show=["c", "a"], cap=125, titles={"c": "machine c (late)"}
    )
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["machine c (late)", "machine a"]
    capped = [ln for ln in axes[1].lines if ln.get_label() == "true (capped)"][0]
    assert list(capped.get_ydata()) == [125.0, 125.0, 125.0]
    assert [ln.get_label() for ln in axes[0].lines][-2:] == ["LSTM", "random forest"]
    assert axes[0].get_ylabel() == "RUL (cycles)"
