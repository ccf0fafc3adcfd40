"""The whole pipeline on every kind of source (issue 13): the simulator, C-MAPSS, telemetry +
failure events (the README's example, in exactly its shape), wide and long tables, with and
without setting columns, through the real flow (Prefect's temporary server, started once for
this process) into a temporary SQLite MLflow store.

Each run is tiny (a few dozen short units, 2 epochs, a handful of explained windows) and is
checked for what a user relies on: the run FINISHED in MLflow with its three children, both
models scored with finite metrics, features as expected (settings define regimes and are
not features), and a champion registered.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pdmlens.cli import app
from pdmlens.config import RunConfig, SimulatorConfig, load_config
from pdmlens.data.simulate import simulate_fleet

pytestmark = pytest.mark.slow

TINY = [
    "window.length=5",
    "model.lstm.epochs=2",
    "model.lstm.hidden_size=8",
    "model.lstm.num_layers=1",
    "model.lstm.refit=false",
    "model.forest.n_estimators=5",
    "explain.n_explain=8",
    "explain.background=4",
    "explain.shap_samples=4",
    "explain.deletion_random=1",
    "explain.deletion_baseline=16",
    "explain.gate_samples=2",
    "signatures.k_range=[2, 3]",
    "pipeline.retries=0",
]

SMALL_SIM = [
    "data.simulator.n_units=16",
    "data.simulator.n_test_units=4",
    "data.simulator.min_life=30",
    "data.simulator.max_life=50",
    "data.simulator.test_min_cycles=8",
]


def _sets(root: Path, db: str, *extra: str) -> list[str]:
    return [
        *TINY,
        f"tracking.uri=sqlite:///{root / db}",
        f"pipeline.work_dir={root / 'runs'}",
        f"pipeline.cache_dir={root / 'cache'}",
        *extra,
    ]


def run_here(root: Path, db: str, *extra: str) -> tuple[dict, RunConfig]:
    """The flow in this process (as ``pdmlens run`` calls it): its summary and config."""
    from pipelines.run import run_pipeline

    cfg = RunConfig().with_overrides(_sets(root, db, *extra))
    return run_pipeline(cfg), cfg


def check_run(summary: dict, root: Path, db: str) -> MlflowClient:
    """The run FINISHED with three FINISHED children, finite metrics, a champion."""
    uri = f"sqlite:///{root / db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    kids = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert sorted(r.data.tags["mlflow.runName"] for r in kids) == [
        "lstm",
        "random_forest",
        "signatures",
    ]
    assert all(r.info.status == "FINISHED" for r in kids)
    for model in ("lstm", "forest"):
        assert summary[model]["rmse"] > 0 and math.isfinite(summary[model]["rmse"])
    assert all(math.isfinite(v) for v in parent.data.metrics.values())
    assert any(r["champion"] for r in summary["registered"])
    return client


def prepared(cfg: RunConfig, name: str) -> dict:
    """A JSON file of the run's prepared data in the cache (prepared.json, preparer.json)."""
    from pdmlens import steps

    key = steps.prepare_key(cfg, steps.ingest_key(cfg))
    return json.loads((Path(cfg.pipeline.cache_dir) / "prepare" / key / name).read_text())


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small simulated fleet (train, test) with two settings and three regimes, written
    out below in each source's own format."""
    cfg = SimulatorConfig(
        n_units=16,
        n_test_units=4,
        n_sensors=6,
        n_settings=2,
        n_regimes=3,
        fault_modes=1,
        sensors_per_mode=2,
        min_life=30,
        max_life=50,
        test_min_cycles=8,
    )
    splits = simulate_fleet(cfg, seed=0)
    assert splits.test is not None
    return splits.train.frame, splits.test.frame


def _as_table(frame: pd.DataFrame, settings: bool) -> pd.DataFrame:
    """The canonical fleet as a user's wide table (engine, cycle, altitude, mach, s*, rul)."""
    out = pd.DataFrame({"engine": frame["unit"], "cycle": frame["time"]})
    if settings:
        out["altitude"] = frame["setting_1"]
        out["mach"] = frame["setting_2"]
    for c in [c for c in frame.columns if c.startswith("sensor_")]:
        out[c.removeprefix("sensor_")] = frame[c]
    out["rul"] = frame["rul_raw"]
    return out


def test_simulator_with_settings(root: Path) -> None:
    summary, _ = run_here(root, "sim.db", *SMALL_SIM)
    check_run(summary, root, "sim.db")
    assert summary["experiment"] == "pdmlens-simulated"


def test_simulator_without_settings(root: Path) -> None:
    summary, cfg = run_here(
        root, "sim0.db", *SMALL_SIM, "data.simulator.n_settings=0", "data.simulator.n_regimes=1"
    )
    check_run(summary, root, "sim0.db")
    assert prepared(cfg, "preparer.json")["regimes_"]["columns"] == []


