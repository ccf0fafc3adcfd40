"""NASA C-MAPSS turbofan text files (FD001-FD004) as a validated FleetSplits.

A subset is three files in one folder, each plain or gzipped (``train_FD001.txt`` or
``train_FD001.txt.gz``; where both exist the plain file is read): ``train`` (engines run to
failure), ``test`` (engines cut off before failure) and ``RUL`` (true remaining life of each
test engine at its last cycle, one line per engine, in unit order). The readings have 26
space-separated columns (lines end in spaces): unit, cycle, setting_1..3, sensor_1..21.

Canonical form:

- ``unit`` is the engine number as a string without padding (``"1"``, ``"2"``, ...): the
  name NASA's papers and the RUL file use. Rows stay in file (numeric unit) order; string
  order differs ("10" < "2"), so sort with ``key=int`` when numeric order matters.
- ``time`` is the cycle (int64).
- ``rul_raw``: train = last cycle of the unit - cycle (the engine fails after its last
  cycle); test = RUL[unit] + last cycle - cycle.
- FD002/FD004 have six operating regimes, FD003/FD004 two fault modes whose assignment to
  engines is not published, so ``meta.fault_modes`` stays empty.

Parsing is pandas' C reader with a whitespace separator (FD001 train, 20631 lines, reads
in a few hundredths of a second). Blank lines are kept while parsing and dropped afterwards,
so every problem is reported with the 1-based line number a user sees in an editor.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdmlens.data.fleet import RUL_RAW, TIME, UNIT, Fleet, FleetMeta, FleetSplits
from pdmlens.data.textio import named_read_errors
from pdmlens.data.validate import NanPolicy, find_problems, validate_fleet
from pdmlens.errors import DataValidationError

SUBSETS = ("FD001", "FD002", "FD003", "FD004")
SETTINGS = [f"setting_{i}" for i in range(1, 4)]
SENSORS = [f"sensor_{i}" for i in range(1, 22)]
COLUMNS = [UNIT, TIME, *SETTINGS, *SENSORS]
"""The 26 columns of a C-MAPSS readings file, in file order (``time`` is the cycle)."""

_DESCRIPTION = {
    "FD001": "one operating condition, one fault mode (HPC degradation)",
    "FD002": "six operating conditions, one fault mode (HPC degradation)",
    "FD003": "one operating condition, two fault modes (HPC and fan degradation)",
    "FD004": "six operating conditions, two fault modes (HPC and fan degradation)",
}


def find_file(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz`` (plain preferred); a clear error if neither."""
    plain = folder / stem
    if plain.is_file():
        return plain
    gz = folder / (stem + ".gz")
    if gz.is_file():
        return gz
    raise DataValidationError(
        f"C-MAPSS file not found: neither {stem} nor {stem}.gz exists in this folder",
        file=str(folder),
    )


def read_readings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """One readings file as a raw 26-column frame plus each row's line number (1-based).

    Only shape problems are raised here (too many / too few fields); values are checked by
    validation, which names the line of the first bad token. A byte that is not UTF-8 and
    a truncated or corrupt ``.gz`` are named errors too.
    """
    with named_read_errors(path):
        return _read_readings(path)


def _read_readings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        raw = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            skip_blank_lines=False,
            engine="c",
            compression="infer",
        )
    except pd.errors.EmptyDataError:
        raise DataValidationError("empty input: the file has no rows", file=str(path)) from None
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise DataValidationError(
                f"line has {m.group(3)} fields, expected {m.group(1)} like the lines before "
                f"(a C-MAPSS line has {len(COLUMNS)}: unit, cycle, 3 settings, 21 sensors)",
                file=str(path),
                row=int(m.group(2)),
            ) from None
        raise DataValidationError(f"cannot parse the file: {exc}", file=str(path)) from None
    line = np.arange(1, len(raw) + 1)
    blank = raw.isna().all(axis=1).to_numpy()
    if blank.any():
        raw, line = raw.loc[~blank], line[~blank]
    if raw.shape[1] != len(COLUMNS):
        raise DataValidationError(
            f"expected {len(COLUMNS)} columns (unit, cycle, setting_1..3, sensor_1..21), "
            f"found {raw.shape[1]}",
            file=str(path),
            row=int(line[0]) if len(line) else None,
        )
    raw.columns = COLUMNS
    raw = raw.reset_index(drop=True)
    _check_short_lines(path, raw, line)
    return raw, line


def _check_short_lines(path: Path, raw: pd.DataFrame, line: np.ndarray) -> None:
    """A line with fewer than 26 fields is padded with NaN by the reader: find such lines.

    Only rows whose last field is NaN are suspects (rare); the file's text is read again
    just then, so that a literal ``nan`` token is told apart from a missing field.
    """
    suspect = raw[COLUMNS[-1]].isna().to_numpy()
    if not suspect.any():
        return
    wanted = {int(n): int(i) for i, n in enumerate(line[suspect])}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        for number, text in enumerate(fh, 1):
            if number in wanted:
                n_fields = len(text.split())
                if n_fields < len(COLUMNS):
                    raise DataValidationError(
                        f"line has {n_fields} fields, fewer than {len(COLUMNS)} "
                        f"(first missing: {COLUMNS[n_fields]})",
                        file=str(path),
                        column=COLUMNS[n_fields],
                        row=number,
                    )


