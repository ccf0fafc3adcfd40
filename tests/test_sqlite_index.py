"""The SQLite index answers exactly what MLflow's client answers, on a real store made by
the client: pipeline runs with children, a scoring run, a deleted run, a deleted
experiment, a NaN metric, a metric logged at several steps, a run name without its tag.
A schema the index cannot read falls back to the client."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from pdmlens.tracking.explorer_reader import StoreReader
from pdmlens.tracking.sqlite_index import IndexUnavailable, SqliteIndex


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("index")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    sim = c.create_experiment("pdmlens-simulated", artifact_location=str(root / "a"))
    gone = c.create_experiment("old", artifact_location=str(root / "b"))
    score = c.create_experiment("pdmlens-score-simulated", artifact_location=str(root / "c"))
    now = int(time.time() * 1000)
    ids: dict[str, str] = {}

    def run(exp: str, name: str, start: int, tags: dict[str, str] | None = None) -> str:
        r = c.create_run(exp, start_time=start, tags=tags or {}, run_name=name)
        return r.info.run_id

    for i in range(3):
        rid = run(sim, f"run-{i}", now - i * 60_000, {"pdmlens.dataset": "simulated"})
        c.log_batch(
            rid,
            metrics=[
                Metric("lstm_test_rmse", 20.0 + i, now, 0),
                Metric("forest_test_rmse", math.nan, now, 0),
                Metric("loss", 5.0, now, 0),
                Metric("loss", 3.0, now + 1, 1),  # the latest step wins
                Metric("loss", 9.0, now + 2, 0),
            ],
            params=[Param("seed", str(i)), Param("window.length", "30")],
        )
        for child in ("lstm", "random_forest", "signatures"):
            cid = run(sim, child, now - i * 60_000 + 1, {"mlflow.parentRunId": rid})
            c.set_terminated(cid)
        c.set_terminated(rid, "FINISHED" if i else "FAILED")
        ids[f"run{i}"] = rid
    same_start = run(sim, "tie", now - 60_000, {"pdmlens.dataset": "simulated"})
    c.set_terminated(same_start)
    deleted = run(sim, "deleted", now)
    c.delete_run(deleted)
    run(gone, "in a deleted experiment", now)
    c.delete_experiment(gone)
    sid = run(score, "score-1", now, {"pdmlens.kind": "scoring", "pdmlens.split": "test"})
    c.log_batch(sid, metrics=[Metric("units_scored", 8.0, now, 0)], tags=[RunTag("x", "y")])
    c.set_terminated(sid)
    unfinished = run(score, "score-2", now + 5, {"pdmlens.kind": "scoring"})
    assert unfinished
    return {"uri": uri, "db": root / "mlflow.db", "ids": ids, "scoring": sid}


def _readers(store: dict) -> tuple[StoreReader, StoreReader]:
    fast = StoreReader(store["uri"])
    assert fast.index is not None
    return fast, StoreReader(store["uri"], use_index=False)


def test_run_lists_are_the_clients(store: dict) -> None:
    fast, slow = _readers(store)
    a, b = fast.runs(), slow.runs()
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 4 and "deleted" not in set(a["name"])
    assert a["name"].iloc[0] == "run-0" and a["name"].iloc[3] == "run-2"
    assert set(a["name"].iloc[1:3]) == {"run-1", "tie"}  # one start time: run id decides
    assert math.isnan(a.loc[a["name"] == "run-1", "forest_test_rmse"].iloc[0])
    pd.testing.assert_frame_equal(fast.scoring_runs("simulated"), slow.scoring_runs("simulated"))
    assert list(fast.scoring_runs("simulated")["run_id"]) == [store["scoring"]]
    assert fast.scoring_runs("cmapss-FD001").empty and slow.scoring_runs("cmapss-FD001").empty


def test_one_runs_params_metrics_children_and_place_are_the_clients(store: dict) -> None:
    fast, slow = _readers(store)
    for rid in store["ids"].values():
        assert fast.params(rid) == slow.params(rid)
        mf, ms = fast.metrics(rid), slow.metrics(rid)
        assert mf.keys() == ms.keys() and mf["loss"] == ms["loss"] == 3.0
        assert all(mf[k] == ms[k] or (math.isnan(mf[k]) and math.isnan(ms[k])) for k in mf)
        assert fast.children(rid) == slow.children(rid)
        assert set(fast.children(rid)) == {"lstm", "random_forest", "signatures"}
        assert fast.dataset(rid) == slow.dataset(rid) == "simulated"
        assert fast.index is not None
        assert fast.index.artifact_uri(rid) == slow.client.get_run(rid).info.artifact_uri


def test_an_unreadable_database_falls_back_to_the_client(store: dict, tmp_path: Path) -> None:
    broken = tmp_path / "not-mlflow.db"
    with sqlite3.connect(broken) as con:
        con.execute("CREATE TABLE runs (x INTEGER)")
    with pytest.raises(IndexUnavailable, match="not-mlflow.db"):
        SqliteIndex(broken).runs()
    reader = StoreReader(store["uri"])
    reader.index = SqliteIndex(broken)  # as if MLflow had changed its schema
    pd.testing.assert_frame_equal(reader.runs(), StoreReader(store["uri"], use_index=False).runs())
