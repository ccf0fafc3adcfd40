"""Fuzzed inputs for every reader (issue 13, item 4): C-MAPSS text, CSV and Parquet tables
(wide and long), events tables and the YAML run config.

Each case starts from a valid file and applies random damage: truncated lines and files,
wrong field counts, bytes that are not UTF-8, BOMs, CRLF line ends, duplicate or empty
header names, NaN/inf spellings, huge values, text in numeric fields, empty files, gzip cut
short. Every case must end in either a valid fleet (re-validated here: finite numbers within
the magnitude bound, each unit's time strictly increasing) or a DataValidationError that
names the file and the row or column (the config: a ConfigError naming the file) — never
another exception and never a hang (each case runs under a 20 s alarm).

Runs are bounded (``max_examples`` per reader, no deadline) and derandomized, so the suite is
repeatable; the number of cases run is printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdmlens.config import ColumnMapping, EventsConfig, RunConfig, load_config
from pdmlens.data.cmapss import COLUMNS as CMAPSS_COLUMNS
from pdmlens.data.cmapss import load_cmapss
from pdmlens.data.events import load_events
from pdmlens.data.fleet import FleetSplits
from pdmlens.data.table import load_table
from pdmlens.data.validate import MAX_ABS, validate_fleet
from pdmlens.errors import ConfigError, DataValidationError

CASES: Counter[str] = Counter()
"""cases run per reader (printed at the end of the module)."""

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FILE_LEVEL = (
    "empty input",
    "truncated or corrupt",
    "cannot read Parquet",
    "cannot parse",
    "not found",
)
"""problems of a whole file, where no row or column can be named."""


@pytest.fixture(scope="module", autouse=True)
def report_case_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    line = f"fuzzed reader cases run: {sum(CASES.values())} ({dict(sorted(CASES.items()))})"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + line)


@contextlib.contextmanager
def alarm(seconds: int = 20) -> Iterator[None]:
    """Fail a case that runs longer than ``seconds`` (a hang) instead of waiting forever."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"reader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_outcome(reader: str, load: Callable[[], FleetSplits], files: list[Path]) -> None:
    """A valid fleet, or a DataValidationError naming one of ``files`` and a row or column
    (file-level problems: the file alone)."""
    CASES[reader] += 1
    try:
        with alarm():
            splits = load()
    except DataValidationError as exc:
        names = {str(f) for f in files} | {str(f.parent) for f in files}
        assert exc.file in names, f"error does not name the file: {exc!r}"
        if exc.row is None and exc.column is None:
            located = re.search(r"\bline \d+", exc.reason) is not None  # e.g. the header
            assert located or any(k in exc.reason for k in FILE_LEVEL), f"not located: {exc}"
        if exc.row is not None:
            assert exc.row >= 1, f"rows are 1-based: {exc}"
        return
    for _, fleet in splits.items():
        frame = fleet.frame
        assert len(frame) > 0 and fleet.sensors
        values = frame[fleet.sensors + fleet.settings].to_numpy(dtype=np.float64)
        assert np.isfinite(values).all() and (np.abs(values) <= MAX_ABS).all()
        validate_fleet(frame.drop(columns="rul_raw", errors="ignore"))  # still valid


# --------------------------------------------------------------------------- damage
TOKENS = [
    "",
    "nan",
    "NaN",
    "NA",
    "null",
    "inf",
    "-inf",
    "Infinity",
    "-Infinity",
    "1e308",
    "-1e308",
    "1e400",
    "1e151",
    "abc",
    "1,5",
    '"',
    "0x1F",
    " 7 ",
    "2024-01-01",
    "\u00e9",
]
BAD_BYTES = [b"\xff", b"\xe9", b"\x80", b"\xc3", b"\x00"]


