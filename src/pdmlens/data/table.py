"""Generic CSV / Parquet tables, long or wide, mapped onto the canonical Fleet.

A ColumnMapping says which column is the unit, which is the time, which are sensors and
settings and, optionally, which holds the true RUL. Two layouts:

- wide: one row per (unit, time), one column per sensor;
- long: one row per (unit, time, variable) with ``variable``/``value`` columns; it is
  pivoted to wide keeping the order in which (unit, time) pairs first appear (a duplicate
  (unit, time, variable) is refused, naming its row).

Sensor and setting columns are renamed ``sensor_<name>`` / ``setting_<name>`` unless already
prefixed (the mapping is kept in ``meta.extra["columns"]``). Time is numeric (cycles, hours)
or a timestamp (parsed; time-zone-aware stamps become naive UTC). Rows are grouped by unit
with a stable sort (each unit's rows stay in file order, so a time going backwards is still
reported).

RUL: from ``mapping.rul`` when given (NaN = unknown); else for the training table, when
``mapping.run_to_failure``, last time of the unit - time (in ``mapping.time_unit`` for
timestamps); else NaN. A separate test table (``test_path``) gets RUL from the ``rul``
column or none: a cut-off test unit's failure time is not in the table.

Row numbers in errors are 1-based data rows (header not counted; the editor line is one
more), as the DataValidationError contract says. Helpers here (``read_frame``,
``parse_time``, ``pick_columns``) are shared with the events source.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.config import ColumnMapping
from pdmlens.data.fleet import (
    RUL_RAW,
    SENSOR_PREFIX,
    SETTING_PREFIX,
    TIME,
    UNIT,
    Fleet,
    FleetMeta,
    FleetSplits,
)
from pdmlens.data.textio import named_read_errors
from pdmlens.data.validate import NanPolicy, as_unit_strings, find_problems, group_by_unit
from pdmlens.data.validate import validate_fleet as _validate
from pdmlens.errors import DataValidationError

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
TIME_UNITS = {"s": "second", "min": "minute", "h": "hour", "d": "day"}


def read_frame(path: str | Path, allow_empty: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV or Parquet file (by extension) and each row's 1-based data row number.

    CSV blank lines are dropped after parsing, so row numbers still match the file. A table
    without rows is an error unless ``allow_empty`` (a header is still required). Refused,
    naming the file and the row or column: a byte that is not UTF-8, a truncated or corrupt
    ``.gz``, a header naming a column twice or leaving one unnamed (pandas would silently
    rename them ``s1.1`` / ``Unnamed: 4``), data rows with more fields than the header.
    """
    p = Path(path)
    name = p.name.lower()
    if not p.is_file():
        raise DataValidationError("file not found", file=str(p))
    if name.endswith(PARQUET_SUFFIXES):
        try:
            frame = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataValidationError(f"cannot read Parquet: {exc}", file=str(p)) from None
        check_header([str(c) for c in frame.columns], str(p))
        rows = np.arange(1, len(frame) + 1)
    elif name.endswith(CSV_SUFFIXES):
        sep = "\t" if name.endswith(".tsv") else ","
        frame = _read_csv(p, sep)
        rows = np.arange(1, len(frame) + 1)
        blank = frame.isna().all(axis=1).to_numpy() if frame.shape[1] else np.zeros(0, bool)
        if blank.any():
            frame, rows = frame.loc[~blank].reset_index(drop=True), rows[~blank]
    else:
        raise DataValidationError(
            f"unknown table format: expected a name ending in "
            f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}",
            file=str(p),
        )
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0 and not allow_empty:
        raise DataValidationError("empty input: the table has no rows", file=str(p))
    return frame, rows


