"""The explorer's pure pieces on tiny hand-made data: the fleet table, stage bins, the
separation verdict, units firing only on new data, the launch form, params -> config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.explorer import analysis as A
from pdmlens.explorer.launch import form_overrides, validate
from pdmlens.explorer.rundata import config_from_params


def test_alert_levels_follow_the_horizon() -> None:
    assert list(A.alert_level(np.array([0.0, 30.0, 30.1, 60.0, 60.1, 200.0]), 30)) == [
        "act",
        "act",
        "watch",
        "watch",
        "ok",
        "ok",
    ]
    from pdmlens.scoring.score import LEVELS

    assert A.ALERTS == LEVELS  # one vocabulary with pdmlens score and the report


def test_fleet_table_takes_each_machines_latest_cycle_sorted_by_urgency() -> None:
    preds = pd.DataFrame(
        {
            "unit": ["a", "a", "b", "b", "c"],
            "time": [1, 2, 1, 2, 5],
            "true": [50.0, 49.0, 300.0, 299.0, 20.0],
            "lstm": [60.0, 55.0, 120.0, 110.0, 40.0],
            "forest": [70.0, 65.0, 100.0, 104.0, 10.0],
        }
    )
    t = A.fleet_table(preds, horizon=30, cap=125)
    assert list(t["machine"]) == ["c", "a", "b"]  # lower prediction 10 < 55 < 104
    assert list(t["cycle"]) == [5, 2, 2]
    assert list(t["true_rul"]) == [20.0, 49.0, 125.0]  # capped
    assert list(t["disagreement"]) == [30.0, 10.0, 6.0]
    assert list(t["alert"]) == ["act", "watch", "ok"]


def test_machine_history_caps_the_truth() -> None:
    preds = pd.DataFrame(
        {
            "unit": ["a", "a"],
            "time": [2, 1],
            "true": [130.0, 131.0],
            "lstm": [1.0, 2.0],
            "forest": [3.0, 4.0],
        }
    )
    h = A.machine_history(preds, "a", cap=125)
    assert list(h["time"]) == [1, 2]
    assert list(h["true_capped"]) == [125.0, 125.0]
    assert list(h["true"]) == [131.0, 130.0]


def _score_table() -> pd.DataFrame:
    """Two machines as ``pdmlens score`` writes them (the scorer's order: act first)."""
    return pd.DataFrame(
        {
            "unit": ["m2", "m1"],
            "time": [40, 200],
            "history": [40, 200],
            "short_history": [False, False],
            "rul_lstm": [12.34, 150.0],
            "rul_forest": [30.0, 140.06],
            "alert": ["act", "ok"],
            "alert_reason": ["predicted RUL 12 <= 20", ""],
            "novelty_kind": ["new_fault", "familiar"],
            "health_stage": ["critical", "healthy"],
            "top1_sensor": ["sensor_b", ""],
            "top1_shap": [-8.25, np.nan],
            "top1_reading": [47.5, np.nan],
            "top2_sensor": ["sensor_a", ""],
            "top2_shap": [1.5, np.nan],
            "top2_reading": [0.25, np.nan],
            "forest_top_sensors": ["sensor_b, sensor_c", ""],
            "forest_agrees": [0.5, np.nan],
            "novelty_pct_input": [50.0, 10.0],
            "novel_input": [False, False],
            "novelty_pct_lstm1": [99.5, 20.0],
            "novel_lstm1": [True, False],
        }
    )


def test_scored_fleet_table_keeps_the_scorers_order_and_names_the_why() -> None:
    t = A.scored_fleet_table(_score_table())
    assert list(t["machine"]) == ["m2", "m1"]
    assert list(t["lstm_rul"]) == [12.3, 150.0] and list(t["forest_rul"]) == [30.0, 140.1]
    assert list(t["disagreement"]) == [17.7, 9.9]
    assert list(t["novelty"]) == ["new fault", "familiar"]
    assert list(t["top_sensors"]) == ["sensor_b, sensor_a", ""]
    assert list(t["why"]) == ["predicted RUL 12 <= 20", ""]
    assert "lstm_p_fail" not in t.columns  # the RUL task has no probabilities


def test_scored_machine_story_tells_prediction_alert_sensors_and_novelty() -> None:
    lines = A.scored_machine_story(_score_table(), "m2")
    assert lines[0] == (
        "m2 at its latest cycle 40 (40 rows of history): LSTM 12 cycles left, "
        "forest 30 cycles left."
    )
    assert lines[1] == "Alert act: predicted RUL 12 <= 20."
    assert "sensor_b -8.2 (reading 47.5); sensor_a +1.5 (reading 0.25)." in lines[2]
    assert (
        lines[3] == "The forest's top sensors: sensor_b, sensor_c (50% of the LSTM's also there)."
    )
    assert lines[4] == (
        "Novelty of its latest window (percentile among validation windows): input 50, "
        "lstm1 100 (novel); kind: new fault; health stage critical."
    )
    assert A.scored_machine_story(_score_table(), "m1")[2].startswith("Not explained")
    with pytest.raises(KeyError, match="m9"):
        A.scored_machine_story(_score_table(), "m9")


def test_parse_bins_accepts_increasing_edges_and_refuses_others() -> None:
    assert A.parse_bins("0, 30; 75,125") == [0.0, 30.0, 75.0, 125.0]
    for bad in ("0, 30", "0, 75, 30", "a, b, c"):
        with pytest.raises(ValueError):
            A.parse_bins(bad)


def _table(nmi: list[float], probe: list[float], base: float) -> pd.DataFrame:
    names = ["input"] + [f"LSTM layer {i}" for i in range(1, len(nmi))]
    return pd.DataFrame(
        {"name": names, "nmi": nmi, "probe_accuracy": probe, "majority_baseline": base},
        index=pd.Index(range(len(nmi)), name="layer"),
    )


def test_verdict_says_when_no_layer_beats_the_raw_input() -> None:
    v = A.separation_verdict(_table([0.5, 0.3, 0.4], [0.9, 0.8, 0.85], 0.5))
    assert v.startswith("No layer beats the raw input")
    assert "accuracy 0.90" in v and "LSTM layer 2, 0.85" in v


def test_verdict_says_when_nothing_beats_guessing_the_commonest_stage() -> None:
    v = A.separation_verdict(_table([0.1, 0.3, 0.4], [0.80, 0.81, 0.79], 0.88))
    assert v.startswith("No layer separates the health stages")
    assert "(0.81)" in v and "(0.88)" in v


def test_verdict_names_the_first_layer_within_tolerance_that_beats_the_raw_input() -> None:
    v = A.separation_verdict(_table([0.1, 0.58, 0.6], [0.5, 0.9, 0.95], 0.4))
    assert v.startswith("LSTM layer 1 is the first layer to separate health stages")
    assert "probe accuracy 0.90 against 0.50 on the raw input" in v


def test_the_page_and_the_report_give_one_verdict() -> None:
    from pdmlens.signatures.layers import separation_verdict

    t = _table([0.1, 0.58, 0.6], [0.5, 0.9, 0.95], 0.4)
    assert A.separation_verdict(t) == separation_verdict(t).sentence


def test_units_firing_only_on_new_data() -> None:
    familiar = np.zeros((20, 3))
    familiar[:, 2] = 1.0  # unit 2 always on
    new = np.zeros((10, 3))
    new[:, 0] = 0.9  # unit 0 on only in the new data
    new[:3, 1] = -0.8  # unit 1 on in 30 % of the new data
    new[:, 2] = 1.0
    t = A.units_firing_only_on(familiar, new, threshold=0.3)
    assert list(t["unit"]) == [0, 1, 2]
    assert list(t["on_new"]) == [1.0, 0.3, 1.0]
    assert list(t["only_new"]) == [True, False, False]


def test_project_2d_is_deterministic_and_two_dimensional() -> None:
    x = np.random.default_rng(0).normal(size=(50, 6))
    a, b = A.project_2d(x), A.project_2d(x.copy())
    assert a.shape == (50, 2)
    np.testing.assert_array_equal(a, b)
    assert A.project_2d(x[:, :1]).shape == (50, 2)


def test_unit_order_puts_the_most_selective_units_first() -> None:
    sel = pd.DataFrame({"layer": [1, 1, 1, 2], "unit": [3, 1, 3, 0], "score": [0.2, 0.5, 0.9, 1.0]})
    assert A.unit_order(sel, 1, 5) == [3, 1, 0, 2, 4]
    assert A.unit_order(None, 1, 3) == [0, 1, 2]


def test_launch_form_becomes_overrides_checked_by_the_schema() -> None:
    form = {
        "dataset": "simulated",
        "window": 20,
        "hidden": "8",
        "epochs": 1,
        "seed": 3,
        "fault_modes": [0, 2],
    }
    ov = form_overrides(form)
    assert ov == [
        "data.source=simulated",
        "window.length=20",
        "model.lstm.hidden_size=8",
        "model.lstm.epochs=1",
        "seed=3",
        "data.simulator.fault_mode_subset=[0, 2]",
    ]
    cfg = validate([], ov)
    assert cfg.window.length == 20 and cfg.data.simulator.fault_mode_subset == [0, 2]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"epochs": 0}, "model.lstm.epochs: Input should be greater than or equal to 1"),
        ({"window": 1}, "window.length: must be at least 2 cycles"),
        ({"seed": -1}, "seed"),
        ({"window": 2.5}, "window.length: 2.5 is not a whole number"),
        ({"hidden": "many"}, "model.lstm.hidden_size: 'many' is not a number"),
        ({"fault_modes": []}, "keep at least one fault mode"),
        ({"fault_modes": [7]}, "fault_mode_subset must name modes in 0..2"),
        ({"dataset": "cmapss", "cmapss_path": "/no/such/folder"}, "folder /no/such/folder"),
    ],
)
def test_bad_launch_values_give_one_readable_line(form: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        validate([], form_overrides({"dataset": "simulated", **form}))
    assert message in str(err.value)
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


def test_config_from_logged_params_round_trips() -> None:
    from pdmlens.config import RunConfig

    cfg = RunConfig().with_overrides(
        ["seed=4", "window.length=12", "data.simulator.fault_mode_subset=[0, 1]"]
    )
    params = {
        k: ("None" if v is None else (str(v) if not isinstance(v, list) else str(v)))
        for k, v in cfg.flat().items()
    }
    params["some.future.key"] = "1"
    back = config_from_params(params)
    assert back == cfg
