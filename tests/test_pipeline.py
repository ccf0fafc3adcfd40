"""Integration tests of the real flow: real Prefect (a temporary server), real MLflow on a
temporary SQLite store, a tiny simulated fleet.

One module-scoped run of the real command (``pdmlens run --json`` in a subprocess, as a
user runs it) is inspected through ``MlflowClient``; further runs, in this process, check
caching and a failure mid-way; the command again checks bad input.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pdmlens.config import RunConfig
from pdmlens.report.html import find_external_references
from tests.tiny import TINY_RUN

pytestmark = pytest.mark.slow


def tiny_args(root: Path, *extra: str, db: str = "mlflow.db") -> list[str]:
    sets = [
        *TINY_RUN,
        f"tracking.uri=sqlite:///{root / db}",
        f"pipeline.work_dir={root / 'runs'}",
        f"pipeline.cache_dir={root / 'cache'}",
        *extra,
    ]
    return [arg for s in sets for arg in ("--set", s)]


def pdmlens(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``pdmlens`` command, in a subprocess (stdout and stderr apart)."""
    exe = Path(sys.executable).parent / "pdmlens"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def run_here(root: Path, *extra: str, db: str = "mlflow.db") -> dict:
    """The flow in this process (as ``pdmlens run`` calls it)."""
    from pipelines.run import run_pipeline

    sets = [a for a in tiny_args(root, *extra, db=db) if a != "--set"]
    return run_pipeline(RunConfig().with_overrides(sets))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def first_run(root: Path) -> dict:
    result = pdmlens(["run", "--json", *tiny_args(root)], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LSTM epoch 2/2" in result.stderr  # progress goes to stderr
    return json.loads(result.stdout)  # stdout carries the JSON alone


@pytest.fixture(scope="module")
def client(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_summary_json_has_the_headline_keys(first_run: dict) -> None:
    assert first_run["experiment"] == "pdmlens-simulated"
    assert len(first_run["mlflow_run_id"]) == 32
    assert first_run["lstm"]["rmse"] > 0 and first_run["forest"]["rmse"] > 0
    assert first_run["cached"] == {"ingest": False, "prepare": False}
    assert first_run["signatures"]["first_separating_layer"]


def test_parent_and_children_with_tags_and_params(first_run: dict, client: MlflowClient) -> None:
    parent = client.get_run(first_run["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["pdmlens.dataset_hash"] and tags["pdmlens.version"]
    assert tags["pdmlens.flow_run_id"] == first_run["flow_run_id"]
    cfg = RunConfig().with_overrides([s for s in tiny_args(Path("/x")) if s != "--set"])
    assert set(parent.data.params) == set(cfg.flat())
    assert parent.data.params["model.lstm.hidden_size"] == "16"
    kids = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    by_name = {r.data.tags["mlflow.runName"]: r for r in kids}
    assert set(by_name) == {"lstm", "random_forest", "signatures"}
    assert all(r.info.status == "FINISHED" for r in kids)
    for r in kids:
        assert r.data.tags["pdmlens.dataset_hash"] == tags["pdmlens.dataset_hash"]
    # per-epoch losses, one point per epoch
    hist = client.get_metric_history(by_name["lstm"].info.run_id, "train_loss")
    assert sorted(m.step for m in hist) == [0, 1]
    assert len(client.get_metric_history(by_name["lstm"].info.run_id, "val_loss")) == 2
    # test metrics on the children and side by side on the parent
    lstm_m, forest_m = by_name["lstm"].data.metrics, by_name["random_forest"].data.metrics
    assert lstm_m["test_rmse"] == pytest.approx(first_run["lstm"]["rmse"])
    assert forest_m["test_rmse"] == pytest.approx(first_run["forest"]["rmse"])
    for key in ("lstm_test_rmse", "forest_test_score", "agreement_spearman", "gate_max_abs_error"):
        assert key in parent.data.metrics
    assert parent.data.metrics["gate_max_abs_error"] < 1e-4
    # the datasets as inputs
    inputs = parent.inputs.dataset_inputs
    assert {d.dataset.name for d in inputs} == {"simulated-train", "simulated-test"}


def test_artifacts_figures_parquet_and_offline_report(
    first_run: dict, client: MlflowClient
) -> None:
    run_id = first_run["mlflow_run_id"]

    def names(run: str, path: str | None = None) -> set[str]:
        return {Path(f.path).name for f in client.list_artifacts(run, path)}

    figures = names(run_id, "figures")
    for fig in (
        "predicted_vs_true.png",
        "rul_trajectories.png",
        "shap_summary_lstm.png",
        "shap_summary_forest.png",
        "agreement.png",
        "deletion.png",
        "gate_saturation.png",
        "gates_near_failure_layer1.png",
        "gates_healthy_layer2.png",
    ):
        assert fig in figures
    assert {
        "attributions_lstm.parquet",
        "attributions_forest.parquet",
        "gate_traces.parquet",
        "saturation.parquet",
    } <= names(run_id, "explain")
    sig = first_run["children"]["signatures"]
    assert {"clusters.parquet", "layer_separation.parquet", "novelty.parquet"} <= names(
        sig, "signatures"
    )
    assert {"layer_separation.png", "novelty.png"} <= names(sig, "figures")
    local = client.download_artifacts(run_id, "explain/gate_traces.parquet")
    import pandas as pd

    gates = pd.read_parquet(local)
    assert {"i", "f", "g", "o", "c", "h", "layer", "time", "unit"} <= set(gates.columns)
    page = Path(client.download_artifacts(run_id, "report.html")).read_text()
    assert "<img" in page and "data:image/png;base64," in page
    assert find_external_references(page) == []


def test_machines_at_risk_and_late_predictions_are_run_artifacts(
    first_run: dict, client: MlflowClient
) -> None:
    """The at-risk table names every test machine with the evaluate step's latest
    predictions, most urgent first; the late table holds exactly the machines predicted
    more than 20 cycles late; both are CSV artifacts and the report names them in words."""
    import pandas as pd

    from pdmlens.report.risk import ALERT_ORDER

    run_id = first_run["mlflow_run_id"]
    assert {"machines_at_risk.csv", "late_predictions.csv"} <= {
        f.path for f in client.list_artifacts(run_id)
    }
    risk = pd.read_csv(client.download_artifacts(run_id, "machines_at_risk.csv"))
    late = pd.read_csv(client.download_artifacts(run_id, "late_predictions.csv"))
    ev = pd.read_parquet(Path(first_run["work_dir"]) / "evaluate" / "predictions.parquet")
    last = ev.sort_values("time").groupby("unit").tail(1).set_index("unit")
    cap = RunConfig().prepare.rul_cap
    assert sorted(risk["machine"]) == sorted(last.index) == [f"test_{i:03d}" for i in range(1, 7)]
    by = risk.set_index("machine")
    np.testing.assert_allclose(by.loc[last.index, "lstm_rul"], last["lstm"], rtol=1e-6)
    np.testing.assert_allclose(by.loc[last.index, "forest_rul"], last["forest"], rtol=1e-9)
    np.testing.assert_allclose(by.loc[last.index, "true_rul"], np.minimum(last["true"], cap))
    # urgency: alert level, then the lower predicted RUL
    rank = risk["alert"].map(ALERT_ORDER.index)
    low = risk[["lstm_rul", "forest_rul"]].min(axis=1)
    keys = list(zip(rank, low, strict=True))
    assert keys == sorted(keys)
    # late: predicted minus capped truth above 20 cycles, worst first
    gap = last[["lstm", "forest"]].max(axis=1) - np.minimum(last["true"], cap)
    expected = gap[gap > 20].sort_values(ascending=False)
    assert late["machine"].tolist() == expected.index.tolist()
    np.testing.assert_allclose(late["worst_late_by"], expected.to_numpy(), rtol=1e-6)
    # the run is named and described with its headline numbers and machines at risk
    tags = client.get_run(run_id).data.tags
    rmse = f"LSTM {first_run['lstm']['rmse']:.1f} / forest {first_run['forest']['rmse']:.1f}"
    assert tags["mlflow.runName"].startswith("simulated 20") and rmse in tags["mlflow.runName"]
    note = tags["mlflow.note.content"]
    assert f"| LSTM | {first_run['lstm']['rmse']:.1f} |" in note
    assert f"| random forest | {first_run['forest']['rmse']:.1f} |" in note
    for machine in risk.loc[risk["alert"] != "ok", "machine"]:
        assert f"- machine {machine}: " in note
    assert f"cycles late**: {len(late)} of 6" in note
    page = Path(client.download_artifacts(run_id, "report.html")).read_text()
    first_section = page[page.index("<section") : page.index("</section>")]
    assert "Machines at risk" in first_section
    top = risk["machine"].iloc[0]
    assert re.search(rf"<li>machine {top}: {risk['alert'].iloc[0]}, predicted to fail in", page)
    if len(late):
        assert f"Worst first: machine {late['machine'].iloc[0]} (true " in page


def test_registered_models_load_and_predict_as_before(first_run: dict, root: Path) -> None:
    from pdmlens.config import TrackingConfig
    from pdmlens.data.prepare import PreparedData
    from pdmlens.models.forest import ForestEstimator
    from pdmlens.models.lstm import LSTMEstimator
    from pdmlens.tracking import Tracker

    regs = {r["name"]: r for r in first_run["registered"]}
    assert set(regs) == {"pdmlens-lstm-simulated", "pdmlens-forest-simulated"}
    assert all(r["champion"] for r in regs.values())
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{root / 'mlflow.db'}"))
    work = Path(first_run["work_dir"])
    prepared = next((root / "cache" / "prepare").iterdir())
    data = PreparedData.load(prepared)
    x = data.windows("test", data_window(), None).batch(np.arange(5))[0].copy()
    lstm = LSTMEstimator.load(work / "lstm" / "lstm.pt")
    forest = ForestEstimator.load(work / "forest" / "forest.joblib")
    for name, est in (("pdmlens-lstm-simulated", lstm), ("pdmlens-forest-simulated", forest)):
        model = tracker.load_model(f"models:/{name}@champion")
        np.testing.assert_array_equal(model.predict(x), est.predict(x))
    # the LSTM loads for any window length
    longer = (
        data.windows("test", data_window(RunConfig().window.length + 10), None)
        .batch(np.arange(3))[0]
        .copy()
    )
    lstm_model = tracker.load_model("models:/pdmlens-lstm-simulated@champion")
    np.testing.assert_array_equal(lstm_model.predict(longer), lstm.predict(longer))


def test_pdmlens_score_uses_the_champion_the_run_registered(first_run: dict, root: Path) -> None:
    """Train, then score: the registered champion carries the run's scoring bundle, so
    ``pdmlens score`` with no model given scores the source's test machines with it, and
    its predictions are the evaluate step's last-window predictions per unit."""
    import pandas as pd

    out = root / "scores"
    sets = [a for a in tiny_args(root) if a != "--set"]
    args = [arg for s in sets if not s.startswith("pipeline.") for arg in ("--set", s)]
    result = pdmlens(["score", "--json", "--explain", "none", "--out", str(out), *args], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert doc["counts"]["units_scored"] == 6
    table = pd.read_parquet(out / "fleet_scores.parquet").set_index("unit")
    ev = pd.read_parquet(Path(first_run["work_dir"]) / "evaluate" / "predictions.parquet")
    last = ev.groupby("unit", sort=False).tail(1).set_index("unit")
    assert sorted(last.index) == sorted(table.index)
    assert np.array_equal(table.loc[last.index, "rul_forest"], last["forest"])
    # the LSTM in batches of another size: float32 sums in another order
    np.testing.assert_allclose(table.loc[last.index, "rul_lstm"], last["lstm"], atol=1e-4)


def data_window(length: int | None = None):
    """The run's window (the forest reads exactly its length), or another length."""
    from pdmlens.config import WindowConfig

    return WindowConfig(length=length or RunConfig().window.length)


def test_second_run_reuses_cached_ingest_and_prepare(first_run: dict, root: Path) -> None:
    second = run_here(root)
    assert second["cached"] == {"ingest": True, "prepare": True}
    assert second["mlflow_run_id"] != first_run["mlflow_run_id"]
    assert second["lstm"]["rmse"] == first_run["lstm"]["rmse"]  # same seed, same result
    # the same data split otherwise: ingest reused, prepare rebuilt
    third = run_here(root, "prepare.val_fraction=0.3")
    assert third["cached"] == {"ingest": True, "prepare": False}
    # the second version did not beat the first (same model, same data): alias stays
    lstm_reg = [r for r in second["registered"] if "lstm" in r["name"]][0]
    assert lstm_reg["version"] == "2" and not lstm_reg["champion"]


def test_a_truncated_prepared_file_is_rebuilt_with_the_same_metrics(
    first_run: dict, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cached Parquet file cut short is found by its recorded size, named in a warning,
    and the step is rebuilt: the run is not reported as reusing it, nor poisoned by it."""
    from pdmlens.steps import cache, ingest_key, prepare_key

    cfg = RunConfig().with_overrides([s for s in tiny_args(root) if s != "--set"])
    folder = root / "cache" / "prepare" / prepare_key(cfg, ingest_key(cfg))
    bad = folder / "train.parquet"
    bad.write_bytes(bad.read_bytes()[:-100])
    again = run_here(root)
    assert again["cached"] == {"ingest": True, "prepare": False}
    assert str(bad) in caplog.text and "rebuilding" in caplog.text
    assert again["lstm"]["rmse"] == first_run["lstm"]["rmse"]
    assert again["forest"]["rmse"] == first_run["forest"]["rmse"]
    assert cache.verify(folder) is None


def test_failure_mid_way_marks_runs_failed_and_registers_nothing(root: Path, monkeypatch) -> None:
    from dataclasses import replace

    from pdmlens.steps import graph

    def broken(*args, **kwargs):
        raise RuntimeError("explain broke")

    # the flow runs the steps of the graph: the explain step's function is swapped there
    broken_graph = tuple(
        replace(s, fn=broken) if s.name == "explain" else s for s in graph.PIPELINE
    )
    monkeypatch.setattr(graph, "PIPELINE", broken_graph)
    with pytest.raises(RuntimeError, match="explain broke"):
        run_here(root, db="failed.db")
    uri = f"sqlite:///{root / 'failed.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("pdmlens-simulated")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4  # parent + 3 children
    assert {r.info.status for r in runs} == {"FAILED"}
    assert client.search_model_versions() == []


def test_bad_input_exits_2_naming_the_file_and_leaves_no_run(root: Path) -> None:
    bad = root / "bad.csv"
    bad.write_text("unit,time,sensor_1\n1,1,0.5\n1,2,oops\n1,3,0.7\n")
    result = pdmlens(
        [
            "run",
            *tiny_args(
                root, "data.source=table", f"data.path={bad}", "window.length=2", db="bad.db"
            ),
        ],
        cwd=root,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("error:")]
    assert error and "bad.csv" in error[0] and "sensor_1" in error[0], result.stderr[-2000:]
    assert "row 2" in error[0] and "'oops'" in error[0]
    # the message is the last thing said (after Prefect's own log of the failed task)
    assert not any(
        line.startswith("error:") is False and "Traceback" in line
        for line in lines[lines.index(error[0]) :]
    )
    uri = f"sqlite:///{root / 'bad.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
