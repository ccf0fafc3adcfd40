"""Runs named and described in MLflow: the name and description carry the headline numbers
and the machines at risk; experiments open on their runs list; ``pdmlens ui`` prints it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pdmlens.config import TrackingConfig
from pdmlens.report.run_report import description, run_name
from pdmlens.results import AT_RISK_FILE, LATE_FILE, StepResult
from pdmlens.tracking import NOTE_TAG, RUN_NAME_TAG, Tracker
from pdmlens.tracking.ui import runs_list_urls


def _summary() -> dict:
    return {
        "dataset": "cmapss-FD001",
        "data": {"train_units": 80, "val_units": 20, "test_units": 100},
        "evaluated_on": "test",
        "lstm": {"rmse": 25.04, "mae": 18.2, "score": 712.3},
        "forest": {"rmse": 27.31, "mae": 19.9, "score": 901.0},
        "signatures": {"sentence": "No layer beats the raw input: ..."},
    }


def _at_risk(tmp_path: Path) -> StepResult:
    pd.DataFrame(
        {
            "machine": ["test_027", "test_033", "test_001"],
            "alert": ["act", "watch", "ok"],
            "lstm_rul": [1.2, 7.0, 120.0],
            "forest_rul": [3.0, 9.4, 118.0],
            "reason": ["predicted RUL 1 <= 30", "predicted RUL 7 <= 60", ""],
        }
    ).to_csv(tmp_path / AT_RISK_FILE, index=False)
    pd.DataFrame({"machine": ["test_030"], "true_rul": [42.0], "worst_late_by": [71.0]}).to_csv(
        tmp_path / LATE_FILE, index=False
    )
    return StepResult(
        "at_risk",
        str(tmp_path),
        tables={n: str(tmp_path / n) for n in (AT_RISK_FILE, LATE_FILE)},
        info={"alerts": {"act": 1, "watch": 1, "ok": 1}, "late_cycles": 20.0},
    )


def test_run_name_and_description_carry_the_numbers(tmp_path: Path) -> None:
    s = _summary()
    assert run_name(s, "2026-12-06 22:48") == (
        "cmapss-FD001 2026-12-06 22:48 · RMSE LSTM 25.0 / forest 27.3"
    )
    text = description({"at_risk": _at_risk(tmp_path)}, s)
    assert "| LSTM | 25.0 | 18.2 | 712.3 |" in text
    assert "| random forest | 27.3 | 19.9 | 901.0 |" in text
    assert "More accurate on RMSE: LSTM." in text
    assert "**Machines at risk** (act 1, watch 1, ok 1):" in text
    assert "- machine test_027: act, predicted RUL LSTM 1, forest 3 (predicted RUL 1 <= 30)" in text
    assert "- machine test_033: watch" in text and "test_001" not in text
    assert (
        "**Predicted more than 20 cycles late**: 1 of 3; worst: machine test_030 (true 42, " in text
    )
    assert "No layer beats the raw input" in text
    assert "machines_at_risk.csv" in text and "report.html" in text


def test_experiments_open_on_runs_and_ui_prints_the_runs_list(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(TrackingConfig(uri=uri))
    exp_id = tracker.ensure_experiment("pdmlens-simulated")
    exp = tracker.client.get_experiment(exp_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment made before the tag existed gets it when a run opens in it
    old = tracker.client.create_experiment("pdmlens-old")
    assert "mlflow.experimentKind" not in tracker.client.get_experiment(old).tags
    tracker.ensure_experiment("pdmlens-old")
    assert tracker.client.get_experiment(old).tags["mlflow.experimentKind"]
    urls = dict(runs_list_urls(uri, "http://127.0.0.1:5000"))
    assert urls["pdmlens-simulated"] == f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs"
    assert "Default" not in urls
    run = tracker.start_parent("pdmlens-simulated", "running")
    tracker.describe(run, name="a name", note="**LSTM** 25.0")
    tags = tracker.client.get_run(run).data.tags
    assert tags[RUN_NAME_TAG] == "a name" and tags[NOTE_TAG] == "**LSTM** 25.0"
    assert tracker.client.get_run(run).info.run_name == "a name"
