"""Generic tables: wide and long layouts, CSV and Parquet, RUL rules, located errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdmlens.config import ColumnMapping
from pdmlens.data.table import load_table
from pdmlens.errors import DataValidationError


def _wide() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "machine": ["m1", "m2", "m1", "m2", "m1"],
            "cycle": [1, 1, 2, 2, 3],
            "temp": [1.0, 2.0, 1.5, 2.5, 1.7],
            "load": [0.5, 0.5, 0.6, 0.6, 0.7],
            "note": ["ok", "ok", "x", "ok", "ok"],
        }
    )


MAP = ColumnMapping(unit="machine", time="cycle", settings=["load"])


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_wide_table_groups_units_and_labels_run_to_failure(tmp_path, ext):
    path = tmp_path / f"t.{ext}"
    df = _wide()
    df.to_csv(path, index=False) if ext == "csv" else df.to_parquet(path)
    s = load_table(path, MAP)
    f = s.train.frame
    assert list(f.columns) == ["unit", "time", "setting_load", "sensor_temp", "rul_raw"]
    assert list(f["unit"]) == ["m1", "m1", "m1", "m2", "m2"]
    np.testing.assert_array_equal(f["sensor_temp"], [1.0, 1.5, 1.7, 2.0, 2.5])
    np.testing.assert_array_equal(f["rul_raw"], [2, 1, 0, 1, 0])
    assert s.test is None and s.train.meta.source == "table"
    assert s.train.meta.extra["columns"]["sensor_temp"] == "temp"


def test_rul_column_and_no_run_to_failure(tmp_path):
    df = _wide().assign(life=[9, 8, 7, np.nan, 5])
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    f = load_table(path, MAP.model_copy(update={"rul": "life"})).train.frame
    np.testing.assert_array_equal(f["rul_raw"], [9, 7, 5, 8, np.nan])
    df.drop(columns="life").to_csv(path, index=False)
    g = load_table(path, MAP.model_copy(update={"run_to_failure": False})).train
    assert g.frame["rul_raw"].isna().all() and g.meta.censored_units == ["m1", "m2"]


def test_separate_test_table_has_no_run_to_failure_labels(tmp_path):
    _wide().to_csv(tmp_path / "a.csv", index=False)
    _wide().to_csv(tmp_path / "b.csv", index=False)
    s = load_table(tmp_path / "a.csv", MAP, tmp_path / "b.csv")
    assert s.test is not None and s.test.meta.split == "test"
    assert s.test.frame["rul_raw"].isna().all()


def test_long_layout_pivots_in_order(tmp_path):
    long = pd.DataFrame(
        {
            "unit": [7, 7, 7, 7, 8, 8],
            "t": [1, 1, 2, 2, 1, 1],
            "variable": ["a", "b", "a", "b", "b", "a"],
            "value": [1.0, 10.0, 2.0, 20.0, 30.0, 3.0],
        }
    )
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    m = ColumnMapping(time="t", layout="long")
    f = load_table(path, m).train.frame
    assert list(f["unit"]) == ["7", "7", "8"]
    np.testing.assert_array_equal(f["sensor_a"], [1, 2, 3])
    np.testing.assert_array_equal(f["sensor_b"], [10, 20, 30])
    np.testing.assert_array_equal(f["rul_raw"], [1, 0, 0])


def test_long_layout_errors_name_rows(tmp_path):
    long = pd.DataFrame(
        {
            "unit": [7, 7, 7, 7],
            "t": [1, 1, 2, 2],
            "variable": ["a", "b", "a", "a"],
            "value": ["1", "2", "x", "4"],
        }
    )
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    m = ColumnMapping(time="t", layout="long")
    with pytest.raises(DataValidationError, match=r"duplicate \(unit, time, variable\)") as ei:
        load_table(path, m)
    assert (ei.value.column, ei.value.row) == ("variable", 4)
    long.loc[3, "variable"] = "b"
    long.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="non-numeric value 'x'") as ei:
        load_table(path, m)
    assert (ei.value.column, ei.value.row, ei.value.file) == ("value", 3, str(path))
    long.loc[2, "value"] = "3"
    long = long.iloc[:3]
    long.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="missing value") as ei:
        load_table(path, m)
    assert (ei.value.column, ei.value.row) == ("sensor_b", 3)  # (7, 2) first seen on row 3


def test_timestamps_give_rul_in_time_unit(tmp_path):
    df = pd.DataFrame(
        {
            "unit": ["u"] * 3,
            "time": ["2024-01-01 00:00", "2024-01-01 12:00", "2024-01-02"],
            "s": [1.0, 2.0, 3.0],
        }
    )
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    fl = load_table(path, ColumnMapping(time_unit="d")).train
    assert pd.api.types.is_datetime64_any_dtype(fl.frame["time"])
    np.testing.assert_array_equal(fl.frame["rul_raw"], [1.0, 0.5, 0.0])
    assert fl.meta.time_unit == "day"


def test_bad_timestamp_named(tmp_path):
    df = pd.DataFrame(
        {"unit": ["u"] * 3, "time": ["2024-01-01", "soon", "2024-01-03"], "s": [1.0, 2.0, 3.0]}
    )
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="'soon' is neither") as ei:
        load_table(path)
    assert (ei.value.column, ei.value.row) == ("time", 2)


def test_csv_errors_name_file_column_and_data_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("machine,cycle,temp,load,note\nm1,1,1.0,0.5,a\n\nm1,2,abc,0.5,a\n")
    with pytest.raises(DataValidationError, match="non-numeric value 'abc'") as ei:
        load_table(path, MAP)
    # blank line 3 still counts: the bad value is on data row 3 (file line 4)
    assert (ei.value.file, ei.value.column, ei.value.row) == (str(path), "sensor_temp", 3)
    path.write_text("machine,cycle,temp,load,note\nm1,1,1.0,0.5,a\nm1,1,2.0,0.5,a\n")
    with pytest.raises(DataValidationError, match="duplicate") as ei:
        load_table(path, MAP)
    assert (ei.value.column, ei.value.row, ei.value.unit) == ("time", 2, "m1")


def test_missing_mapped_column_and_unknown_format(tmp_path):
    path = tmp_path / "t.csv"
    _wide().to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="required column 'unit' is missing") as ei:
        load_table(path)
    assert ei.value.file == str(path) and ei.value.column == "unit"
    with pytest.raises(DataValidationError, match="required column 'rpm'"):
        load_table(path, MAP.model_copy(update={"sensors": ["rpm"]}))
    with pytest.raises(DataValidationError, match="unknown table format"):
        load_table(_touch(tmp_path / "t.xlsx"), MAP)
    with pytest.raises(DataValidationError, match="file not found"):
        load_table(tmp_path / "none.csv", MAP)


def _touch(p: Path) -> Path:
    p.write_text("x")
    return p


def test_empty_table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("machine,cycle,temp\n")
    with pytest.raises(DataValidationError, match="empty input") as ei:
        load_table(path, MAP)
    assert ei.value.file == str(path)


def test_window_and_nan_policy(tmp_path):
    df = _wide()
    df.loc[2, "temp"] = np.nan
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="missing value") as ei:
        load_table(path, MAP)
    assert (ei.value.column, ei.value.row, ei.value.unit) == ("sensor_temp", 3, "m1")
    f = load_table(path, MAP, nan_policy="ffill").train.frame
    np.testing.assert_array_equal(f["sensor_temp"], [1.0, 1.0, 1.7, 2.0, 2.5])
    with pytest.raises(DataValidationError, match="only 2 rows but the window needs 3") as ei:
        load_table(path, MAP, window=3, nan_policy="ffill")
    assert (ei.value.unit, ei.value.row) == ("m2", 2)


def test_load_source_dispatch_and_missing_paths(tmp_path):
    from pdmlens.config import DataConfig
    from pdmlens.data.sources import load_source

    path = tmp_path / "t.csv"
    _wide().to_csv(path, index=False)
    cfg = DataConfig(source="table", path=str(path), columns=MAP)
    assert load_source(cfg).train.n_rows == 5
    with pytest.raises(DataValidationError, match="window needs 3"):
        load_source(cfg, window=3)
    with pytest.raises(DataValidationError, match=r"table \(data.path\) not found") as ei:
        load_source(cfg.model_copy(update={"path": str(tmp_path / "gone.csv")}))
    assert ei.value.file == str(tmp_path / "gone.csv")
    with pytest.raises(DataValidationError, match="no table"):
        load_source(DataConfig(source="table"))
    with pytest.raises(DataValidationError, match="test table .* not found"):
        load_source(cfg.model_copy(update={"test_path": str(tmp_path / "t2.csv")}))
    with pytest.raises(DataValidationError, match="C-MAPSS folder .* not found"):
        load_source(DataConfig(source="cmapss", path=str(path)))