@st.composite
def damaged(draw: st.DrawFn, text: str, sep: str = ",") -> bytes:
    """``text`` with up to three kinds of damage, as bytes."""
    lines = text.split("\n")
    n_ops = draw(st.integers(0, 3))
    for _ in range(n_ops):
        op = draw(
            st.sampled_from(
                [
                    "token",
                    "token",
                    "truncate_line",
                    "extra_field",
                    "drop_field",
                    "drop_line",
                    "dup_line",
                    "blank_line",
                    "dup_header",
                    "empty_header",
                ]
            )
        )
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        fields = lines[i].split(sep)
        j = draw(st.integers(0, max(len(fields) - 1, 0)))
        if op == "token":
            fields[j] = draw(st.sampled_from(TOKENS))
            lines[i] = sep.join(fields)
        elif op == "truncate_line":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "extra_field":
            lines[i] = lines[i] + sep + draw(st.sampled_from(TOKENS))
        elif op == "drop_field" and len(fields) > 1:
            del fields[j]
            lines[i] = sep.join(fields)
        elif op == "drop_line" and len(lines) > 1:
            del lines[i]
        elif op == "dup_line":
            lines.insert(i, lines[i])
        elif op == "blank_line":
            lines.insert(i, "")
        elif op == "dup_header":
            head = lines[0].split(sep)
            head[j % len(head)] = head[(j + 1) % len(head)]
            lines[0] = sep.join(head)
        elif op == "empty_header":
            head = lines[0].split(sep)
            head[j % len(head)] = ""
            lines[0] = sep.join(head)
    eol = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    data = eol.join(lines).encode()
    if draw(st.booleans()):
        k = draw(st.integers(0, 2))
        for _ in range(k):
            pos = draw(st.integers(0, len(data)))
            data = data[:pos] + draw(st.sampled_from(BAD_BYTES)) + data[pos:]
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data  # UTF-8 BOM
    cut = draw(st.integers(0, 14))
    if cut == 0:
        data = b""
    elif cut == 1:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def maybe_gzip(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """Plain, gzipped, or gzipped and cut short; the suffix to give the file."""
    kind = draw(st.sampled_from(["plain", "plain", "gz", "gz-cut"]))
    if kind == "plain":
        return data, ""
    packed = gzip.compress(data, mtime=0)
    if kind == "gz-cut":
        packed = packed[: draw(st.integers(0, max(len(packed) - 1, 0)))]
    return packed, ".gz"


def _wide_text(n_units: int, n_rows: int, settings: bool, seed: int) -> str:
    rng = np.random.default_rng(seed)
    head = ["unit", "time", *(["alt"] if settings else []), "s1", "s2"]
    lines = [",".join(head)]
    for u in range(n_units):
        for t in range(1, n_rows + 1):
            vals = [f"m{u}", str(t)]
            if settings:
                vals.append(f"{rng.integers(0, 3) * 10.0:g}")
            vals += [f"{rng.normal():.4f}", f"{100 + rng.normal():.3f}"]
            lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def _long_text(n_units: int, n_rows: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = ["unit,time,variable,value"]
    for u in range(n_units):
        for t in range(1, n_rows + 1):
            for v in ("s1", "s2"):
                lines.append(f"m{u},{t},{v},{rng.normal():.4f}")
    return "\n".join(lines) + "\n"


def _workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="pdmlens-fuzz-")


# --------------------------------------------------------------------------- readers
@FUZZ
@given(st.data(), st.integers(1, 3), st.integers(1, 6), st.booleans())
def test_fuzz_wide_csv(data: st.DataObject, n_units: int, n_rows: int, with_settings: bool):
    text = _wide_text(n_units, n_rows, with_settings, n_units * 10 + n_rows)
    raw = data.draw(damaged(text))
    raw, suffix = maybe_gzip(data.draw, raw)
    mapping = ColumnMapping(settings=["alt"] if with_settings else [])
    with _workdir() as d:
        path = Path(d) / f"fleet.csv{suffix}"
        path.write_bytes(raw)
        check_outcome("csv-wide", lambda: load_table(path, mapping), [path])


@FUZZ
@given(st.data(), st.integers(1, 3), st.integers(1, 5))
def test_fuzz_long_csv(data: st.DataObject, n_units: int, n_rows: int):
    raw = data.draw(damaged(_long_text(n_units, n_rows, n_units + n_rows)))
    mapping = ColumnMapping(layout="long")
    with _workdir() as d:
        path = Path(d) / "fleet.csv"
        path.write_bytes(raw)
        check_outcome("csv-long", lambda: load_table(path, mapping), [path])


VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e151, 0.0, 1.5]),
    st.none(),
    st.sampled_from(["abc", "nan", "inf", "", "1e400", "2024-01-01"]),
)


