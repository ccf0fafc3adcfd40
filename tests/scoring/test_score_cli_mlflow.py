"""``pdmlens score`` as a user runs it (a subprocess), the raw-data pyfunc model through
``mlflow.pyfunc.load_model`` in a fresh process and through ``mlflow models serve``, and
the scoring flow through Prefect: all against a temporary SQLite MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from pdmlens.cli import app
from pdmlens.report.html import find_external_references
from tests.scoring.conftest import TINY
from tests.servers import free_port

# Prefect (the flow test) keeps out of ~/.prefect
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="pdmlens-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

DATA_SETS = [s for s in TINY if s.startswith("data.") or s.startswith("window.")]


def pdmlens(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "pdmlens"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def sets(*extra: str) -> list[str]:
    return [a for s in [*DATA_SETS, *extra] for a in ("--set", s)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("score-mlflow")
    return {"root": root, "uri": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def champion(run: dict, store: dict) -> dict:
    """The bundle logged as a scoring model on a training-like run and registered as the
    dataset's LSTM champion."""
    from pdmlens.config import TrackingConfig
    from pdmlens.tracking import Tracker
    from pdmlens.tracking.scoring import log_scoring_model

    tracker = Tracker(TrackingConfig(uri=store["uri"]))
    exp = tracker.ensure_experiment("pdmlens-simulated")
    run_id = tracker.client.create_run(exp).info.run_id
    uri = log_scoring_model(tracker, run_id, run["root"] / "bundle", "lstm")
    reg = tracker.register_model(uri, "pdmlens-lstm-simulated", run_id, "test_rmse", 10.0)
    tracker.client.set_terminated(run_id)
    return {"uri": uri, "run_id": run_id, "location": tracker.model_location(uri), "reg": reg}


def _scoring_runs(uri: str) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("pdmlens-score-simulated")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_score_json_with_the_champion_records_a_scoring_run(
    run: dict, store: dict, champion: dict
) -> None:
    out = store["root"] / "out"
    res = pdmlens(
        ["score", "--json", "--out", str(out), *sets(f"tracking.uri={store['uri']}")],
        cwd=store["root"],
    )
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert doc["counts"]["units_scored"] == 8 and len(doc["units"]) == 8
    assert "act:" in doc["alert_rule"] and "new_baseline" in doc["novelty_kind_rule"]
    assert {"rul_lstm", "rul_forest", "alert", "top1_sensor", "novelty_kind"} <= set(
        doc["units"][0]
    )
    table = pd.read_parquet(out / "fleet_scores.parquet")
    assert list(table["unit"]) == [u["unit"] for u in doc["units"]]
    assert len(pd.read_csv(out / "fleet_scores.csv")) == 8
    board = (out / "fleet_board.html").read_text()
    assert find_external_references(board) == [] and board.count("data:image/png") == 8
    runs = _scoring_runs(store["uri"])
    mine = [r for r in runs if r.info.run_id == doc["mlflow_run_id"]]
    assert mine and mine[0].info.status == "FINISHED"
    r = mine[0]
    assert r.data.metrics["units_scored"] == 8
    assert sum(r.data.metrics[f"alerts_{lv}"] for lv in ("act", "watch", "ok")) == 8
    assert r.data.tags["pdmlens.model.pdmlens-lstm-simulated"] == champion["reg"].version
    assert r.data.tags["pdmlens.model.training_run"] == champion["run_id"]
    arts = {a.path for a in MlflowClient(store["uri"]).list_artifacts(r.info.run_id, "scores")}
    assert {"scores/fleet_scores.parquet", "scores/fleet_board.html"} <= arts
    # the explorer's reader: scoring runs apart from pipeline runs, with their table
    from pdmlens.tracking.explorer_reader import StoreReader

    reader = StoreReader(store["uri"])
    assert doc["mlflow_run_id"] not in set(reader.runs()["run_id"])
    listed = reader.scoring_runs("simulated")
    row = listed[listed["run_id"] == doc["mlflow_run_id"]].iloc[0]
    assert row["training_run"] == champion["run_id"] and row["units_scored"] == 8
    assert row["split"] == "test" and "pdmlens-lstm-simulated" in row["models"]
    assert row["alerts_act"] + row["alerts_watch"] + row["alerts_ok"] == 8
    assert reader.scoring_runs("cmapss-FD001").empty
    assert list(reader.scored_table(doc["mlflow_run_id"])["unit"]) == list(table["unit"])


