"""Overrides that make a whole pipeline run tiny (seconds, not minutes) on the built-in
simulated fleet: shared by the end-to-end tests of the flow, the Dask runner and the MLflow
server, so they train the same run."""

from __future__ import annotations

TINY_RUN: list[str] = [
    "data.simulator.n_units=24",
    "data.simulator.n_test_units=6",
    "model.lstm.epochs=2",
    "model.lstm.hidden_size=16",
    "model.forest.n_estimators=10",
    "explain.n_explain=16",
    "explain.deletion_random=2",
    "explain.gate_samples=4",
]
