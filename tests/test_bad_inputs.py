"""Bad input files found when probed as a new user would (issue 13): each is refused with a
DataValidationError naming the file and the row or column, never a raw traceback, and never
silently accepted."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pdmlens.cli import app
from pdmlens.config import ColumnMapping
from pdmlens.data.cmapss import read_readings
from pdmlens.data.events import load_events
from pdmlens.data.table import load_table
from pdmlens.data.validate import MAX_ABS
from pdmlens.errors import DataValidationError, PdmlensError

HEADER = "unit,time,s1,s2"


def _csv(rows: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _good_rows(n: int = 12) -> list[str]:
    return [f"{'a' if i < n // 2 else 'b'},{i % (n // 2) + 1},{i}.5,{2 * i}.0" for i in range(n)]


def test_non_utf8_byte_named_by_file_and_row(tmp_path) -> None:
    path = tmp_path / "fleet.csv"
    rows = _good_rows()
    data = _csv(rows).encode().replace(b"3.5", b"3\xe9.5")  # data row 4
    path.write_bytes(data)
    with pytest.raises(DataValidationError, match=r"byte 0xe9 at line 5 is not UTF-8") as ei:
        load_table(path)
    assert (ei.value.file, ei.value.row) == (str(path), 4)
    assert isinstance(ei.value, PdmlensError)  # so a pipeline does not retry it as I/O


def test_non_utf8_byte_in_cmapss_text_names_the_line(tmp_path) -> None:
    line = " ".join(["1", "1"] + ["0.5"] * 24)
    path = tmp_path / "train_FD001.txt"
    path.write_bytes((line + "\n" + line.replace("1 1", "1 2") + "\n").encode() + b"1 3 \xff\n")
    with pytest.raises(DataValidationError, match="not UTF-8") as ei:
        read_readings(path)
    assert ei.value.row == 3


def test_truncated_gzip_is_named(tmp_path) -> None:
    full = gzip.compress(_csv(_good_rows(400)).encode())
    path = tmp_path / "fleet.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataValidationError, match="truncated or corrupt") as ei:
        load_table(path)
    assert ei.value.file == str(path)
    res = CliRunner().invoke(app, ["data", "inspect", "--source", "table", "--path", str(path)])
    assert res.exit_code == 2 and "truncated or corrupt" in res.stderr
    assert "Aborted" not in res.output


def test_duplicate_header_names_both_columns(tmp_path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(_csv(_good_rows(), header="unit,time,s1,s1"))
    with pytest.raises(DataValidationError, match="columns 3 and 4 are both named 's1'") as ei:
        load_table(path)
    assert ei.value.column == "s1"


def test_empty_header_names_the_position(tmp_path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(_csv([r + ",1" for r in _good_rows()], header="unit,time,s1,s2,"))
    with pytest.raises(DataValidationError, match="column 5 has an empty name") as ei:
        load_table(path)
    assert ei.value.column == "#5"


def test_more_fields_than_header_is_refused(tmp_path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(_csv([r + ",9" for r in _good_rows()]))
    with pytest.raises(DataValidationError, match="more fields than the header"):
        load_table(path)
    rows = _good_rows()
    rows[6] += ",9,9"
    path.write_text(_csv(rows))
    with pytest.raises(DataValidationError, match="6 fields but the header names 4") as ei:
        load_table(path)
    assert ei.value.row == 7


def test_text_in_time_column_reported_at_its_own_row(tmp_path) -> None:
    rows = [f"a,{i},1.0,2.0" for i in range(1, 11)] + ["a,later,1.0,2.0", "a,12,1.0,2.0"]
    path = tmp_path / "fleet.csv"
    path.write_text(_csv(rows))
    with pytest.raises(DataValidationError, match="'later' is neither") as ei:
        load_table(path)
    assert (ei.value.column, ei.value.row) == ("time", 11)


def test_huge_sensor_value_is_refused_not_zeroed(tmp_path) -> None:
    rows = _good_rows()
    rows[8] = "b,3,1e308,2.0"
    path = tmp_path / "fleet.csv"
    path.write_text(_csv(rows))
    with pytest.raises(DataValidationError, match="too large in magnitude") as ei:
        load_table(path)
    assert (ei.value.file, ei.value.column, ei.value.row) == (str(path), "sensor_s1", 9)
    rows[8] = f"b,3,{MAX_ABS:g},2.0"  # the bound itself is accepted
    path.write_text(_csv(rows))
    assert load_table(path).train.frame["sensor_s1"].max() == MAX_ABS


def test_datetime_parquet_columns_are_timestamps_not_nanoseconds(tmp_path) -> None:
    ts = pd.date_range("2024-01-01", periods=4, freq="h")
    df = pd.DataFrame(
        {
            "unit": ["a"] * 4,
            "time": ts,
            "installed": [pd.Timestamp("2023-05-01")] * 4,  # a datetime column, not a sensor
            "s1": np.arange(4.0),
        }
    )
    path = tmp_path / "fleet.parquet"
    df.to_parquet(path)
    fleet = load_table(path).train
    assert fleet.sensors == ["sensor_s1"]
    assert pd.api.types.is_datetime64_any_dtype(fleet.frame["time"])
    assert fleet.frame["rul_raw"].tolist() == [3.0, 2.0, 1.0, 0.0]  # hours, not ns
    with pytest.raises(DataValidationError, match="timestamps or durations") as ei:
        load_table(path, ColumnMapping(sensors=["s1", "installed"]))
    assert ei.value.column == "installed"


def test_events_readings_with_datetime_parquet(tmp_path) -> None:
    ts = pd.date_range("2024-01-01", periods=5, freq="h")
    pd.DataFrame({"asset": ["m"] * 5, "timestamp": ts, "s1": np.arange(5.0)}).to_parquet(
        tmp_path / "r.parquet"
    )
    pd.DataFrame({"asset": ["m"], "timestamp": [ts[3]]}).to_parquet(tmp_path / "f.parquet")
    fleet = load_events(tmp_path / "r.parquet", tmp_path / "f.parquet").train
    assert fleet.frame["rul_raw"].tolist()[:4] == [3.0, 2.0, 1.0, 0.0]
    assert fleet.meta.censored_units == ["m#2"]


def test_cmapss_rul_count_mismatch_names_the_first_missing_value(tmp_path) -> None:
    from pdmlens.data.cmapss import load_cmapss

    lines = [" ".join([str(u), str(t)] + ["0.5"] * 24) for u in (1, 2) for t in (1, 2, 3)]
    for kind in ("train", "test"):
        (tmp_path / f"{kind}_FD001.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "RUL_FD001.txt").write_text("12\n")  # two test units, one RUL value
    with pytest.raises(DataValidationError, match="has 1 values but test_FD001.txt has 2") as ei:
        load_cmapss(tmp_path)
    assert (ei.value.column, ei.value.row) == ("rul", 2)