@st.composite
def parquet_frame(draw: st.DrawFn, layout: str) -> pd.DataFrame:
    n = draw(st.integers(0, 8))
    units = draw(st.lists(st.sampled_from(["a", "b", None, 1]), min_size=n, max_size=n))
    times = draw(
        st.lists(
            st.one_of(st.integers(-3, 10), st.sampled_from([None, 2.5, "x", float("inf")])),
            min_size=n,
            max_size=n,
        )
    )
    frame = pd.DataFrame({"unit": pd.Series(units, dtype=object), "time": pd.Series(times)})
    if draw(st.booleans()):  # timestamps instead of numbers
        frame["time"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h")
    cols = ["variable", "value"] if layout == "long" else ["s1", "s2"]
    for c in cols:
        if c == "variable":
            frame[c] = draw(st.lists(st.sampled_from(["s1", "s2", None]), min_size=n, max_size=n))
        else:
            vals = draw(st.lists(VALUES, min_size=n, max_size=n))
            frame[c] = pd.Series(vals, dtype=object)
            if all(v is None or isinstance(v, float) for v in vals):
                frame[c] = frame[c].astype(float)
    for c in list(frame.columns):  # mixed object columns become text (as a writer would)
        if frame[c].dtype == object:
            frame[c] = frame[c].map(lambda v: v if v is None else str(v))
    return frame


@FUZZ
@given(st.data(), st.sampled_from(["wide", "long"]))
def test_fuzz_parquet(data: st.DataObject, layout: str):
    frame = data.draw(parquet_frame(layout))
    mapping = ColumnMapping(layout=layout)  # type: ignore[arg-type]
    with _workdir() as d:
        path = Path(d) / "fleet.parquet"
        frame.to_parquet(path, index=False)
        if data.draw(st.integers(0, 5)) == 0:  # cut short
            raw = path.read_bytes()
            path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        check_outcome(f"parquet-{layout}", lambda: load_table(path, mapping), [path])


@FUZZ
@given(st.data(), st.integers(1, 3), st.integers(2, 6))
def test_fuzz_events(data: st.DataObject, n_assets: int, n_rows: int):
    lines = ["machine_id,ts,s1,s2"]
    fails = ["machine_id,ts"]
    for a in range(n_assets):
        for t in range(n_rows):
            lines.append(f"p{a},2024-01-01T{t:02d}:00:00,{t * 0.5:.2f},{10 - t}.0")
        fails.append(f"p{a},2024-01-01T{n_rows // 2:02d}:00:00")
    readings = data.draw(damaged("\n".join(lines) + "\n"))
    failures = data.draw(damaged("\n".join(fails) + "\n"))
    cfg = EventsConfig(asset="machine_id", timestamp="ts")
    with _workdir() as d:
        rpath, fpath = Path(d) / "readings.csv", Path(d) / "failures.csv"
        rpath.write_bytes(readings)
        fpath.write_bytes(failures)
        check_outcome("events", lambda: load_events(rpath, fpath, cfg), [rpath, fpath])


def _cmapss_text(n_units: int, n_rows: int) -> str:
    rng = np.random.default_rng(n_units * 7 + n_rows)
    lines = []
    for u in range(1, n_units + 1):
        for t in range(1, n_rows + 1):
            vals = [str(u), str(t)] + [f"{v:.4f}" for v in rng.normal(size=24)]
            lines.append(" ".join(vals) + "  ")
    return "\n".join(lines) + "\n"


@FUZZ
@given(st.data(), st.integers(1, 3), st.integers(1, 4))
def test_fuzz_cmapss(data: st.DataObject, n_units: int, n_rows: int):
    text = _cmapss_text(n_units, n_rows)
    train = data.draw(damaged(text, sep=" "))
    test = data.draw(damaged(text, sep=" "))
    rul = data.draw(damaged("\n".join(str(10 + u) for u in range(n_units)) + "\n", sep=" "))
    train, suffix = maybe_gzip(data.draw, train)
    with _workdir() as d:
        folder = Path(d)
        files = [
            folder / f"train_FD001.txt{suffix}",
            folder / "test_FD001.txt",
            folder / "RUL_FD001.txt",
        ]
        for f, raw in zip(files, (train, test, rul), strict=True):
            f.write_bytes(raw)
        check_outcome("cmapss", lambda: load_cmapss(folder, "FD001"), files)
    assert len(CMAPSS_COLUMNS) == 26


YAML_OK = """\
seed: 3
data:
  source: table
  path: /data/fleet.csv
  columns: {unit: engine, time: cycle, settings: [alt], layout: wide}
window:
  length: 30
  stride: 2
model:
  task: rul
  lstm: {epochs: 5, hidden_size: 16, dropout: 0.1}
prepare:
  val_fraction: 0.25
  normalize: global
"""


@FUZZ
@given(st.data())
def test_fuzz_yaml_config(data: st.DataObject):
    raw = data.draw(damaged(YAML_OK, sep=" "))
    if data.draw(st.booleans()):  # YAML-specific damage: indentation, brackets, colons
        pos = data.draw(st.integers(0, len(raw)))
        token = data.draw(st.sampled_from([b"  ", b"[", b"{", b": ", b"- ", b"\t"]))
        raw = raw[:pos] + token + raw[pos:]
    CASES["yaml"] += 1
    with _workdir() as d:
        path = Path(d) / "run.yaml"
        path.write_bytes(raw)
        try:
            with alarm():
                cfg = load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc), f"config error does not name the file: {exc}"
            return
        assert isinstance(cfg, RunConfig) and cfg.window.length >= 1 and cfg.window.stride >= 1
