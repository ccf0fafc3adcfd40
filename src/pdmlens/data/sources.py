"""One entry point from a DataConfig to a validated FleetSplits, whatever the source.

``cfg.source`` picks the loader:

- ``cmapss``: the folder ``cfg.path`` holding ``train/test/RUL_<cfg.subset>.txt[.gz]``;
- ``events``: ``cfg.events.readings`` and ``cfg.events.failures``, relative to ``cfg.path``
  when that is given;
- ``table``: the file ``cfg.path`` (and ``cfg.test_path``) mapped by ``cfg.columns``;
- ``simulated``: ``simulate_fleet(cfg.simulator, seed)``, validated like any other source.

Every path is checked before reading; a missing file or folder is a DataValidationError
naming it. ``window`` (when given) refuses training units shorter than the window;
``problems`` collects validation problems instead of raising them (``pdmlens data
inspect``).
"""

from __future__ import annotations

from pathlib import Path

from pdmlens.config import DataConfig
from pdmlens.data.fleet import Fleet, FleetSplits
from pdmlens.data.table import check_and_label
from pdmlens.errors import DataValidationError

__all__ = ["load_source", "resolve_path"]


def resolve_path(
    path: str | None, base: str | None = None, *, what: str, folder: bool = False
) -> Path:
    """``path`` (relative to ``base`` if given), which must exist; else a clear error."""
    if not path:
        raise DataValidationError(f"no {what} given")
    p = Path(path).expanduser()
    if base and not p.is_absolute():
        p = Path(base).expanduser() / p
    if folder:
        if not p.is_dir():
            raise DataValidationError(f"{what} not found (or not a folder)", file=str(p))
    elif not p.is_file():
        raise DataValidationError(f"{what} not found (or not a file)", file=str(p))
    return p


def load_source(
    cfg: DataConfig,
    window: int | None = None,
    seed: int = 0,
    *,
    problems: list[DataValidationError] | None = None,
) -> FleetSplits:
    """Load and validate the fleet ``cfg`` describes."""
    if cfg.source == "cmapss":
        from pdmlens.data.cmapss import load_cmapss

        folder = resolve_path(cfg.path, what="C-MAPSS folder (data.path)", folder=True)
        return load_cmapss(
            folder, cfg.subset, window=window, nan_policy=cfg.nan_policy, problems=problems
        )
    if cfg.source == "events":
        from pdmlens.data.events import load_events

        ev = cfg.events
        readings = resolve_path(ev.readings, cfg.path, what="readings table (data.events.readings)")
        failures = resolve_path(ev.failures, cfg.path, what="failures table (data.events.failures)")
        return load_events(
            readings, failures, ev, window=window, nan_policy=cfg.nan_policy, problems=problems
        )
    if cfg.source == "table":
        from pdmlens.data.table import load_table

        path = resolve_path(cfg.path, what="table (data.path)")
        test = (
            resolve_path(cfg.test_path, what="test table (data.test_path)")
            if cfg.test_path
            else None
        )
        return load_table(
            path, cfg.columns, test, window=window, nan_policy=cfg.nan_policy, problems=problems
        )
    if cfg.source == "simulated":
        from pdmlens.data.simulate import simulate_fleet

        splits = simulate_fleet(cfg.simulator, seed)
        checked = []
        for name, fleet in splits.items():
            frame = check_and_label(
                fleet.frame,
                None,
                None,
                window if name == "train" else None,
                cfg.nan_policy,
                problems,
            )
            checked.append(Fleet(frame, fleet.meta))
        return FleetSplits(train=checked[0], test=checked[1] if len(checked) > 1 else None)
    raise DataValidationError(f"unknown data source {cfg.source!r}")