def test_cmapss(root: Path, cmapss_dir: Path, tmp_path: Path) -> None:
    """C-MAPSS FD001 cut to its first 12 training and 6 test engines (same file format)."""
    folder = tmp_path / "cmapss"
    folder.mkdir()
    for kind, keep in (("train", 12), ("test", 6)):
        with gzip.open(cmapss_dir / f"{kind}_FD001.txt.gz", "rt") as fh:
            lines = [ln for ln in fh if int(ln.split()[0]) <= keep]
        (folder / f"{kind}_FD001.txt").write_text("".join(lines))
    with gzip.open(cmapss_dir / "RUL_FD001.txt.gz", "rt") as fh:
        (folder / "RUL_FD001.txt").write_text("".join(fh.readlines()[:6]))
    summary, _ = run_here(root, "cmapss.db", "data.source=cmapss", f"data.path={folder}")
    check_run(summary, root, "cmapss.db")
    assert summary["experiment"] == "pdmlens-cmapss-FD001"
    assert summary["data"]["test_units"] == 6


def _plant(folder: Path, train: pd.DataFrame) -> None:
    """The README's plant: readings.parquet (machine_id, ts, sensors) and failures.csv
    (machine_id, ts), hourly timestamps. Machine k runs units 2k and 2k+1 back to back and
    fails at the end of each; the last machine also runs on after its last failure (a
    right-censored run)."""
    units = list(dict.fromkeys(train["unit"]))
    sensors = [c for c in train.columns if c.startswith("sensor_")]
    readings, failures = [], []
    for k in range(len(units) // 2):
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(days=30 * k)
        t = 0
        for u in units[2 * k : 2 * k + 2]:
            rows = train[train["unit"] == u]
            ts = start + pd.to_timedelta(np.arange(t, t + len(rows)), unit="h")
            part = pd.DataFrame({"machine_id": f"press-{k}", "ts": ts})
            for c in sensors:
                part[c.removeprefix("sensor_")] = rows[c].to_numpy()
            readings.append(part)
            failures.append({"machine_id": f"press-{k}", "ts": ts[-1]})
            t += len(rows)
    tail = readings[-1].iloc[:8].copy()
    tail["ts"] = readings[-1]["ts"].iloc[-1] + pd.to_timedelta(np.arange(1, 9), unit="h")
    readings.append(tail)
    pd.concat(readings, ignore_index=True).to_parquet(folder / "readings.parquet", index=False)
    pd.DataFrame(failures).to_csv(folder / "failures.csv", index=False)


README_EVENTS = """\
# plant.yaml  ->  pdmlens run --config plant.yaml
data:
  source: events
  path: {path}            # folder of the two tables (CSV or Parquet)
  events:
    readings: readings.parquet
    failures: failures.csv
    asset: machine_id
    timestamp: ts
    time_unit: h               # RUL in hours
"""


def test_readme_events_example_runs_end_to_end(root: Path, fleet, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = README_EVENTS.format(path="/data/plant")
    assert block in readme  # the README still shows exactly this example
    plant = tmp_path / "plant"
    plant.mkdir()
    _plant(plant, fleet[0])
    config = tmp_path / "plant.yaml"
    config.write_text(README_EVENTS.format(path=plant))
    args = ["run", "--config", str(config), "--json"]
    for s in _sets(root, "events.db"):
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    check_run(summary, root, "events.db")
    cfg = RunConfig().with_overrides(_sets(root, "events.db"))
    cfg = load_config(config, _sets(root, "events.db"))
    feats = prepared(cfg, "prepared.json")["features"]
    assert feats[-1] == "age" and all(f.startswith("sensor_") for f in feats[:-1])


@pytest.mark.parametrize("settings", [True, False], ids=["settings", "no-settings"])
def test_wide_table(root: Path, fleet, tmp_path: Path, settings: bool) -> None:
    train, test = fleet
    _as_table(train, settings).to_csv(tmp_path / "fleet.csv", index=False)
    _as_table(test, settings).to_csv(tmp_path / "fleet_test.csv", index=False)
    mapping = "{unit: engine, time: cycle, rul: rul, layout: wide, settings: %s}" % (
        "[altitude, mach]" if settings else "[]"
    )
    db = f"wide-{settings}.db"
    summary, cfg = run_here(
        root,
        db,
        "data.source=table",
        f"data.path={tmp_path / 'fleet.csv'}",
        f"data.columns={mapping}",
        f"data.test_path={tmp_path / 'fleet_test.csv'}",
    )
    check_run(summary, root, db)
    assert summary["data"]["test_units"] == 4
    assert not any(f.startswith("setting_") for f in prepared(cfg, "prepared.json")["features"])
    regimes = prepared(cfg, "preparer.json")["regimes_"]
    assert regimes["columns"] == (["setting_altitude", "setting_mach"] if settings else [])
    assert len(regimes["centroids"]) == (3 if settings else 1)


def test_long_table_without_settings(root: Path, fleet, tmp_path: Path) -> None:
    train = _as_table(fleet[0], settings=False)
    long = train.melt(id_vars=["engine", "cycle"], var_name="variable", value_name="value")
    long.to_parquet(tmp_path / "long.parquet", index=False)
    summary, _ = run_here(
        root,
        "long.db",
        "data.source=table",
        f"data.path={tmp_path / 'long.parquet'}",
        "data.columns={unit: engine, time: cycle, layout: long}",
    )
    check_run(summary, root, "long.db")
