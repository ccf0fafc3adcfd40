"""Content keys of the cached steps: ingest and prepare are reused exactly when the inputs
(files' bytes, the config sections that shape the result) are the same."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pdmlens.config import RunConfig


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def input_files(cfg: RunConfig) -> list[Path]:
    """The files the configured source reads (empty for the simulator)."""
    d = cfg.data
    if d.source == "cmapss" and d.path:
        folder = Path(d.path)
        return sorted(p for p in folder.glob(f"*_{d.subset}.txt*") if p.is_file())
    if d.source == "events":
        base = Path(d.path) if d.path else Path()
        return [base / p for p in (d.events.readings, d.events.failures) if p]
    if d.source == "table":
        return [Path(p) for p in (d.path, d.test_path) if p]
    return []


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def ingest_key(cfg: RunConfig) -> str:
    """Content key of the ingested fleet: the input files' bytes, the data config, the
    window length (validation refuses short units) and, for the simulator, the seed."""
    files = {str(p.name): file_digest(p) for p in input_files(cfg) if p.is_file()}
    data = cfg.data.model_dump(mode="json")
    data.pop("ingest_dir", None)
    seed = cfg.seed if cfg.data.source == "simulated" else None
    return _hash("ingest/1", files, data, cfg.window.length, seed)


def prepare_key(cfg: RunConfig, ingest: str) -> str:
    """Content key of the prepared data: the ingested fleet, the prepare config and the
    seed (it draws the train/validation split)."""
    return _hash("prepare/1", ingest, cfg.prepare.model_dump(mode="json"), cfg.seed)