@pytest.mark.parametrize(
    "change, column",
    [
        ("drop", "sensor_x"),
        ("rename", "sensor_x"),
        ("text", "sensor_x"),
    ],
)
def test_bad_table_exits_2_naming_it_and_finishes_no_run(
    run: dict, test_fleet: pd.DataFrame, tmp_path: Path, change: str, column: str
) -> None:
    sensor = run["bundle"].info["sensors"][0]
    frame = test_fleet.drop(columns=["rul_raw"])
    if change == "drop":
        frame = frame.drop(columns=[sensor])
    elif change == "rename":
        frame = frame.rename(columns={sensor: "sensor_new"})
    else:
        frame[sensor] = frame[sensor].astype(object)
        frame.loc[3, sensor] = "oops"
    path = tmp_path / "fleet.csv"
    frame.to_csv(path, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = CliRunner().invoke(
        app,
        [
            "score",
            "--bundle",
            str(run["root"] / "bundle"),
            "--set",
            "data.source=table",
            "--set",
            f"data.path={path}",
            "--set",
            "data.columns.run_to_failure=false",
            "--set",
            f"tracking.uri={uri}",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2, res.stderr[-2000:]
    assert "fleet.csv" in res.stderr and "Traceback" not in res.stderr
    if change == "text":
        assert f"column '{sensor}'" in res.stderr and "row 4" in res.stderr
    else:
        assert f"column '{sensor}'" in res.stderr and "missing" in res.stderr
    if change == "rename":
        assert "sensor_new" in res.stderr
    assert not [r for r in _scoring_runs(uri) if r.info.status == "FINISHED"]
    assert not (tmp_path / "out" / "fleet_scores.parquet").exists()


def test_pyfunc_takes_raw_rows_and_windows_in_a_fresh_process(
    champion: dict, test_fleet: pd.DataFrame, tmp_path: Path
) -> None:
    raw = tmp_path / "raw.parquet"
    test_fleet.drop(columns=["rul_raw"]).to_parquet(raw)
    code = f"""
import json, numpy as np, pandas as pd, mlflow.pyfunc
m = mlflow.pyfunc.load_model({champion["location"]!r})
out = m.predict(pd.read_parquet({str(raw)!r}), params={{"explain": "none"}})
w = m.predict(np.zeros((3, 20, {len(test_fleet.filter(like="sensor_").columns) + 1}), np.float32))
print(json.dumps({{"units": list(out["unit"]), "pred": list(map(float, out["prediction"])),
                   "cols": list(out.columns), "windows": np.asarray(w).shape[0]}}))
"""
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert sorted(doc["units"]) == sorted(test_fleet["unit"].unique())
    assert all(p == p for p in doc["pred"]) and "novelty_kind" in doc["cols"]
    assert doc["windows"] == 3


@pytest.mark.slow
def test_mlflow_models_serve_answers_raw_rows(
    champion: dict, test_fleet: pd.DataFrame, tmp_path: Path
) -> None:
    port = free_port()
    exe = Path(sys.executable).parent / "mlflow"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [
            str(exe),
            "models",
            "serve",
            "-m",
            champion["location"],
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=tmp_path,
        start_new_session=True,
        # the server execs uvicorn by name: the venv's bin first on PATH
        env={**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1.0)
        frame = test_fleet.drop(columns=["rul_raw"])
        body = json.dumps(
            {
                "dataframe_split": json.loads(frame.to_json(orient="split", index=False)),
                "params": {"explain": "none"},
            }
        ).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            doc = json.loads(r.read())
        rows = doc["predictions"]
        assert sorted(row["unit"] for row in rows) == sorted(frame["unit"].unique())
        assert all(isinstance(row["prediction"], float) for row in rows)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_scoring_flow_through_prefect_reaches_mlflow(run: dict, tmp_path: Path) -> None:
    from pipelines.score_flow import pdmlens_score_flow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = run["cfg"].with_overrides([f"tracking.uri={uri}"])
    result = pdmlens_score_flow(
        config=cfg.model_dump(mode="json"),
        bundle=str(run["root"] / "bundle"),
        explain="alerts",
        out_dir=str(tmp_path / "out"),
    )
    runs = _scoring_runs(uri)
    assert [r.info.run_id for r in runs] == [result["mlflow_run_id"]]
    r = runs[0]
    assert r.info.status == "FINISHED" and r.data.metrics["units_scored"] == 8
    assert r.data.tags.get("pdmlens.flow_run_id")


def test_run_id_and_model_uri_resolve_to_the_bundle(champion: dict, store: dict) -> None:
    from pdmlens.config import TrackingConfig
    from pdmlens.tracking import Tracker
    from pdmlens.tracking.scoring import champion_uri, load_bundle, run_bundle

    tracker = Tracker(TrackingConfig(uri=store["uri"]))
    by_run = run_bundle(tracker, champion["run_id"])
    by_alias = load_bundle(tracker, champion_uri("simulated"))
    assert by_run.bundle.features == by_alias.bundle.features
    assert by_alias.versions["pdmlens-lstm-simulated"] == champion["reg"].version
    assert by_run.versions["training_run"] == by_alias.versions["training_run"]
    assert by_run.versions["training_run"] == champion["run_id"]
    with pytest.raises(LookupError):
        run_bundle(tracker, champion["run_id"], kind="forest")
