"""Telemetry + failure events: runs cut at failures, censored tails, located errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.config import EventsConfig
from pdmlens.data.events import load_events
from pdmlens.errors import DataValidationError


def _readings() -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=6, freq="h")
    a = pd.DataFrame(
        {
            "asset": "A",
            "timestamp": stamps,
            "temp": np.arange(6.0),
            "sensor_vib": np.arange(6.0) * 10,
        }
    )
    b = pd.DataFrame(
        {
            "asset": "B",
            "timestamp": stamps[:3],
            "temp": [7.0, 8.0, 9.0],
            "sensor_vib": [1.0, 2.0, 3.0],
        }
    )
    # interleaved by time, as telemetry usually is
    return pd.concat([a, b]).sort_values("timestamp", kind="stable").reset_index(drop=True)


def _failures(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["asset", "timestamp", "mode"])


def _write(tmp_path, readings, failures, ext="csv"):
    r, f = tmp_path / f"r.{ext}", tmp_path / f"f.{ext}"
    if ext == "csv":
        readings.to_csv(r, index=False)
        failures.to_csv(f, index=False)
    else:
        readings.to_parquet(r)
        failures.to_parquet(f)
    return r, f


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_runs_rul_and_censoring(tmp_path, ext):
    fail = _failures([("A", "2024-01-01 02:00", "bearing"), ("A", "2024-01-01 04:30", "seal")])
    r, f = _write(tmp_path, _readings(), fail, ext)
    fleet = load_events(r, f, EventsConfig(fault_mode="mode", time_unit="min")).train
    fr = fleet.frame
    assert fleet.units == ["A#1", "A#2", "A#3", "B#1"]
    assert fleet.unit_lengths().tolist() == [3, 2, 1, 3]
    np.testing.assert_array_equal(fr["rul_raw"].iloc[:5], [120, 60, 0, 90, 30])
    assert fr["rul_raw"].iloc[5:].isna().all()
    assert fleet.meta.censored_units == ["A#3", "B#1"]
    assert fleet.meta.fault_modes == {"A#1": "bearing", "A#2": "seal"}
    assert list(fr.columns) == ["unit", "time", "sensor_temp", "sensor_vib", "rul_raw"]
    assert fleet.meta.extra["sensor_names"] == {"sensor_temp": "temp", "sensor_vib": "sensor_vib"}
    assert pd.api.types.is_datetime64_any_dtype(fr["time"])
    np.testing.assert_array_equal(fr["sensor_temp"].iloc[:6], np.arange(6.0))
    assert fleet.meta.source == "events" and fleet.meta.time_unit == "minute"


def test_numeric_time_and_empty_run(tmp_path):
    readings = pd.DataFrame(
        {"asset": [1] * 5, "timestamp": [10, 20, 30, 40, 50], "x": [1.0, 2.0, 3.0, 4.0, 5.0]}
    )
    fail = _failures([(1, 20, "m"), (1, 25, "m"), (1, 50, "m"), (1, 50, "m")])
    r, f = _write(tmp_path, readings, fail)
    fleet = load_events(r, f).train
    assert fleet.units == ["1#1", "1#3"]  # run 2 (20 < t <= 25) has no readings
    np.testing.assert_array_equal(fleet.frame["rul_raw"], [10, 0, 20, 10, 0])
    assert fleet.meta.censored_units == [] and fleet.meta.extra["empty_runs"] == 1


def test_failure_for_unknown_asset_names_failures_row(tmp_path):
    fail = _failures([("A", "2024-01-01 02:00", "m"), ("Z", "2024-01-01 03:00", "m")])
    r, f = _write(tmp_path, _readings(), fail)
    with pytest.raises(DataValidationError, match="asset 'Z', which has no readings") as ei:
        load_events(r, f)
    assert (ei.value.file, ei.value.column, ei.value.row) == (str(f), "asset", 2)
    assert "column 'asset', row 2" in str(ei.value)


def test_bad_readings_are_named(tmp_path):
    readings = _readings()
    readings["temp"] = readings["temp"].astype(object)
    readings.loc[4, "temp"] = "hot"
    r, f = _write(tmp_path, readings, _failures([]))
    with pytest.raises(DataValidationError, match="non-numeric value 'hot'") as ei:
        load_events(r, f)
    assert (ei.value.file, ei.value.column, ei.value.row) == (str(r), "sensor_temp", 5)


def test_time_going_backwards_within_asset(tmp_path):
    readings = _readings()
    readings.loc[[6, 8], "timestamp"] = readings.loc[[8, 6], "timestamp"].to_numpy()
    r, f = _write(tmp_path, readings, _failures([]))
    with pytest.raises(DataValidationError, match="not increasing") as ei:
        load_events(r, f)
    # asset A: t0 t1 t2 t5 t4 t3 -> t4 (data row 8) is the first to go back
    assert (ei.value.column, ei.value.row, ei.value.unit) == ("time", 8, "A#1")


def test_missing_columns_and_window(tmp_path):
    r, f = _write(tmp_path, _readings().drop(columns="timestamp"), _failures([]))
    with pytest.raises(DataValidationError, match="'timestamp' is missing") as ei:
        load_events(r, f)
    assert ei.value.file == str(r)
    r, f = _write(tmp_path, _readings(), _failures([("A", "2024-01-01 00:00", "m")]))
    with pytest.raises(DataValidationError, match="only 1 row but the window needs 2") as ei:
        load_events(r, f, window=2)
    assert ei.value.unit == "A#1"


def test_failure_time_unparseable(tmp_path):
    r, f = _write(tmp_path, _readings(), _failures([("A", "tuesday", "m")]))
    with pytest.raises(DataValidationError, match="'tuesday' is neither") as ei:
        load_events(r, f)
    assert (ei.value.file, ei.value.column, ei.value.row) == (str(f), "timestamp", 1)


def test_load_source_resolves_event_paths_against_path(tmp_path):
    from pdmlens.config import DataConfig
    from pdmlens.data.sources import load_source

    _write(tmp_path, _readings(), _failures([("B", "2024-01-01 01:00", "m")]))
    cfg = DataConfig(
        source="events", path=str(tmp_path), events=EventsConfig(readings="r.csv", failures="f.csv")
    )
    fleet = load_source(cfg).train
    assert fleet.units == ["A#1", "B#1", "B#2"] and fleet.meta.censored_units == ["A#1", "B#2"]
    bad = cfg.model_copy(update={"events": EventsConfig(readings="r.csv", failures="x.csv")})
    with pytest.raises(DataValidationError, match="failures table .* not found") as ei:
        load_source(bad)
    assert ei.value.file == str(tmp_path / "x.csv")
