"""Validation at ingest: every problem named by file, column and row (or unit).

Each source builds a raw long table (``unit``, ``time``, ``setting_*``, ``sensor_*``,
optionally ``rul_raw``) and hands it here before anything downstream runs. The checks, in
the order they are reported:

1. empty input (no rows), duplicated column names, missing required columns (``unit``,
   ``time``, at least one ``sensor_*``);
2. missing unit names; non-numeric values in ``time``, ``setting_*`` and ``sensor_*`` (the
   raw value is quoted);
3. missing time; each unit's rows contiguous; duplicate (unit, time); time not increasing
   within a unit. Rows are never re-sorted here: a table out of order is reported, not
   silently fixed (the loaders group rows by unit with a *stable* sort, which keeps each
   unit's rows in file order, so a time going backwards is still caught);
4. values too large for float statistics (``|x| > MAX_ABS``, below), NaN / inf in settings
   and sensors (``nan_policy="ffill"`` forward-fills NaN per unit and
   back-fills the leading gap; a column NaN for a whole unit, and any inf, stay errors);
5. units shorter than the window, when a window length is given.

``validate_fleet`` raises the first problem; ``find_problems`` collects the first offending
row of every (check, column) pair, for ``pdmlens data inspect``.

Row numbers: ``row_numbers`` maps each frame row to the row a user finds in the file (the
1-based data row, header not counted, which for header-less C-MAPSS text is the line
number). Without it, rows are 1-based positions when ``file`` is given and 0-based table
positions otherwise (the DataValidationError contract).

Every check is vectorised over whole columns (numpy / pandas' Cython group-bys), so ten
million rows validate in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from pdmlens.data.fleet import SENSOR_PREFIX, SETTING_PREFIX, TIME, UNIT
from pdmlens.errors import DataValidationError

NanPolicy = Literal["error", "ffill"]

MAX_ABS = 1e150
"""Largest magnitude accepted in time, settings and sensors. Normalisation sums squared
deviations in float64: (2 x 1e150)^2 x rows stays below float64's 1.8e308 for up to about
4e7 rows per regime, while |x| near 1e154 already overflows one square and a value such as
1e308 turned a sensor's std into inf and the sensor into zeros. No physical reading is near
the bound."""

__all__ = [
    "as_unit_strings",
    "find_problems",
    "group_by_unit",
    "validate_fleet",
]


def as_unit_strings(values: pd.Series) -> pd.Series:
    """Unit ids as strings: integers (and integral floats such as ``1.0``) become ``"1"``.

    Missing ids stay missing (NaN) so validation can report them.
    """
    s = values
    if pd.api.types.is_bool_dtype(s):
        return s.astype(str).astype(object)
    if pd.api.types.is_integer_dtype(s):
        return s.astype(str).astype(object)
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(dtype=np.float64)
        finite = np.isfinite(arr)
        if finite.all() and np.array_equal(arr, np.round(arr)):
            return pd.Series(arr.astype(np.int64).astype(str), index=s.index, dtype=object)
        out = s.astype(str).astype(object)
        out[s.isna()] = np.nan
        return out
    out = s.astype(object)
    mask = out.notna().to_numpy()
    if mask.all():
        return out.astype(str).astype(object)
    out = out.copy()
    out[mask] = out[mask].astype(str)
    return out


def group_by_unit(frame: pd.DataFrame, row_numbers: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Make each unit's rows contiguous (units in order of first appearance).

    The sort is stable, so rows keep their file order within a unit and a time that goes
    backwards is still reported by validation. ``row_numbers`` travel with the rows.
    """
    codes, _ = pd.factorize(frame[UNIT], use_na_sentinel=False)
    if len(codes) < 2 or bool(np.all(codes[1:] >= codes[:-1])):
        return frame.reset_index(drop=True), np.asarray(row_numbers)
    order = np.argsort(codes, kind="stable")
    return frame.iloc[order].reset_index(drop=True), np.asarray(row_numbers)[order]