def _read_csv(p: Path, sep: str) -> pd.DataFrame:
    """The CSV as read by pandas (every column as parsed), its header checked first."""
    file = str(p)
    with named_read_errors(p, header_lines=1):
        try:
            head = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            raise DataValidationError("empty input: the file has no rows", file=file) from None
        except pd.errors.ParserError as exc:
            raise DataValidationError(f"cannot parse the CSV header: {exc}", file=file) from None
        names = ["" if pd.isna(v) else str(v) for v in head.iloc[0]] if len(head) else []
        check_header(names, file)
        try:
            frame = pd.read_csv(p, sep=sep, skip_blank_lines=False)
        except pd.errors.EmptyDataError:
            raise DataValidationError("empty input: the file has no rows", file=file) from None
        except pd.errors.ParserError as exc:
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
            if m:
                raise DataValidationError(
                    f"row has {m.group(3)} fields but the header names {len(names)} columns",
                    file=file,
                    row=int(m.group(2)) - 1,
                ) from None
            raise DataValidationError(f"cannot parse CSV: {exc}", file=file) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas takes the first column as the index when every row has one field more
        # than the header: a misaligned table, not a table to guess at
        raise DataValidationError(
            f"the data rows have more fields than the header names ({len(names)} columns)",
            file=file,
            row=1,
        )
    return frame


def check_header(names: list[str], file: str) -> None:
    """Refuse an empty column name (naming its 1-based position) or a name given twice
    (naming both positions)."""
    seen: dict[str, int] = {}
    for i, raw in enumerate(names, 1):
        name = raw.strip()
        if not name:
            raise DataValidationError(
                f"column {i} has an empty name in the header (name every column)",
                file=file,
                column=f"#{i}",
            )
        if name in seen:
            raise DataValidationError(
                f"column name appears twice in the header: columns {seen[name]} and {i} are "
                f"both named {name!r}",
                file=file,
                column=name,
            )
        seen[name] = i


def require_columns(frame: pd.DataFrame, columns: list[str], file: str) -> None:
    for col in columns:
        if col not in frame.columns:
            present = ", ".join(map(str, frame.columns[:20]))
            raise DataValidationError(
                f"required column '{col}' is missing (columns present: {present})",
                file=file,
                column=col,
            )


def parse_time(s: pd.Series, file: str, column: str, rows: np.ndarray) -> pd.Series:
    """Numeric time as is; text or datetime as naive datetime64 (UTC where zone-aware).

    A column of datetime dtype (Parquet timestamps and dates) is a timestamp, like text
    timestamps in a CSV. A text column is numeric when at least half of its values are
    numbers, else timestamps; the first value of the other kind is reported at its own
    row (not the column's first row).
    """
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_convert(None) if getattr(s.dtype, "tz", None) is not None else s
    if pd.api.types.is_timedelta64_dtype(s):
        raise DataValidationError(
            "time holds durations (timedelta): give cycles, hours or timestamps",
            file=file,
            column=column,
            row=int(rows[0]) if len(rows) else None,
        )
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s
    num = pd.to_numeric(s, errors="coerce")
    present = s.notna().to_numpy()
    not_number = num.isna().to_numpy() & present
    if not not_number.any():
        return num
    if int(not_number.sum()) * 2 <= int(present.sum()):
        pos = int(np.argmax(not_number))
        raise DataValidationError(
            f"value {str(s.iat[pos])!r} is neither a number nor a timestamp like the "
            f"column's other values, which are numbers ({int(not_number.sum())} such rows)",
            file=file,
            column=column,
            row=int(rows[pos]),
        )
    out = _to_timestamps(s)
    # a bare number among timestamps is not a date (a parser would read "5" as a day)
    wrong = (out.isna().to_numpy() & present) | (present & ~not_number)
    if wrong.any():
        pos = int(np.argmax(wrong))
        raise DataValidationError(
            f"value {str(s.iat[pos])!r} is neither a number nor a timestamp like the "
            f"column's other values, which are timestamps ({int(wrong.sum())} such rows)",
            file=file,
            column=column,
            row=int(rows[pos]),
        )
    return out.dt.tz_convert(None)


def _to_timestamps(s: pd.Series) -> pd.Series:
    """Text as UTC timestamps, NaT where a value does not parse (element-wise when the
    bulk parser gives up on the whole column)."""
    try:
        return pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError):
        pass

    def one(v: Any) -> Any:
        try:
            return pd.to_datetime(v, errors="coerce", utc=True)
        except (ValueError, TypeError, OverflowError):
            return pd.NaT

    return pd.to_datetime(s.map(one), utc=True)


