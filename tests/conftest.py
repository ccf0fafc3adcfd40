"""Shared test set-up (keep small): Prefect kept out of ~/.prefect, and where the real
C-MAPSS data is, if present. Overrides for a tiny whole run: ``tests/tiny.py``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Prefect reads these when its temporary server starts (set before any test imports it)
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pdmlens-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

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


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """A test that points MLflow at a server (``mlflow.set_tracking_uri``, which also sets
    ``MLFLOW_TRACKING_URI`` for child processes) leaves the next tests on the default
    store again, not on a server it has since stopped."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {n: os.environ.get(n) for n in names}
    yield
    for n, v in saved.items():
        if v is None:
            os.environ.pop(n, None)
        else:
            os.environ[n] = v
    import sys

    if "mlflow" in sys.modules:  # reset the module's own globals only if it was imported
        import mlflow

        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"] or "")
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"] or "")
        for n, v in saved.items():  # set_*_uri writes the environment again
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v