def validate_fleet(
    frame: pd.DataFrame,
    *,
    file: str | None = None,
    window: int | None = None,
    nan_policy: NanPolicy = "error",
    row_numbers: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Check a raw long table; return it with numeric columns as float (NaN filled if asked).

    Raises DataValidationError for the first problem found (see the module docstring).
    """
    check = _Checker(frame, file, window, nan_policy, row_numbers)
    for problem in check.run():
        raise problem
    return check.frame


def find_problems(
    frame: pd.DataFrame,
    *,
    file: str | None = None,
    window: int | None = None,
    nan_policy: NanPolicy = "error",
    row_numbers: Sequence[int] | np.ndarray | None = None,
) -> list[DataValidationError]:
    """Every problem (first offending row per check and column), without stopping."""
    return list(_Checker(frame, file, window, nan_policy, row_numbers).run())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Checker:
    """One pass of every check; ``run`` yields problems, ``frame`` holds the cleaned table."""

    def __init__(
        self,
        frame: pd.DataFrame,
        file: str | None,
        window: int | None,
        nan_policy: str,
        row_numbers: Sequence[int] | np.ndarray | None,
    ) -> None:
        if nan_policy not in ("error", "ffill"):
            raise ValueError(f"nan_policy must be 'error' or 'ffill', not {nan_policy!r}")
        if window is not None and window < 1:
            raise ValueError("window must be >= 1")
        self.frame = frame
        self.file = None if file is None else str(file)
        self.window = window
        self.nan_policy = nan_policy
        self.rows: np.ndarray | None = None
        if row_numbers is not None:
            rn = np.asarray(row_numbers)
            if len(rn) != len(frame):
                raise ValueError("row_numbers must have one entry per frame row")
            self.rows = rn
        self.codes: np.ndarray | None = None
        self.unit_names: np.ndarray | None = None

    # -- helpers ------------------------------------------------------------------
    def _row(self, pos: int) -> int:
        if self.rows is not None:
            return int(self.rows[pos])
        return int(pos) + 1 if self.file is not None else int(pos)

    def _err(
        self,
        message: str,
        column: str | None = None,
        pos: int | None = None,
        unit: str | None = None,
    ) -> DataValidationError:
        row = None if pos is None else self._row(pos)
        return DataValidationError(message, file=self.file, column=column, row=row, unit=unit)

    def _unit_at(self, pos: int) -> str:
        return str(self.frame[UNIT].iat[pos])

    # -- the checks ------------------------------------------------------------------
    def run(self) -> Iterator[DataValidationError]:
        frame = self.frame
        if len(frame) == 0:
            yield self._err("empty input: the table has no rows")
            return
        dup_cols = frame.columns[frame.columns.duplicated()]
        if len(dup_cols):
            yield self._err("column name appears more than once", column=str(dup_cols[0]))
            return
        missing = [c for c in (UNIT, TIME) if c not in frame.columns]
        for c in missing:
            yield self._err(f"required column '{c}' is missing", column=c)
        sensors = [c for c in frame.columns if str(c).startswith(SENSOR_PREFIX)]
        if not sensors:
            yield self._err(
                f"no sensor columns: at least one column named '{SENSOR_PREFIX}*' is required",
                column=f"{SENSOR_PREFIX}*",
            )
        if missing or not sensors:
            return
        settings = [c for c in frame.columns if str(c).startswith(SETTING_PREFIX)]
        self.frame = frame = frame.copy(deep=False)

        # unit ids
        unit_na = frame[UNIT].isna().to_numpy()
        if unit_na.any():
            pos = int(np.argmax(unit_na))
            yield self._err(
                f"missing unit id ({_plural(int(unit_na.sum()), 'row')})", column=UNIT, pos=pos
            )
            return
        if not (
            pd.api.types.is_object_dtype(frame[UNIT]) or pd.api.types.is_string_dtype(frame[UNIT])
        ):
            frame[UNIT] = as_unit_strings(frame[UNIT])

        # numeric columns; bad[c] marks rows already reported as non-numeric
        bad: dict[str, np.ndarray] = {}
        time_ok = True
        for col in [TIME, *settings, *sensors]:
            s = frame[col]
            if col == TIME and pd.api.types.is_datetime64_any_dtype(s):
                continue
            if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
                yield self._err(
                    "column holds timestamps or durations, not numbers", column=col, pos=0
                )
                bad[col] = np.ones(len(s), dtype=bool)
                frame[col] = np.full(len(s), np.nan)
                continue
            if pd.api.types.is_bool_dtype(s):
                frame[col] = s.astype(np.float64)
                continue
            if pd.api.types.is_numeric_dtype(s):
                continue
            num = pd.to_numeric(s, errors="coerce")
            wrong = (num.isna() & s.notna()).to_numpy()
            if wrong.any():
                pos = int(np.argmax(wrong))
                yield self._err(
                    f"non-numeric value {str(s.iat[pos])!r} "
                    f"({_plural(int(wrong.sum()), 'row')} in this column)",
                    column=col,
                    pos=pos,
                )
                bad[col] = wrong
                if col == TIME:
                    time_ok = False
            frame[col] = num.astype(np.float64)

        # sensors and settings as floats (ints from text files become float64)
        for col in [*settings, *sensors]:
            if not pd.api.types.is_float_dtype(frame[col]):
                frame[col] = frame[col].astype(np.float64)

        codes, uniques = pd.factorize(frame[UNIT], sort=False)
        self.codes, self.unit_names = codes, np.asarray(uniques, dtype=object)

        # time
        t = frame[TIME]
        t_na = t.isna().to_numpy()
        if TIME in bad:
            t_na = t_na & ~bad[TIME]
        if t_na.any():
            pos = int(np.argmax(t_na))
            yield self._err(
                f"missing time ({_plural(int(t_na.sum()), 'row')})",
                column=TIME,
                pos=pos,
                unit=self._unit_at(pos),
            )
            time_ok = False
        if pd.api.types.is_float_dtype(t) and time_ok:
            arr = t.to_numpy()
            inf = np.isinf(arr)
            huge = np.abs(arr) > MAX_ABS
            if inf.any():
                pos = int(np.argmax(inf))
                yield self._err(f"time is infinite ({arr[pos]})", column=TIME, pos=pos)
                time_ok = False
            elif huge.any():
                pos = int(np.argmax(huge))
                yield self._err(
                    f"time {arr[pos]:g} is too large in magnitude (the limit is {MAX_ABS:g})",
                    column=TIME,
                    pos=pos,
                )
                time_ok = False
            elif np.array_equal(arr, np.round(arr)):
                frame[TIME] = arr.astype(np.int64)

        # contiguity of units
        change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        starts = np.concatenate([[0], change])
        if len(starts) != len(uniques):
            block_codes = codes[starts]
            again = pd.Series(block_codes).duplicated().to_numpy()
            pos = int(starts[int(np.argmax(again))])
            first = int(np.argmax(codes == codes[pos]))
            yield self._err(
                f"the unit's rows are not contiguous: it reappears here after rows of other "
                f"units (first seen at row {self._row(first)}); group each unit's rows "
                f"together in time order",
                column=UNIT,
                pos=pos,
                unit=self._unit_at(pos),
            )
        elif time_ok:
            yield from self._time_order(codes)

        yield from self._values(settings + sensors, codes, bad)

        if self.window is not None:
            lengths = np.bincount(codes, minlength=len(uniques))
            short = np.flatnonzero(lengths < self.window)
            if len(short):
                u = int(short[0])
                pos = int(np.argmax(codes == u))
                more = f" ({len(short)} units are shorter)" if len(short) > 1 else ""
                yield self._err(
                    f"unit has only {_plural(int(lengths[u]), 'row')} but the window needs "
                    f"{self.window}{more}: use a shorter window (window.length), drop the "
                    f"unit, or load without the window check and let windows left-pad short "
                    f"units (window.pad = 'edge' or 'zero')",
                    column=UNIT,
                    pos=pos,
                    unit=str(self.unit_names[u]),
                )

    def _time_order(self, codes: np.ndarray) -> Iterator[DataValidationError]:
        t = self.frame[TIME]
        if pd.api.types.is_datetime64_any_dtype(t):
            if getattr(t.dtype, "tz", None) is not None:
                t = t.dt.tz_convert(None)
            arr = t.to_numpy().astype("datetime64[ns]").view(np.int64)
        else:
            arr = t.to_numpy()
        same = codes[1:] == codes[:-1]
        d = np.diff(arr)
        dup = same & (d == 0)
        if dup.any():
            pos = int(np.argmax(dup)) + 1
            yield self._err(
                f"duplicate (unit, time): time {t.iat[pos]} repeats the previous row's time "
                f"({_plural(int(dup.sum()), 'duplicate')})",
                column=TIME,
                pos=pos,
                unit=self._unit_at(pos),
            )
        back = same & (d < 0)
        if back.any():
            pos = int(np.argmax(back)) + 1
            yield self._err(
                f"time not increasing within the unit: {t.iat[pos]} comes after "
                f"{t.iat[pos - 1]} (rows are not re-sorted; order each unit's rows by time)",
                column=TIME,
                pos=pos,
                unit=self._unit_at(pos),
            )

    def _values(
        self, columns: list[str], codes: np.ndarray, bad: dict[str, np.ndarray]
    ) -> Iterator[DataValidationError]:
        frame = self.frame
        for col in columns:
            arr = frame[col].to_numpy()
            inf = np.isinf(arr)
            if inf.any():
                pos = int(np.argmax(inf))
                yield self._err(
                    f"infinite value {arr[pos]} ({_plural(int(inf.sum()), 'row')} in this "
                    f"column); inf is never filled",
                    column=col,
                    pos=pos,
                    unit=self._unit_at(pos),
                )
            with np.errstate(invalid="ignore"):
                huge = (np.abs(arr) > MAX_ABS) & ~inf
            if huge.any():
                pos = int(np.argmax(huge))
                yield self._err(
                    f"value {arr[pos]:g} is too large in magnitude "
                    f"({_plural(int(huge.sum()), 'row')} in this column; the limit is "
                    f"{MAX_ABS:g}, beyond which the float statistics of normalisation overflow)",
                    column=col,
                    pos=pos,
                    unit=self._unit_at(pos),
                )
            nan = np.isnan(arr)
            if col in bad:
                nan &= ~bad[col]
            if not nan.any():
                continue
            if self.nan_policy == "error":
                pos = int(np.argmax(nan))
                yield self._err(
                    f"missing value (NaN; {_plural(int(nan.sum()), 'row')} in this column); "
                    f"set data.nan_policy = 'ffill' to forward-fill within each unit",
                    column=col,
                    pos=pos,
                    unit=self._unit_at(pos),
                )
                continue
            names = self.unit_names
            assert names is not None  # set by run() before the value checks
            have = np.bincount(codes, weights=(~nan).astype(np.float64), minlength=len(names))
            empty = np.flatnonzero(have == 0)
            if len(empty):
                u = int(empty[0])
                pos = int(np.argmax(codes == u))
                yield self._err(
                    "column is NaN for the whole unit: nothing to forward-fill from",
                    column=col,
                    pos=pos,
                    unit=str(names[u]),
                )
                continue
            s = pd.Series(arr)
            filled = s.groupby(codes, sort=False).ffill()
            filled = filled.groupby(codes, sort=False).bfill()
            frame[col] = filled.to_numpy()
