"""A tiny training run (through the steps, fault mode 2 held out) and its scoring bundle,
shared by the scoring tests (trained once per session)."""

from __future__ import annotations

import pandas as pd
import pytest

from pdmlens import steps
from pdmlens.config import RunConfig
from pdmlens.data.sources import load_source
from pdmlens.scoring import ScoringBundle, build_bundle

TINY = [
    "data.simulator.n_units=30",
    "data.simulator.n_test_units=8",
    "data.simulator.fault_mode_subset=[0,1]",
    "window.length=20",
    "model.lstm.epochs=2",
    "model.lstm.hidden_size=16",
    "model.lstm.refit=false",
    "model.lstm.num_threads=1",
    "model.forest.n_estimators=10",
    "model.forest.n_jobs=1",
    "explain.shap_samples=16",
]


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("scoring")
    cfg = RunConfig().with_overrides(TINY)
    steps.ingest(cfg, root / "ingest")
    steps.prepare(cfg, root / "ingest", root / "prepare")
    steps.train_lstm(cfg, root / "prepare", root / "lstm")
    steps.train_forest(cfg, root / "prepare", root / "forest")
    steps.evaluate(cfg, root / "prepare", root / "lstm", root / "forest", root / "evaluate")
    build_bundle(cfg, root / "prepare", root / "lstm", root / "forest", root / "bundle")
    return {"cfg": cfg, "root": root, "bundle": ScoringBundle.load(root / "bundle")}


@pytest.fixture(scope="session")
def test_fleet(run: dict) -> pd.DataFrame:
    return load_source(run["cfg"].data, seed=run["cfg"].seed).test.frame
