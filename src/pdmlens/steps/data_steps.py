"""The data steps: ingest (read and validate the source into Parquet) and prepare
(normalize, label, split by unit)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pdmlens.config import RunConfig
from pdmlens.data.fleet import Fleet, FleetSplits
from pdmlens.results import StepResult

log = logging.getLogger("pdmlens.steps")


def ingest(cfg: RunConfig, out_dir: str | Path) -> StepResult:
    """Load and validate the configured source; the fleet goes to Parquet in ``out_dir``.
    A DataValidationError (naming file, column and row) stops the run here."""
    from pdmlens.data.sources import load_source

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_source(cfg.data, window=cfg.window.length, seed=cfg.seed)
    info: dict[str, Any] = {"dataset": dataset_name(cfg, splits), "hash": splits.content_hash()}
    for name, fleet in splits.items():
        fleet.to_parquet(out / f"{name}.parquet")
        info[f"{name}_units"] = len(fleet.units)
        info[f"{name}_rows"] = fleet.n_rows
    info["sensors"] = len(splits.train.sensors)
    info["fault_sensors"] = splits.train.meta.fault_sensors
    log.info(
        "ingested %s: %d training units, %d rows (hash %s)",
        info["dataset"],
        info["train_units"],
        info["train_rows"],
        info["hash"],
    )
    return StepResult("ingest", str(out), info=info, seconds=time.perf_counter() - t0).save()


def dataset_name(cfg: RunConfig, splits: FleetSplits | None = None) -> str:
    """The name runs and registered models carry: ``simulated``, ``cmapss-FD001``, or the
    fleet's own name for tables and events."""
    if cfg.data.source == "simulated":
        return "simulated"
    if cfg.data.source == "cmapss":
        return f"cmapss-{cfg.data.subset}"
    if splits is not None and splits.train.meta.name:
        return str(splits.train.meta.name)
    return cfg.data.source


def load_fleets(ingest_dir: str | Path) -> FleetSplits:
    """The fleets ingest wrote into ``ingest_dir``."""
    d = Path(ingest_dir)
    test = d / "test.parquet"
    return FleetSplits(
        train=Fleet.from_parquet(d / "train.parquet"),
        test=Fleet.from_parquet(test) if test.is_file() else None,
    )


# ----------------------------------------------------------------------------- prepare


def prepare(cfg: RunConfig, ingest_dir: str | Path, out_dir: str | Path) -> StepResult:
    """Normalize, label and split (by unit) the ingested fleet; fitted on training units."""
    from pdmlens.data.prepare import prepare as prepare_data

    t0 = time.perf_counter()
    data = prepare_data(load_fleets(ingest_dir), cfg)
    data.save(out_dir)
    pre = data.preparer
    info = {
        "features": list(data.features),
        "train_units": int(data.train["unit"].nunique()),
        "val_units": int(data.val["unit"].nunique()),
        "test_units": 0 if data.test is None else int(data.test["unit"].nunique()),
        "dropped_sensors": list(getattr(pre, "dropped_sensors_", []) or []),
        "regimes": int(getattr(pre, "n_regimes_", 1) or 1),
    }
    log.info(
        "prepared: %d features, %d/%d/%d train/val/test units, dropped %s",
        len(data.features),
        info["train_units"],
        info["val_units"],
        info["test_units"],
        info["dropped_sensors"] or "none",
    )
    return StepResult("prepare", str(out_dir), info=info, seconds=time.perf_counter() - t0).save()
