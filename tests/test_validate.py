"""validate_fleet / find_problems: each bad input named by file, column and row or unit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdmlens.data.validate import as_unit_strings, find_problems, group_by_unit, validate_fleet
from pdmlens.errors import DataValidationError

F = "readings.csv"


def _frame(units=("a", "a", "a", "b", "b"), times=(1, 2, 3, 1, 2)) -> pd.DataFrame:
    n = len(units)
    return pd.DataFrame(
        {
            "unit": list(units),
            "time": list(times),
            "setting_1": np.zeros(n),
            "sensor_1": np.arange(n, dtype=float),
            "sensor_2": np.arange(n, dtype=float) * 2,
        }
    )


def _raises(frame, match, **kw) -> DataValidationError:
    kw.setdefault("file", F)
    with pytest.raises(DataValidationError, match=match) as ei:
        validate_fleet(frame, **kw)
    assert ei.value.file == kw["file"]
    assert kw["file"] is None or kw["file"] in str(ei.value)
    return ei.value


def test_valid_frame_passes_and_casts_to_float():
    f = _frame()
    f["sensor_1"] = f["sensor_1"].astype(np.int64)
    out = validate_fleet(f, file=F)
    assert out["sensor_1"].dtype == np.float64
    assert out["time"].dtype == np.int64
    assert f["sensor_1"].dtype == np.int64  # the caller's frame is not modified
    assert find_problems(f) == []


def test_empty_input():
    err = _raises(_frame().iloc[:0], "empty input")
    assert err.row is None


@pytest.mark.parametrize("drop", ["unit", "time"])
def test_missing_required_column(drop):
    err = _raises(_frame().drop(columns=drop), f"required column '{drop}' is missing")
    assert err.column == drop and f"column '{drop}'" in str(err)


def test_no_sensor_column():
    err = _raises(_frame().drop(columns=["sensor_1", "sensor_2"]), "no sensor columns")
    assert err.column == "sensor_*"


def test_non_numeric_names_raw_value_and_row_numbers():
    f = _frame()
    f["sensor_2"] = f["sensor_2"].astype(object)
    f.loc[3, "sensor_2"] = "n/a"
    f.loc[4, "sensor_2"] = "oops"
    err = _raises(f, "non-numeric value 'n/a'", row_numbers=np.arange(10, 15))
    assert (err.column, err.row) == ("sensor_2", 13)
    assert "2 rows in this column" in str(err)
    assert "column 'sensor_2', row 13" in str(err)


def test_rows_are_one_based_with_a_file_and_zero_based_without():
    f = _frame()
    f.loc[2, "sensor_1"] = np.nan
    assert _raises(f, "missing value", file=F).row == 3
    assert _raises(f, "missing value", file=None).row == 2


def test_non_numeric_time():
    f = _frame()
    f["time"] = ["1", "2", "x3", "1", "2"]
    err = _raises(f, "non-numeric value 'x3'")
    assert (err.column, err.row) == ("time", 3)


def test_missing_unit_id():
    f = _frame()
    f.loc[1, "unit"] = None
    err = _raises(f, "missing unit id")
    assert (err.column, err.row) == ("unit", 2)


def test_nan_error_names_first_row_and_unit():
    f = _frame()
    f.loc[4, "sensor_1"] = np.nan
    f.loc[1, "sensor_1"] = np.nan
    err = _raises(f, "missing value")
    assert (err.column, err.row, err.unit) == ("sensor_1", 2, "a")
    assert "ffill" in str(err)


def test_inf_is_always_an_error():
    f = _frame()
    f.loc[3, "setting_1"] = -np.inf
    for policy in ("error", "ffill"):
        err = _raises(f, "infinite value -inf", nan_policy=policy)
        assert (err.column, err.row, err.unit) == ("setting_1", 4, "b")


def test_ffill_per_unit_with_leading_backfill():
    f = _frame(units=["a"] * 4 + ["b"] * 3, times=[1, 2, 3, 4, 1, 2, 3])
    f["sensor_1"] = [np.nan, 1.0, np.nan, 3.0, np.nan, np.nan, 7.0]
    out = validate_fleet(f, nan_policy="ffill")
    np.testing.assert_array_equal(out["sensor_1"], [1, 1, 1, 3, 7, 7, 7])
    assert f["sensor_1"].isna().sum() == 4  # input untouched


def test_ffill_does_not_cross_units_and_all_nan_unit_is_error():
    f = _frame()
    f.loc[3:4, "sensor_2"] = np.nan  # unit b entirely NaN in sensor_2
    err = _raises(f, "NaN for the whole unit", nan_policy="ffill")
    assert (err.column, err.unit, err.row) == ("sensor_2", "b", 4)


def test_duplicate_unit_time():
    err = _raises(_frame(times=(1, 2, 2, 1, 2)), r"duplicate \(unit, time\)")
    assert (err.column, err.row, err.unit) == ("time", 3, "a")


def test_time_not_increasing_is_reported_not_sorted():
    err = _raises(_frame(times=(1, 3, 2, 1, 2)), "not increasing")
    assert (err.column, err.row, err.unit) == ("time", 3, "a")
    assert "3" in err.reason and "2" in err.reason


def test_datetime_time_order():
    f = _frame()
    f["time"] = pd.to_datetime(
        ["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-01", "2024-01-03"]
    )
    err = _raises(f, "not increasing")
    assert (err.row, err.unit) == (3, "a")


def test_units_must_be_contiguous():
    err = _raises(_frame(units=("a", "a", "b", "a", "b"), times=(1, 2, 1, 3, 2)), "not contiguous")
    assert (err.column, err.row, err.unit) == ("unit", 4, "a")
    assert "row 1" in err.reason


def test_group_by_unit_is_stable_and_carries_rows():
    f = _frame(units=("a", "b", "a", "b", "a"), times=(1, 1, 2, 2, 3))
    g, rows = group_by_unit(f, np.arange(1, 6))
    assert list(g["unit"]) == ["a", "a", "a", "b", "b"]
    np.testing.assert_array_equal(rows, [1, 3, 5, 2, 4])
    validate_fleet(g, row_numbers=rows)
    bad = _frame(units=("a", "b", "a", "b", "a"), times=(1, 1, 3, 2, 2))
    g, rows = group_by_unit(bad, np.arange(1, 6))
    err = _raises(g, "not increasing", row_numbers=rows)
    assert err.row == 5  # the file row of a's time 2, which follows its time 3


def test_unit_shorter_than_window():
    err = _raises(_frame(), "only 2 rows but the window needs 3", window=3)
    assert (err.unit, err.row, err.column) == ("b", 4, "unit")
    assert "window.pad" in str(err) and "unit 'b'" in str(err)
    validate_fleet(_frame(), window=2)


def test_duplicated_column_name():
    f = pd.concat([_frame(), _frame()[["sensor_1"]]], axis=1)
    err = _raises(f, "more than once")
    assert err.column == "sensor_1"


def test_find_problems_collects_every_kind():
    f = _frame(times=(1, 2, 2, 1, 2))
    f["sensor_2"] = f["sensor_2"].astype(object)
    f.loc[0, "sensor_2"] = "bad"
    f.loc[4, "sensor_1"] = np.nan
    f.loc[1, "setting_1"] = np.inf
    found = {(p.column, p.row) for p in find_problems(f, file=F, window=3)}
    assert found == {("sensor_2", 1), ("time", 3), ("sensor_1", 5), ("setting_1", 2), ("unit", 4)}


def test_non_numeric_value_not_reported_again_as_nan():
    f = _frame()
    f["sensor_1"] = ["1", "zz", "3", "4", "5"]
    problems = find_problems(f)
    assert [(p.column, p.row) for p in problems] == [("sensor_1", 1)]


def test_unit_ids_become_strings():
    s = as_unit_strings(pd.Series([1.0, 2.0, 10.0]))
    assert list(s) == ["1", "2", "10"]
    assert list(as_unit_strings(pd.Series([3, 4]))) == ["3", "4"]
    out = validate_fleet(_frame(units=(1, 1, 1, 2, 2)))
    assert list(out["unit"].unique()) == ["1", "2"]


def test_large_frame_validates_vectorised():
    n_units, per = 2000, 100
    f = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n_units), per).astype(str),
            "time": np.tile(np.arange(per), n_units),
            "sensor_1": np.ones(n_units * per),
        }
    )
    f.loc[150_007, "sensor_1"] = np.nan
    err = _raises(f, "missing value", row_numbers=np.arange(n_units * per) + 2)
    assert (err.row, err.unit) == (150_009, "1500")
