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
