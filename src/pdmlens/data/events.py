"""Telemetry readings plus failure events as run-to-failure units with RUL labels.

Two tables (CSV or Parquet, by extension): readings (asset id, timestamp, one column per
sensor) and failures (asset id, timestamp of each failure, optionally a fault-mode column).
Each asset's readings are cut at its failures:

- readings up to and including the k-th failure (and after the (k-1)-th) form unit
  ``<asset>#<k>``, with ``rul_raw`` = failure time - reading time in ``cfg.time_unit``;
- readings after the asset's last failure (or all of them, for an asset that never
  failed) form a right-censored unit ``<asset>#<k+1>``: ``rul_raw`` is NaN and the unit
  is listed in ``meta.censored_units`` (useful for scoring, not as labels);
- a failure with no readings between it and the previous failure yields no unit (logged,
  counted in ``meta.extra["empty_runs"]``); duplicated failure rows count once.

``time`` stays a timestamp (datetime64, naive UTC) because windows only need order; a
numeric timestamp column (hours, cycles) is kept numeric and RUL is then in that same unit.
Sensor columns are renamed ``sensor_<name>`` unless already prefixed (``setting_*``
columns stay settings); ``meta.extra["sensor_names"]`` maps canonical -> original names.

There is no principled test split inside one event log (a later time cut would leak the
same assets' health states), so ``test`` is None; prepare holds out validation units by
asset run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pdmlens.config import EventsConfig
from pdmlens.data.fleet import RUL_RAW, TIME, UNIT, Fleet, FleetMeta, FleetSplits
from pdmlens.data.table import (
    TIME_UNITS,
    check_and_label,
    parse_time,
    pick_columns,
    read_frame,
    require_columns,
    rul_to_float,
)
from pdmlens.data.validate import NanPolicy, as_unit_strings, group_by_unit
from pdmlens.errors import DataValidationError

log = logging.getLogger(__name__)


def _read_failures(
    path: Path, cfg: EventsConfig, stamp_kind: str
) -> tuple[pd.DataFrame, np.ndarray]:
    file = str(path)
    raw, rows = read_frame(path, allow_empty=True)  # no failures: every asset censored
    need = [cfg.asset, cfg.timestamp] + ([cfg.fault_mode] if cfg.fault_mode else [])
    require_columns(raw, need, file)
    asset = raw[cfg.asset]
    if asset.isna().any():
        pos = int(np.argmax(asset.isna().to_numpy()))
        raise DataValidationError(
            "missing asset id", file=file, column=cfg.asset, row=int(rows[pos])
        )
    when = parse_time(raw[cfg.timestamp], file, cfg.timestamp, rows)
    if when.isna().any():
        pos = int(np.argmax(when.isna().to_numpy()))
        raise DataValidationError(
            "missing failure time", file=file, column=cfg.timestamp, row=int(rows[pos])
        )
    is_stamp = pd.api.types.is_datetime64_any_dtype(when)
    if len(raw) and is_stamp != (stamp_kind == "datetime"):
        raise DataValidationError(
            f"failure times are {'timestamps' if is_stamp else 'numbers'} but the readings' "
            f"times are {'timestamps' if not is_stamp else 'numbers'}",
            file=file,
            column=cfg.timestamp,
            row=int(rows[0]),
        )
    out = pd.DataFrame({"asset": as_unit_strings(asset), "when": when})
    out["mode"] = raw[cfg.fault_mode].astype(str).to_numpy() if cfg.fault_mode else None
    out["row"] = rows
    n = len(out)
    out = out.drop_duplicates(["asset", "when"])
    if len(out) < n:
        log.info("%s: %d duplicated failure rows counted once", file, n - len(out))
    out = out.sort_values(["asset", "when"], kind="stable").reset_index(drop=True)
    return out, out["row"].to_numpy()


def load_events(
    readings_path: str | Path,
    failures_path: str | Path,
    cfg: EventsConfig | None = None,
    *,
    window: int | None = None,
    nan_policy: NanPolicy = "error",
    problems: list[DataValidationError] | None = None,
) -> FleetSplits:
    """Readings + failure events as a validated training FleetSplits (``test`` is None).

    ``window``: run units shorter than it are refused. ``problems``: collect validation
    problems instead of raising them (see ``load_cmapss``).
    """
    cfg = cfg or EventsConfig()
    rpath, fpath = Path(readings_path), Path(failures_path)
    rfile = str(rpath)
    raw, rows = read_frame(rpath)
    require_columns(raw, [cfg.asset, cfg.timestamp], rfile)
    sensor_map, setting_map = pick_columns(raw, [cfg.asset, cfg.timestamp], None, [], rfile)
    if not sensor_map:
        raise DataValidationError("no sensor columns found", file=rfile, column="sensor_*")
    asset = raw[cfg.asset]
    if asset.isna().any():
        pos = int(np.argmax(asset.isna().to_numpy()))
        raise DataValidationError(
            "missing asset id", file=rfile, column=cfg.asset, row=int(rows[pos])
        )
    frame = pd.DataFrame({UNIT: as_unit_strings(asset)})
    frame[TIME] = parse_time(raw[cfg.timestamp], rfile, cfg.timestamp, rows)
    for src, dst in {**setting_map, **sensor_map}.items():
        frame[dst] = raw[src]
    is_stamp = pd.api.types.is_datetime64_any_dtype(frame[TIME])
    if frame[TIME].isna().any():
        pos = int(np.argmax(frame[TIME].isna().to_numpy()))
        raise DataValidationError(
            "missing time", file=rfile, column=cfg.timestamp, row=int(rows[pos])
        )
    failures, frows = _read_failures(fpath, cfg, "datetime" if is_stamp else "number")
    known = set(pd.unique(frame[UNIT]))
    orphan = ~failures["asset"].isin(known).to_numpy()
    if orphan.any():
        pos = int(np.argmax(orphan))
        raise DataValidationError(
            f"failure event for asset {failures['asset'].iat[pos]!r}, which has no readings "
            f"in {rpath.name}",
            file=str(fpath),
            column=cfg.asset,
            row=int(frows[pos]),
        )

    frame, rows = group_by_unit(frame, rows)
    # Run index per reading: failures of the same asset strictly before it.
    assets = frame[UNIT].to_numpy()
    if is_stamp:  # one resolution for readings and failures (parsers may differ)
        frame[TIME] = frame[TIME].astype("datetime64[ns]")
        failures["when"] = failures["when"].astype("datetime64[ns]")
    nf = np.full(len(frame), np.datetime64("NaT", "ns") if is_stamp else np.nan)
    modes: dict[str, str] = {}
    censored: list[str] = []
    empty_runs = 0
    change = np.flatnonzero(assets[1:] != assets[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(frame)]])
    by_asset = {a: g for a, g in failures.groupby("asset", sort=False)}
    times = frame[TIME].to_numpy()
    unit_names = np.empty(len(frame), dtype=object)
    for s, e in zip(starts, ends, strict=True):
        a = str(assets[s])
        g = by_asset.get(a)
        fail = g["when"].to_numpy() if g is not None else times[:0]
        kk = np.searchsorted(fail, times[s:e], side="left")
        has = kk < len(fail)
        nf[s:e][has] = fail[kk[has]]
        used = np.unique(kk)
        empty_runs += len(fail) - int((used < len(fail)).sum())
        for run in used.tolist():
            name = f"{a}#{run + 1}"
            if run == len(fail):
                censored.append(name)
            elif g is not None and cfg.fault_mode:
                modes[name] = str(g["mode"].iat[run])
        unit_names[s:e] = pd.Series(kk + 1).astype(str).radd(a + "#").to_numpy()
    if empty_runs:
        log.info(
            "%s: %d failures have no readings since the previous one (no unit)", fpath, empty_runs
        )
    frame[UNIT] = unit_names
    frame = check_and_label(frame, rows, rfile, window, nan_policy, problems)
    if is_stamp:
        delta = pd.Series(nf - frame[TIME].to_numpy())
    else:
        delta = nf - frame[TIME].to_numpy(dtype=np.float64)
    frame[RUL_RAW] = rul_to_float(delta, cfg.time_unit)
    meta = FleetMeta(
        name=f"events-{rpath.name.split('.')[0]}",
        source="events",
        split="train",
        fault_modes=modes,
        censored_units=censored,
        time_unit=TIME_UNITS[cfg.time_unit] if is_stamp else "step",
        extra={
            "readings": rfile,
            "failures": str(fpath),
            "sensor_names": {v: k2 for k2, v in {**setting_map, **sensor_map}.items()},
            "empty_runs": int(empty_runs),
        },
    )
    return FleetSplits(train=Fleet(frame, meta), test=None)
