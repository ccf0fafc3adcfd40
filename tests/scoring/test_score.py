"""Scoring new data (pdmlens.scoring): one tiny run trained through the steps with fault
mode 2 held out, its bundle, then scoring: reproduction of the evaluate step to the bit,
the alert rule, the two kinds of novelty, short histories and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdmlens.errors import DataValidationError
from pdmlens.scoring import alert_levels, score_fleet
from pdmlens.scoring.score import novelty_kind


def test_scoring_the_test_split_reproduces_evaluate_to_the_bit(run: dict, test_fleet) -> None:
    import json

    from pdmlens import metrics as M
    from pdmlens.data.prepare import PreparedData

    bundle = run["bundle"]
    table = score_fleet(bundle, test_fleet, explain="none").table.set_index("unit")
    # evaluate predicts each unit's last window (its test metrics) ...
    data = PreparedData.load(run["root"] / "prepare")
    lw = data.windows("test", run["cfg"].window, "rul_raw", last_only=True)
    units = [str(u) for u in lw.window_units]
    assert sorted(units) == sorted(table.index) and len(units) == 8
    metrics = json.loads((run["root"] / "evaluate" / "output.json").read_text())["metrics"]
    for model, est, dtype in (
        ("lstm", bundle.lstm, np.float32),
        ("forest", bundle.forest, np.float64),
    ):
        ours = table.loc[units, f"rul_{model}"].to_numpy()
        assert np.array_equal(ours, np.asarray(est.predict(lw), dtype=np.float64)), model
        rep = M.regression_report(ours.astype(dtype), lw.window_targets, run["cfg"].prepare.rul_cap)
        assert rep["rmse"] == metrics[f"{model}_test_rmse"], model
    # ... and writes every window's predictions (the last one per unit: the same windows)
    ev = pd.read_parquet(run["root"] / "evaluate" / "predictions.parquet")
    last = ev.groupby("unit", sort=False).tail(1).set_index("unit")
    assert (table.loc[last.index, "time"].to_numpy() == last["time"].to_numpy()).all()
    np.testing.assert_allclose(table.loc[last.index, "rul_lstm"], last["lstm"], atol=1e-4)
    assert np.array_equal(table.loc[last.index, "rul_forest"], last["forest"])


def test_table_explains_in_cycles_and_sorts_by_urgency(run: dict, test_fleet) -> None:
    t = score_fleet(run["bundle"], test_fleet).table
    order = pd.Categorical(t["alert"], ["act", "watch", "ok"], ordered=True).codes
    assert (np.diff(order) >= 0).all()
    assert t["top1_sensor"].str.startswith("sensor_").all()  # age and settings kept apart
    assert t["shap_age"].notna().all()
    assert (t["top1_shap"].abs() >= t["top2_shap"].abs()).all()
    assert t["forest_agrees"].between(0, 1).all()
    assert set(t["health_stage"]) <= {"critical (<30)", "degrading (30-75)", "healthy (>=75)"}
    assert t["novelty_pct_input"].between(0, 100).all()


def test_alert_rule_levels() -> None:
    table = pd.DataFrame(
        {
            "rul_lstm": [20.0, 50.0, 100.0, 100.0, 100.0, 31.0],
            "rul_forest": [90.0, 55.0, 120.0, 100.0, 100.0, 61.0],
            "novel": [False, False, False, True, False, False],
            "novelty_kind": ["familiar", "familiar", "familiar", "new_fault", "familiar", "x"],
        }
    )
    level, reason = alert_levels(table, "rul", horizon=30)
    assert list(level) == ["act", "watch", "ok", "watch", "ok", "watch"]
    assert reason[0] == "predicted RUL 20 <= 30"
    assert "novel (new fault)" in reason[3]
    assert reason[2] == ""


def test_novelty_kind_rule() -> None:
    kinds = novelty_kind(np.array([True, True, False, False]), np.array([True, False, True, False]))
    assert list(kinds) == ["new_baseline", "new_baseline", "new_fault", "familiar"]


def test_new_fault_and_new_baseline_are_told_apart(run: dict) -> None:
    from pdmlens.scoring.experiment import run_experiment

    _, shares, auroc = run_experiment(run["bundle"], [2], n_units=20, offset=5.0)
    s = shares[shares["layer"] == "input"].set_index("group")
    assert s.loc["new_fault", "as_new_fault"] >= s.loc["familiar", "as_new_fault"] + 0.4
    assert s.loc["new_baseline", "as_new_baseline"] >= 0.8
    assert s.loc["new_baseline", "as_new_fault"] <= 0.1
    a = auroc.set_index("layer")
    assert a.loc["input", "auroc_new_fault"] > 0.8
    assert a.loc["input", "auroc_new_baseline"] > 0.9


def test_short_history_is_scored_and_marked(run: dict, test_fleet) -> None:
    units = test_fleet["unit"].unique()
    short = test_fleet[test_fleet["unit"] == units[0]].head(7)
    frame = pd.concat([short, test_fleet[test_fleet["unit"] == units[1]]], ignore_index=True)
    t = score_fleet(run["bundle"], frame, explain="none").table.set_index("unit")
    assert bool(t.loc[units[0], "short_history"]) and t.loc[units[0], "history"] == 7
    assert not bool(t.loc[units[1], "short_history"])
    assert np.isfinite(t.loc[units[0], "rul_lstm"])


def test_drifted_sensor_is_scored_and_flagged_novel(run: dict, test_fleet) -> None:
    sensor = run["bundle"].info["sensors"][0]
    frame = test_fleet.copy()
    frame[sensor] = frame[sensor] * 1.8 + 32.0  # a sensor now reports in other units
    t = score_fleet(run["bundle"], frame, explain="none").table
    assert np.isfinite(t["rul_lstm"]).all()
    assert t["novel"].all() and (t["novelty_kind"] == "new_baseline").all()
    assert (t["alert"] != "ok").all()  # never silently trusted


def _error(run: dict, frame: pd.DataFrame) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        score_fleet(run["bundle"], frame, explain="none", file="fleet.csv")
    return info.value


def test_missing_sensor_is_named(run: dict, test_fleet) -> None:
    sensor = run["bundle"].info["sensors"][1]
    err = _error(run, test_fleet.drop(columns=[sensor]))
    assert err.column == sensor and err.file == "fleet.csv"
    assert "missing" in str(err)


def test_renamed_column_is_named_with_its_new_name(run: dict, test_fleet) -> None:
    sensor = run["bundle"].info["sensors"][2]
    err = _error(run, test_fleet.rename(columns={sensor: sensor + "_new"}))
    assert err.column == sensor
    assert f"{sensor}_new" in str(err) and "renamed" in str(err)


def test_non_numeric_value_is_named_by_column_row_and_unit(run: dict, test_fleet) -> None:
    sensor = run["bundle"].info["sensors"][0]
    frame = test_fleet.copy()
    frame[sensor] = frame[sensor].astype(object)
    frame.loc[5, sensor] = "n/a"
    err = _error(run, frame)
    assert err.column == sensor and err.row == 6  # 1-based data row in the file
    assert "'n/a'" in str(err)


def test_unit_with_no_rows_is_named(run: dict, test_fleet) -> None:
    frame = test_fleet.copy()
    frame["unit"] = pd.Categorical(frame["unit"], categories=[*frame["unit"].unique(), "ghost"])
    err = _error(run, frame)
    assert err.unit == "ghost" and "no rows" in str(err)


def test_bundle_round_trip_keeps_calibration(run: dict, tmp_path: Path) -> None:
    b = run["bundle"]
    assert b.layers == [0, 1, 2]
    assert set(b.info["thresholds"]) == {"0", "1", "2"}
    assert b.required_columns and "age" not in b.required_columns
    assert b.background.shape[1:] == (20, len(b.features))


def test_horizon_task_scores_probabilities_and_explains_in_cycles(tmp_path: Path) -> None:
    from pdmlens import steps
    from pdmlens.config import RunConfig
    from pdmlens.data.sources import load_source
    from pdmlens.scoring import ScoringBundle, build_bundle
    from tests.scoring.conftest import TINY

    cfg = RunConfig().with_overrides(
        [*TINY, "model.task=horizon", "model.lstm.epochs=1", "data.simulator.n_units=20"]
    )
    steps.ingest(cfg, tmp_path / "i")
    steps.prepare(cfg, tmp_path / "i", tmp_path / "p")
    steps.train_lstm(cfg, tmp_path / "p", tmp_path / "l")
    steps.train_forest(cfg, tmp_path / "p", tmp_path / "f")
    build_bundle(cfg, tmp_path / "p", tmp_path / "l", tmp_path / "f", tmp_path / "b")
    bundle = ScoringBundle.load(tmp_path / "b")
    fleet = load_source(cfg.data, seed=cfg.seed).test
    t = score_fleet(bundle, fleet).table
    assert t["p_fail_lstm"].between(0, 1).all() and t["p_fail_forest"].between(0, 1).all()
    assert t["rul_forest"].isna().all() and np.isfinite(t["rul_lstm"]).all()
    # the LSTM's P(failure) is its RUL through the stated sigmoid
    est = bundle.lstm
    p = 1 / (1 + np.exp(-(est.horizon + 0.5 - t["rul_lstm"]) / est.horizon_scale_))
    np.testing.assert_allclose(p, t["p_fail_lstm"], rtol=1e-4, atol=1e-5)
    assert t["top1_sensor"].str.startswith("sensor_").all()
    assert (np.diff(1 - t["p_fail_lstm"][t["alert"] == "ok"].to_numpy()) >= 0).all()
