"""C-MAPSS loader: real FD001 numbers (gz and plain) and located errors on bad files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from pdmlens.data.cmapss import COLUMNS, load_cmapss
from pdmlens.errors import DataValidationError


def _line(unit: int, cycle: int, base: float = 0.0) -> str:
    vals = [str(unit), str(cycle), "0.001", "-0.0002", "100.0"]
    vals += [f"{base + i + cycle * 0.01:.2f}" for i in range(21)]
    return " ".join(vals) + "  \n"


def _write_subset(folder: Path, train_lengths, test_lengths, rul, subset="FD001", gz=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, text: str) -> None:
        if gz:
            with gzip.open(folder / (name + ".gz"), "wt") as fh:
                fh.write(text)
        else:
            (folder / name).write_text(text)

    write(
        f"train_{subset}.txt",
        "".join(_line(u, c) for u, n in enumerate(train_lengths, 1) for c in range(1, n + 1)),
    )
    write(
        f"test_{subset}.txt",
        "".join(_line(u, c) for u, n in enumerate(test_lengths, 1) for c in range(1, n + 1)),
    )
    write(f"RUL_{subset}.txt", "".join(f"{r}\n" for r in rul))
    return folder


def _check_fd001(splits) -> None:
    train, test = splits.train, splits.test
    assert (train.n_rows, len(train.units)) == (20631, 100)
    assert (test.n_rows, len(test.units)) == (13096, 100)
    assert list(train.frame.columns) == [*COLUMNS, "rul_raw"]
    assert train.units[:3] == ["1", "2", "3"]
    assert train.frame["time"].dtype == np.int64
    u1 = train.frame[train.frame["unit"] == "1"]
    assert len(u1) == 192
    assert u1["rul_raw"].iloc[0] == 191.0 and u1["rul_raw"].iloc[-1] == 0.0
    t1 = test.frame[test.frame["unit"] == "1"]
    assert t1["time"].iloc[-1] == 31
    assert t1["rul_raw"].iloc[-1] == 112.0 and t1["rul_raw"].iloc[0] == 142.0
    last = test.frame.groupby("unit", sort=False)["rul_raw"].last()
    assert last.notna().sum() == 100
    assert train.meta.name == "cmapss-FD001" and train.meta.source == "cmapss"
    assert (train.meta.split, test.meta.split) == ("train", "test")
    assert train.meta.fault_modes == {}


def test_fd001_from_gz(cmapss_dir):
    _check_fd001(load_cmapss(cmapss_dir, "FD001"))


def test_fd001_from_plain_copies(cmapss_dir, tmp_path):
    for name in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt"):
        with (
            gzip.open(cmapss_dir / (name + ".gz"), "rb") as src,
            open(tmp_path / name, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
    assert not list(tmp_path.glob("*.gz"))
    _check_fd001(load_cmapss(tmp_path, "fd001"))


@pytest.mark.parametrize("gz", [False, True])
def test_small_subset_labels(tmp_path, gz):
    folder = _write_subset(tmp_path / "d", [5, 3], [4, 2], [10, 7], subset="FD003", gz=gz)
    s = load_cmapss(folder, "FD003")
    assert s.train.meta.name == "cmapss-FD003"
    np.testing.assert_array_equal(s.train.frame["rul_raw"], [4, 3, 2, 1, 0, 2, 1, 0])
    np.testing.assert_array_equal(s.test.frame["rul_raw"], [13, 12, 11, 10, 8, 7])
    assert s.test.units == ["1", "2"]
    assert s.train.frame["sensor_1"].dtype == np.float64


def test_plain_preferred_when_both_exist(tmp_path):
    _write_subset(tmp_path, [5], [3], [9], gz=True)
    _write_subset(tmp_path, [6], [3], [9], gz=False)
    assert load_cmapss(tmp_path).train.n_rows == 6


def test_units_sort_numerically_for_rul(tmp_path):
    lengths = [3] * 11
    _write_subset(tmp_path, lengths, lengths, list(range(100, 111)))
    test = load_cmapss(tmp_path).test.frame
    last = test.groupby("unit", sort=False)["rul_raw"].last()
    assert last["10"] == 109 and last["2"] == 101 and last["11"] == 110


def test_rul_count_mismatch_names_rul_file(tmp_path):
    _write_subset(tmp_path, [5, 3], [4, 2], [10])
    with pytest.raises(DataValidationError, match="RUL file has 1 values but") as ei:
        load_cmapss(tmp_path)
    assert ei.value.file.endswith("RUL_FD001.txt")


def test_non_numeric_token_names_file_column_line(tmp_path):
    _write_subset(tmp_path, [5, 3], [4, 2], [10, 7])
    path = tmp_path / "train_FD001.txt"
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[6].split()
    fields[9] = "12,5"  # sensor_5 on line 7
    lines[6] = " ".join(fields) + " \n"
    path.write_text("".join(lines))
    with pytest.raises(DataValidationError) as ei:
        load_cmapss(tmp_path)
    err = ei.value
    assert (err.column, err.row, Path(err.file).name) == ("sensor_5", 7, "train_FD001.txt")
    assert "'12,5'" in str(err) and "train_FD001.txt" in str(err) and "row 7" in str(err)


def test_blank_lines_keep_line_numbers(tmp_path):
    _write_subset(tmp_path, [5], [3], [9])
    path = tmp_path / "train_FD001.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, "\n")  # blank line 3; the old line 4 (cycle 3) is now line 4+1
    fields = lines[4].split()
    fields[1] = "2"  # cycle 4 -> 2 on line 5: not increasing
    lines[4] = " ".join(fields) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(DataValidationError, match="not increasing") as ei:
        load_cmapss(tmp_path)
    assert (ei.value.row, ei.value.column, ei.value.unit) == (5, "time", "1")


def test_wrong_field_count_names_line(tmp_path):
    _write_subset(tmp_path, [5], [3], [9])
    path = tmp_path / "test_FD001.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].rstrip() + " 7.0\n"
    path.write_text("".join(lines))
    with pytest.raises(DataValidationError, match="27 fields") as ei:
        load_cmapss(tmp_path)
    assert ei.value.row == 2 and ei.value.file.endswith("test_FD001.txt")
    lines[1] = " ".join(lines[1].split()[:20]) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(DataValidationError, match="20 fields, fewer than 26") as ei:
        load_cmapss(tmp_path)
    assert (ei.value.row, ei.value.column) == (2, "sensor_16")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataValidationError, match="folder not found"):
        load_cmapss(tmp_path / "nope")
    _write_subset(tmp_path, [5], [3], [9])
    (tmp_path / "RUL_FD001.txt").unlink()
    with pytest.raises(DataValidationError, match="RUL_FD001.txt.gz"):
        load_cmapss(tmp_path)
    with pytest.raises(DataValidationError, match="unknown C-MAPSS subset"):
        load_cmapss(tmp_path, "FD009")


def test_window_refuses_short_train_unit_only(tmp_path):
    _write_subset(tmp_path, [8, 4], [2, 2], [1, 1])
    with pytest.raises(DataValidationError, match="only 4 rows but the window needs 5") as ei:
        load_cmapss(tmp_path, window=5)
    assert ei.value.unit == "2" and ei.value.row == 9
    assert "window.pad" in str(ei.value)
    assert load_cmapss(tmp_path, window=4).test.n_rows == 4


def test_problems_are_collected(tmp_path):
    _write_subset(tmp_path, [5, 3], [4, 2], [10, 7])
    path = tmp_path / "train_FD001.txt"
    lines = path.read_text().splitlines(keepends=True)
    f = lines[1].split()
    f[1] = "1"  # duplicate cycle on line 2
    f[5] = "nan"  # NaN sensor_1 on line 2
    lines[1] = " ".join(f) + "\n"
    path.write_text("".join(lines))
    problems: list[DataValidationError] = []
    s = load_cmapss(tmp_path, problems=problems)
    assert s.train.n_rows == 8
    found = {(p.column, p.row) for p in problems}
    assert found == {("time", 2), ("sensor_1", 2)}


def test_load_source_cmapss(tmp_path):
    from pdmlens.config import DataConfig
    from pdmlens.data.sources import load_source

    _write_subset(tmp_path, [5, 3], [4, 2], [10, 7], subset="FD002", gz=True)
    s = load_source(DataConfig(source="cmapss", path=str(tmp_path), subset="FD002"))
    assert s.train.meta.name == "cmapss-FD002" and s.test.n_rows == 6