def has_numbers(s: pd.Series) -> bool:
    """True when a column holds at least one numeric value (else: a text label column)."""
    if pd.api.types.is_numeric_dtype(s):
        return True
    return bool(pd.to_numeric(s, errors="coerce").notna().any()) or bool(s.isna().all())


def _is_time_like(s: pd.Series) -> bool:
    return bool(pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s))


def prefixed(name: str, prefix: str) -> str:
    return name if name.startswith(prefix) else f"{prefix}{name}"


def pick_columns(
    frame: pd.DataFrame,
    taken: list[str],
    sensors: list[str] | None,
    settings: list[str],
    file: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """Map raw column names to ``sensor_*`` / ``setting_*`` names.

    ``sensors=None``: every column not in ``taken`` or ``settings`` whose name does not
    start with ``setting_``, skipping columns with no numeric value at all (logged).
    Returns (sensor map, setting map), each raw name -> canonical name.
    """
    settings = list(settings) + [
        c
        for c in frame.columns
        if c.startswith(SETTING_PREFIX) and c not in settings and c not in taken
    ]
    require_columns(frame, settings, file)
    if sensors is None:
        sensors = []
        for c in frame.columns:
            if c in taken or c in settings:
                continue
            if _is_time_like(frame[c]):
                log.info("%s: column '%s' holds timestamps; not used as a sensor", file, c)
            elif has_numbers(frame[c]):
                sensors.append(c)
            else:
                log.info("%s: column '%s' has no numeric values; not used as a sensor", file, c)
    else:
        require_columns(frame, list(sensors), file)
    for c in [*sensors, *settings]:
        if _is_time_like(frame[c]):
            # pandas would turn them into nanosecond counts
            raise DataValidationError(
                "column holds timestamps or durations, not sensor readings",
                file=file,
                column=c,
            )
    return (
        {c: prefixed(c, SENSOR_PREFIX) for c in sensors},
        {c: prefixed(c, SETTING_PREFIX) for c in settings},
    )


def rul_to_float(delta: pd.Series | np.ndarray, time_unit: str) -> np.ndarray:
    """Time differences as float in ``time_unit`` (timedeltas) or as is (numbers)."""
    s = pd.Series(delta)
    if pd.api.types.is_timedelta64_dtype(s):
        step = pd.Timedelta(1, unit="D" if time_unit == "d" else time_unit)  # type: ignore[arg-type]
        return np.asarray((s / step).to_numpy(dtype=np.float64))  # type: ignore[operator]
    return s.to_numpy(dtype=np.float64)


def check_and_label(
    frame: pd.DataFrame,
    rows: np.ndarray | None,
    file: str | None,
    window: int | None,
    nan_policy: NanPolicy,
    problems: list[DataValidationError] | None,
) -> pd.DataFrame:
    """Validate (raise) or collect problems (best effort), as the loaders all do."""
    kwargs: dict[str, Any] = dict(file=file, window=window, nan_policy=nan_policy, row_numbers=rows)
    if problems is None:
        return _validate(frame, **kwargs)
    problems.extend(find_problems(frame, **kwargs))
    return frame


def _pivot_long(
    raw: pd.DataFrame, rows: np.ndarray, m: ColumnMapping, file: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Long (unit, time, variable, value) -> wide, in order of first appearance."""
    require_columns(raw, [m.variable, m.value], file)
    key = raw[[m.unit, m.time]]
    var = raw[m.variable]
    if var.isna().any():
        pos = int(np.argmax(var.isna().to_numpy()))
        raise DataValidationError(
            "missing variable name", file=file, column=m.variable, row=int(rows[pos])
        )
    dup = raw.duplicated([m.unit, m.time, m.variable]).to_numpy()
    if dup.any():
        pos = int(np.argmax(dup))
        raise DataValidationError(
            f"duplicate (unit, time, variable): {raw[m.unit].iat[pos]!r}, "
            f"{raw[m.time].iat[pos]!r}, {var.iat[pos]!r} appears twice",
            file=file,
            column=m.variable,
            row=int(rows[pos]),
        )
    value = raw[m.value]
    num = pd.to_numeric(value, errors="coerce")
    wrong = (num.isna() & value.notna()).to_numpy()
    if wrong.any():
        pos = int(np.argmax(wrong))
        raise DataValidationError(
            f"non-numeric value {str(value.iat[pos])!r} for variable {str(var.iat[pos])!r}",
            file=file,
            column=m.value,
            row=int(rows[pos]),
        )
    kcode = key.groupby([m.unit, m.time], sort=False, dropna=False).ngroup().to_numpy()
    vcode, vnames = pd.factorize(var.astype(str), sort=False)
    n_keys = int(kcode.max()) + 1
    wide = np.full((n_keys, len(vnames)), np.nan)
    wide[kcode, vcode] = num.to_numpy(dtype=np.float64)
    first = np.full(n_keys, len(raw), dtype=np.int64)
    np.minimum.at(first, kcode, np.arange(len(raw)))
    out = pd.DataFrame(wide, columns=[str(v) for v in vnames])
    extra = [c for c in raw.columns if c not in (m.variable, m.value)]
    head = raw[extra].iloc[first].reset_index(drop=True)
    return pd.concat([head, out], axis=1), rows[first]


def _load_one(
    path: Path,
    m: ColumnMapping,
    split: str,
    window: int | None,
    nan_policy: NanPolicy,
    problems: list[DataValidationError] | None,
) -> Fleet:
    file = str(path)
    raw, rows = read_frame(path)
    require_columns(raw, [m.unit, m.time] + ([m.rul] if m.rul else []), file)
    if m.layout == "long":
        raw, rows = _pivot_long(raw, rows, m, file)
    taken = [m.unit, m.time] + ([m.rul] if m.rul else [])
    sensor_map, setting_map = pick_columns(raw, taken, m.sensors, m.settings, file)
    if not sensor_map:
        raise DataValidationError("no sensor columns found", file=file, column="sensor_*")
    frame = pd.DataFrame({UNIT: as_unit_strings(raw[m.unit])})
    frame[TIME] = parse_time(raw[m.time], file, m.time, rows)
    for src, dst in {**setting_map, **sensor_map}.items():
        frame[dst] = raw[src]
    rul_src = None
    if m.rul:
        rul_src = raw[m.rul]
        num = pd.to_numeric(rul_src, errors="coerce")
        wrong = (num.isna() & rul_src.notna()).to_numpy()
        if wrong.any():
            pos = int(np.argmax(wrong))
            raise DataValidationError(
                f"non-numeric RUL value {str(rul_src.iat[pos])!r}",
                file=file,
                column=m.rul,
                row=int(rows[pos]),
            )
        frame[RUL_RAW] = num.to_numpy(dtype=np.float64)
    frame, rows = group_by_unit(frame, rows)
    frame = check_and_label(frame, rows, file, window, nan_policy, problems)
    is_stamp = pd.api.types.is_datetime64_any_dtype(frame[TIME])
    if rul_src is None:
        if m.run_to_failure and split == "train":
            last = frame.groupby(UNIT, sort=False)[TIME].transform("max")
            frame[RUL_RAW] = rul_to_float(last - frame[TIME], m.time_unit)
        else:
            frame[RUL_RAW] = np.nan
    meta = FleetMeta(
        name=f"table-{path.name.split('.')[0]}",
        source="table",
        split=split,
        time_unit=TIME_UNITS[m.time_unit] if is_stamp else "step",
        censored_units=[]
        if (m.rul or (m.run_to_failure and split == "train"))
        else [str(u) for u in pd.unique(frame[UNIT])],
        extra={
            "file": file,
            "columns": {v: k for k, v in {**setting_map, **sensor_map}.items()},
            "layout": m.layout,
        },
    )
    return Fleet(frame, meta)


def load_table(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    test_path: str | Path | None = None,
    *,
    window: int | None = None,
    nan_policy: NanPolicy = "error",
    problems: list[DataValidationError] | None = None,
) -> FleetSplits:
    """A generic table (and optional test table) as a validated FleetSplits.

    ``window`` is checked on the training table only; ``problems`` collects validation
    problems instead of raising them (see ``load_cmapss``).
    """
    m = mapping or ColumnMapping()
    train = _load_one(Path(path), m, "train", window, nan_policy, problems)
    test = None
    if test_path is not None:
        test = _load_one(Path(test_path), m, "test", None, nan_policy, problems)
    return FleetSplits(train=train, test=test)
