"""The machines-at-risk and late-predictions tables: exact rows and order on a tiny fleet,
and the report's first sections name the machines in words."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pdmlens.report.risk import late_predictions, machines_at_risk, pick_trajectories


@pytest.fixture()
def preds() -> pd.DataFrame:
    """Four machines, two windows each; the last window is the later time."""
    rows = []
    last = {  # unit: (true, lstm, forest) at the last window
        "m1": (10.0, 12.0, 40.0),  # forest 30 late
        "m2": (200.0, 120.0, 125.0),  # truth capped at 125: fine
        "m3": (5.0, 4.0, 3.0),  # the most urgent
        "m4": (50.0, 95.0, 60.0),  # lstm 45 late
    }
    for unit, (t, lstm, forest) in last.items():
        rows.append({"unit": unit, "time": 1, "true": t + 1, "lstm": 0.0, "forest": 0.0})
        rows.append({"unit": unit, "time": 2, "true": t, "lstm": lstm, "forest": forest})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter


@pytest.fixture()
def scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit": ["m2", "m4", "m1", "m3"],
            "alert": ["ok", "watch", "act", "act"],
            "alert_reason": ["", "novel (new fault)", "predicted RUL 12 <= 30", "x"],
            "novelty_kind": ["familiar", "new_fault", "familiar", "familiar"],
            "top1_sensor": ["s1", "s2", "s3", "s4"],
            "top2_sensor": ["s5", "", "s6", "s7"],
            "forest_top_sensors": ["a", "b", "c", "d"],
            "rul_lstm": [0.0, 0.0, 0.0, 0.0],
            "rul_forest": [0.0, 0.0, 0.0, 0.0],
        }
    )


def test_machines_at_risk_rows_and_urgency_order(preds, scores) -> None:
    table = machines_at_risk(preds, scores, cap=125)
    # act before watch before ok; within act the lower predicted RUL first
    assert table["machine"].tolist() == ["m3", "m1", "m4", "m2"]
    row = table.set_index("machine").loc["m1"]
    assert (row["lstm_rul"], row["forest_rul"], row["disagreement"]) == (12.0, 40.0, 28.0)
    assert row["true_rul"] == 10.0 and row["cycle"] == 2
    assert table.set_index("machine").loc["m2", "true_rul"] == 125.0  # capped
    assert table.set_index("machine").loc["m4", "novelty"] == "new fault"
    assert table["top_sensors"].tolist() == ["s4, s7", "s3, s6", "s2", "s1, s5"]


def test_machines_must_match(preds, scores) -> None:
    with pytest.raises(ValueError, match="different machines"):
        machines_at_risk(preds, scores[scores["unit"] != "m2"])


def test_late_predictions_worst_first_against_capped_truth(preds) -> None:
    late = late_predictions(preds, cap=125)
    assert late["machine"].tolist() == ["m4", "m1"]
    assert late["worst_late_by"].tolist() == [45.0, 30.0]
    assert late.loc[0, "lstm_late_by"] == 45.0 and late.loc[1, "forest_late_by"] == 30.0
    assert late_predictions(preds, cap=125, late=40)["machine"].tolist() == ["m4"]


def test_trajectories_show_the_urgent_then_the_late(preds, scores) -> None:
    risk = machines_at_risk(preds, scores, cap=125)
    late = late_predictions(preds, cap=125)
    assert pick_trajectories(risk, late) == ["m3", "m1", "m4", "m2"]
    assert pick_trajectories(risk, late, n_risk=1, n_late=1) == ["m3", "m4"]


def test_report_names_the_machines_in_words(preds, scores, tmp_path) -> None:
    from pdmlens.report.run_report import risk_sections
    from pdmlens.results import AT_RISK_FILE, LATE_FILE, StepResult

    machines_at_risk(preds, scores, cap=125).to_csv(tmp_path / AT_RISK_FILE, index=False)
    late_predictions(preds, cap=125).to_csv(tmp_path / LATE_FILE, index=False)
    out = StepResult(
        "at_risk",
        str(tmp_path),
        tables={n: str(tmp_path / n) for n in (AT_RISK_FILE, LATE_FILE)},
        info={"alerts": {"act": 2, "watch": 1, "ok": 1}, "late_cycles": 20.0},
    )
    risk, late = risk_sections(out)
    assert risk.title == "Machines at risk"
    assert "Act now on 2 machines: m3, m1." in risk.text and "Watch 1 machine: m4." in risk.text
    assert re.search(
        r"- machine m3: act, predicted to fail in LSTM 4 and forest 3 cycles", risk.text
    )
    assert "Worst first: machine m4 (true 50, LSTM 95, forest 60); machine m1 (true 10" in late.text
    shown = risk.tables[0][1]
    assert shown["machine"].tolist() == ["m3", "m1", "m4", "m2"]
    assert shown.loc[1, "LSTM RUL (cycles)"] == "12.0"
    assert np.array_equal(late.tables[0][1]["worst (cycles)"], ["45.0", "30.0"])


def test_the_at_risk_table_shows_counts_and_timestamps_as_given() -> None:
    """Events and tables give times as timestamps: the report shows them as written, and
    cycle counts without decimals (an events run failed here on formatting a timestamp)."""
    from pdmlens.report.run_report import _readable

    table = pd.DataFrame({"cycle": ["2024-01-03 10:00:00", None], "lstm_rul": [12.345, None]})
    out = _readable(table)
    assert list(out.iloc[:, 0]) == ["2024-01-03 10:00:00", "–"]
    assert list(out.iloc[:, 1]) == ["12.3", "–"]
    assert list(_readable(pd.DataFrame({"cycle": [41.0, 7]})).iloc[:, 0]) == ["41", "7"]
