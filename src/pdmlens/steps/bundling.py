"""The scoring-bundle step: everything scoring new data needs, from one training run.

The bundle (:func:`pdmlens.scoring.bundle.build_bundle`) holds the preparer, both models,
a healthy SHAP background and the per-layer novelty calibration; the flow logs it as each
model's MLflow pyfunc, so the registered champion scores raw fleet tables
(``pdmlens score``) as well as windows.
"""

from __future__ import annotations

import time
from pathlib import Path

from pdmlens.config import RunConfig
from pdmlens.results import StepResult


def scoring_bundle(
    cfg: RunConfig,
    prepared_dir: str | Path,
    lstm_dir: str | Path,
    forest_dir: str | Path,
    out_dir: str | Path,
) -> StepResult:
    """Write the scoring bundle of this run's prepared data and models into ``out_dir``."""
    from pdmlens.scoring.bundle import build_bundle

    t0 = time.perf_counter()
    out = build_bundle(cfg, prepared_dir, lstm_dir, forest_dir, out_dir)
    return StepResult("bundle", str(out), seconds=time.perf_counter() - t0).save()
