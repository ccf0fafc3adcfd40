"""Shared test fixtures (keep small): where the real C-MAPSS data is, if present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CMAPSS_DIR = Path(os.environ.get("PDMLENS_CMAPSS_DIR", REPO.parent / "shared" / "data" / "cmapss"))
"""beside the repository (``../shared/data/cmapss``), or where $PDMLENS_CMAPSS_DIR says (a
git worktree lives elsewhere)."""


@pytest.fixture
def cmapss_dir() -> Path:
    """The real C-MAPSS FD001 folder (gzipped files); the test is skipped where absent."""
    if not (CMAPSS_DIR / "train_FD001.txt.gz").is_file():
        pytest.skip(f"C-MAPSS data not found at {CMAPSS_DIR}")
    return CMAPSS_DIR
