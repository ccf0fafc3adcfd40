"""Score a configured data source and write the outputs (the CLI and the scoring flow).

``load_scoring_data(cfg, split)`` reads the source exactly as a run does (same config keys
and source kinds), without the training-time window check (short units are scored and
marked). ``write_outputs`` writes the fleet table (Parquet and CSV), the board (HTML) and
the JSON summary into one folder, each file written whole or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdmlens.config import RunConfig
from pdmlens.data.fleet import Fleet
from pdmlens.scoring.board import build_board, table_records
from pdmlens.scoring.bundle import ScoringBundle
from pdmlens.scoring.score import ScoreTable

TABLE = "fleet_scores"
BOARD = "fleet_board.html"


def dataset_name(cfg: RunConfig, fleet: Fleet | None = None) -> str:
    """The dataset name runs and registered models carry (as the training flow names it)."""
    if cfg.data.source == "simulated":
        return "simulated"
    if cfg.data.source == "cmapss":
        return f"cmapss-{cfg.data.subset}"
    if fleet is not None and fleet.meta.name:
        return str(fleet.meta.name)
    return cfg.data.source


def data_file(cfg: RunConfig, split: str) -> str | None:
    """The file a split was read from (for error messages), where there is one."""
    d = cfg.data
    if d.source == "table":
        return d.test_path if split == "test" and d.test_path else d.path
    if d.source == "cmapss" and d.path:
        return str(Path(d.path) / f"{split}_{d.subset}.txt")
    if d.source == "events":
        return d.events.readings
    return None


def load_scoring_data(cfg: RunConfig, split: str = "auto") -> tuple[Fleet, str]:
    """The fleet to score and its split name: ``auto`` = the test split where the source
    has one (C-MAPSS test files, a table's ``test_path``, the simulator's test units),
    else the training table (unlabelled rows are fine)."""
    from pdmlens.data.sources import load_source
    from pdmlens.errors import DataValidationError

    splits = load_source(cfg.data, window=None, seed=cfg.seed)
    if split == "auto":
        split = "test" if splits.test is not None else "train"
    fleet = splits.test if split == "test" else splits.train
    if fleet is None:
        raise DataValidationError(f"the source has no {split} split")
    return fleet, split


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


@dataclass
class ScoreFiles:
    parquet: Path
    csv: Path
    board: Path
    summary: Path

    def artifacts(self) -> dict[str, Path]:
        return {
            f"scores/{self.parquet.name}": self.parquet,
            f"scores/{self.csv.name}": self.csv,
            f"scores/{self.board.name}": self.board,
            f"scores/{self.summary.name}": self.summary,
        }


def summary(scores: ScoreTable, bundle: ScoringBundle, **extra: Any) -> dict[str, Any]:
    """What ``--json`` prints: counts, rules, timings, and every unit's row."""
    return {
        **extra,
        "dataset": bundle.info.get("dataset"),
        "task": bundle.task.name,
        "horizon": bundle.info["horizon"],
        "counts": scores.counts(),
        "alert_rule": scores.rule,
        "novelty_kind_rule": scores.kind_rule,
        "kind_layer": bundle.kind_layer,
        "seconds": scores.seconds,
        "units": table_records(scores),
    }


def write_outputs(
    scores: ScoreTable,
    bundle: ScoringBundle,
    out_dir: str | Path,
    title: str = "pdmlens fleet board",
    subtitle: str = "",
    max_board: int = 30,
    **extra: Any,
) -> ScoreFiles:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ScoreFiles(
        out / f"{TABLE}.parquet", out / f"{TABLE}.csv", out / BOARD, out / "summary.json"
    )
    t = scores.table
    _atomic_write(files.parquet, lambda p: t.to_parquet(p, index=False))
    _atomic_write(files.csv, lambda p: t.to_csv(p, index=False))
    page = build_board(scores, bundle, title=title, subtitle=subtitle, max_units=max_board)
    _atomic_write(files.board, lambda p: p.write_text(page, encoding="utf-8"))
    doc = summary(scores, bundle, **extra)
    _atomic_write(files.summary, lambda p: p.write_text(json.dumps(doc, default=str)))
    return files