def _unit_ids(raw: pd.DataFrame, path: Path, lines: np.ndarray) -> pd.Series:
    s = raw[UNIT]
    if not pd.api.types.is_numeric_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        wrong = (num.isna() & s.notna()).to_numpy()
        if wrong.any():
            pos = int(np.argmax(wrong))
            raise DataValidationError(
                f"non-numeric unit number {str(s.iat[pos])!r}",
                file=str(path),
                column=UNIT,
                row=int(lines[pos]),
            )
        s = num
    arr = s.to_numpy(dtype=np.float64)
    frac = arr != np.round(arr)
    if frac.any():
        pos = int(np.argmax(frac))
        raise DataValidationError(
            f"unit number {arr[pos]} is not an integer",
            file=str(path),
            column=UNIT,
            row=int(lines[pos]),
        )
    return pd.Series(arr.astype(np.int64).astype(str), dtype=object)


def _last_cycle(frame: pd.DataFrame) -> np.ndarray:
    """Per row, the last cycle of its unit (NaN-tolerant; time may still be unvalidated)."""
    t = pd.to_numeric(frame[TIME], errors="coerce")
    return t.groupby(frame[UNIT], sort=False).transform("max").to_numpy(dtype=np.float64)


def read_rul(path: Path) -> np.ndarray:
    """The RUL file: one non-negative integer per line, in unit order."""
    with named_read_errors(path):
        return _read_rul(path)


def _read_rul(path: Path) -> np.ndarray:
    try:
        raw = pd.read_csv(path, sep=r"\s+", header=None, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DataValidationError("empty input: the RUL file has no rows", file=str(path)) from None
    except pd.errors.ParserError as exc:
        raise DataValidationError(f"cannot parse the RUL file: {exc}", file=str(path)) from None
    if raw.shape[1] != 1:
        raise DataValidationError(
            f"expected one RUL value per line, found {raw.shape[1]} columns",
            file=str(path),
            row=1,
        )
    s = raw[0]
    num = pd.to_numeric(s, errors="coerce")
    wrong = num.isna().to_numpy()
    if wrong.any():
        pos = int(np.argmax(wrong))
        raise DataValidationError(
            f"RUL value {str(s.iat[pos])!r} is not a number",
            file=str(path),
            column="rul",
            row=pos + 1,
        )
    values = num.to_numpy(dtype=np.float64)
    neg = values < 0
    if neg.any():
        pos = int(np.argmax(neg))
        raise DataValidationError(
            f"RUL {values[pos]} is negative", file=str(path), column="rul", row=pos + 1
        )
    return values


def _load_split(
    path: Path,
    split: str,
    subset: str,
    rul: np.ndarray | None,
    rul_path: Path | None,
    validate: bool,
    window: int | None,
    nan_policy: NanPolicy,
    problems: list[DataValidationError] | None,
) -> Fleet:
    raw, lines = read_readings(path)
    raw[UNIT] = _unit_ids(raw, path, lines)
    if validate or problems is not None:
        kwargs: dict[str, Any] = dict(
            file=str(path), window=window, nan_policy=nan_policy, row_numbers=lines
        )
        if problems is None:
            raw = validate_fleet(raw, **kwargs)
        else:
            problems.extend(find_problems(raw, **kwargs))
    last = _last_cycle(raw)
    t = pd.to_numeric(raw[TIME], errors="coerce").to_numpy(dtype=np.float64)
    units = pd.unique(raw[UNIT])
    if rul is None:
        rul_raw = last - t
    else:
        if len(rul) != len(units):
            raise DataValidationError(
                f"the RUL file has {len(rul)} values but {path.name} has {len(units)} units "
                f"(one RUL line per test unit, in unit order)",
                file=str(rul_path),
                column="rul",
                row=min(len(rul), len(units)) + 1,  # the first value missing or extra
            )
        order = np.argsort(np.array([int(u) for u in units]), kind="stable")
        by_unit = dict(zip(np.asarray(units)[order], rul, strict=True))
        end = raw[UNIT].map(by_unit).to_numpy(dtype=np.float64)
        rul_raw = end + last - t
    frame = raw.assign(**{RUL_RAW: rul_raw})
    meta = FleetMeta(
        name=f"cmapss-{subset}",
        source="cmapss",
        split=split,
        time_unit="cycle",
        extra={"subset": subset, "file": str(path), "description": _DESCRIPTION[subset]},
    )
    return Fleet(frame, meta)


def load_cmapss(
    path: str | Path,
    subset: str = "FD001",
    validate: bool = True,
    window: int | None = None,
    *,
    nan_policy: NanPolicy = "error",
    problems: list[DataValidationError] | None = None,
) -> FleetSplits:
    """Load a C-MAPSS subset from a folder holding its train/test/RUL files (plain or .gz).

    ``window``: when given, training units shorter than it are refused (test units may be
    shorter: the C-MAPSS protocol pads them or keeps full windows only). ``problems``: when
    a list is given, validation problems are appended to it instead of raised (the frames
    are then returned as parsed, best effort), which is what ``pdmlens data inspect`` uses.
    Problems that make the files unreadable are raised either way.
    """
    folder = Path(path)
    subset = subset.upper()
    if subset not in SUBSETS:
        raise DataValidationError(
            f"unknown C-MAPSS subset {subset!r}; expected one of {', '.join(SUBSETS)}"
        )
    if not folder.is_dir():
        raise DataValidationError("C-MAPSS folder not found (or not a folder)", file=str(folder))
    train_path = find_file(folder, f"train_{subset}.txt")
    test_path = find_file(folder, f"test_{subset}.txt")
    rul_path = find_file(folder, f"RUL_{subset}.txt")
    train = _load_split(
        train_path, "train", subset, None, None, validate, window, nan_policy, problems
    )
    rul = read_rul(rul_path)
    test = _load_split(
        test_path, "test", subset, rul, rul_path, validate, None, nan_policy, problems
    )
    return FleetSplits(train=train, test=test)
