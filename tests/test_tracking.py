"""The MLflow layer on a throwaway SQLite store: runs, params, metrics, artifacts, models,
registry and failure handling, read back through MlflowClient.

One store per module (creating its tables takes seconds); the working directory is moved
to an empty folder so that any stray write (an mlruns/ or mlflow.db of MLflow's own
defaults) is caught by the last test instead of landing in the repository.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pdmlens.config import TrackingConfig  # noqa: E402
from pdmlens.data.windows import WindowDataset  # noqa: E402
from pdmlens.models.forest import ForestEstimator  # noqa: E402
from pdmlens.models.lstm import LSTMEstimator  # noqa: E402
from pdmlens.tracking import (  # noqa: E402
    DEFAULT_TRACKING_URI,
    MAX_PARAM_LENGTH,
    Tracker,
    registered_model_name,
    resolve_artifact_root,
    resolve_tracking_uri,
)

N_FEAT = 3
WINDOW = 8


def _frame(n_units: int = 4, life: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_units):
        t = np.arange(1, life + 1)
        wear = t / life
        sensors = wear[:, None] * (np.arange(N_FEAT) + 1) + rng.normal(0, 0.05, (life, N_FEAT))
        df = pd.DataFrame(sensors, columns=[f"sensor_{i}" for i in range(N_FEAT)])
        df.insert(0, "time", t)
        df.insert(0, "unit", f"u{u}")
        df["rul"] = (life - t).astype(float)
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


def _copy_empty_store(config: pytest.Config, target: Path) -> None:
    """Copy a freshly created, empty SQLite store kept in pytest's cache to ``target``.

    Creating MLflow's tables runs dozens of migrations with an fsync each (3 s on tmpfs,
    10 s or more on a busy disk); a copy of the empty result takes milliseconds.
    """
    cache = getattr(config, "cache", None)
    if cache is None:  # cache plugin disabled: the Tracker creates the tables itself
        return
    import mlflow

    folder = cache.mkdir(f"pdmlens-empty-mlflow-store-{mlflow.__version__}")
    template = folder / "mlflow.db"
    if not template.is_file():
        building = folder / f"building-{os.getpid()}.db"
        Tracker(TrackingConfig(uri=f"sqlite:///{building}", artifact_root=str(folder)))
        os.replace(building, template)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    root = tmp_path_factory.mktemp("mlflow")
    cwd = root / "cwd"
    cwd.mkdir()
    db = root / "store" / "mlflow.db"
    _copy_empty_store(pytestconfig, db)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        tracker = Tracker(TrackingConfig(uri=f"sqlite:///{db}"))
        yield tracker, cwd


@pytest.fixture(scope="module")
def windows() -> tuple[WindowDataset, WindowDataset]:
    frame = _frame()
    feats = [f"sensor_{i}" for i in range(N_FEAT)]
    train = WindowDataset(frame[frame.unit != "u3"], feats, WINDOW, target="rul")
    val = WindowDataset(frame[frame.unit == "u3"], feats, WINDOW, target="rul")
    return train, val


@pytest.fixture(scope="module")
def trained(store, windows):
    """A parent run, an ``lstm`` child, and an LSTM trained with the epoch callback."""
    tracker, _ = store
    parent = tracker.start_parent(
        "unit-test", "run-1", {"extra": 1}, dataset_hash="hash-a", flow_run_id="flow-123"
    )
    child = tracker.start_child(parent, "lstm")
    train, val = windows
    est = LSTMEstimator(hidden_size=4, num_layers=1, epochs=3, batch_size=16, seed=0)
    est.fit(train, val, callback=tracker.make_epoch_callback(child))
    x = train.all_windows()
    uri = tracker.log_lstm_model(child, est, x[:5])
    return parent, child, est, x, uri


def test_resolve_uri_defaults_env_and_config(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = resolve_tracking_uri(TrackingConfig(), base_dir=tmp_path)
    assert DEFAULT_TRACKING_URI == "sqlite:///mlruns/mlflow.db"
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    assert resolve_artifact_root(uri) == (tmp_path / "mlruns" / "artifacts").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri(TrackingConfig()) == "http://tracking.example:5000"
    assert resolve_artifact_root("http://tracking.example:5000") is None
    cfg = TrackingConfig(uri="sqlite:///db/x.db?timeout=30", artifact_root="s3://bucket/p/")
    assert (
        resolve_tracking_uri(cfg, tmp_path) == f"sqlite:///{tmp_path.resolve()}/db/x.db?timeout=30"
    )
    assert resolve_artifact_root("sqlite:////abs/x.db", cfg) == "s3://bucket/p"
    assert registered_model_name("lstm", "cmapss FD001") == "pdmlens-lstm-cmapss_FD001"


def test_parent_and_child_runs_carry_tags(store, trained):
    tracker, _ = store
    parent, child, *_ = trained
    p = tracker.client.get_run(parent)
    c = tracker.client.get_run(child)
    assert p.data.tags["pdmlens.dataset_hash"] == "hash-a"
    assert p.data.tags["pdmlens.flow_run_id"] == "flow-123"
    assert p.data.tags["pdmlens.version"] == metadata.version("pdmlens")
    if (Path(__file__).resolve().parents[1] / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", p.data.tags["pdmlens.git_commit"])
    assert p.data.tags["extra"] == "1"
    assert p.data.tags["mlflow.runName"] == "run-1"
    assert c.data.tags["mlflow.parentRunId"] == parent
    assert c.data.tags["mlflow.runName"] == "lstm"
    assert c.data.tags["pdmlens.dataset_hash"] == "hash-a"
    assert c.info.experiment_id == p.info.experiment_id
    assert tracker.children(parent) == [child]
    exp = tracker.client.get_experiment(p.info.experiment_id)
    assert exp.name == "unit-test"
    assert exp.artifact_location == f"{tracker.artifact_root}/unit-test"


def test_params_are_batched_stringified_and_truncated(store, trained):
    tracker, _ = store
    parent = trained[0]
    params = {f"p.{i:03d}": i for i in range(150)}
    params.update({"list": [1, "a"], "none": None, "long": "x" * 7000, "bad key!": 1.5})
    tracker.log_params(parent, params)
    got = tracker.client.get_run(parent).data.params
    assert len(got) == 154
    assert got["p.149"] == "149"
    assert got["list"] == '[1, "a"]'
    assert got["none"] == "None"
    assert len(got["long"]) == MAX_PARAM_LENGTH and got["long"].endswith("...")
    assert got["bad key_"] == "1.5"


def test_epoch_callback_logs_every_epoch_with_its_step(store, trained):
    tracker, _ = store
    _, child, est, *_ = trained
    hist = tracker.client.get_metric_history(child, "train_loss")
    assert [m.step for m in hist] == [0, 1, 2]
    np.testing.assert_allclose([m.value for m in hist], [r["train_loss"] for r in est.history_])
    val = tracker.client.get_metric_history(child, "val_loss")
    np.testing.assert_allclose([m.value for m in val], [r["val_loss"] for r in est.history_])
    assert "epoch" not in tracker.client.get_run(child).data.metrics
    tracker.log_metrics(child, {"rmse": 12.5, "skip": None, "n": np.int64(3)})
    metrics = tracker.client.get_run(child).data.metrics
    assert metrics["rmse"] == 12.5 and metrics["n"] == 3.0 and "skip" not in metrics


def test_lstm_model_loads_and_predicts_the_same_for_any_window_length(store, trained, windows):
    tracker, _ = store
    _, child, est, x, uri = trained
    assert uri.startswith("models:/m-")
    model = tracker.load_model(uri)
    np.testing.assert_array_equal(model.predict(x), est.predict(x))
    longer = np.concatenate([x[:, :1].repeat(5, axis=1), x], axis=1)  # window of 13
    np.testing.assert_array_equal(model.predict(longer), est.predict(longer))
    inputs = model.metadata.get_input_schema().inputs[0]
    assert inputs.shape == (-1, -1, N_FEAT)
    run = tracker.client.get_run(child)
    assert [o.model_id for o in run.outputs.model_outputs] == [uri.split("/")[-1]]
    logged = tracker.client.get_logged_model(uri.split("/")[-1])
    assert str(logged.status) == "READY"
    assert logged.source_run_id == child


def test_forest_model_loads_and_predicts_the_same(store, trained, windows):
    tracker, _ = store
    parent, _, _, x, _ = trained
    forest = ForestEstimator(n_estimators=5, max_depth=3, min_samples_leaf=2).fit(windows[0])
    child = tracker.start_child(parent, "random_forest")
    uri = tracker.log_forest_model(child, forest, x[:3])
    model = tracker.load_model(uri)
    np.testing.assert_array_equal(model.predict(x), forest.predict(x))
    assert np.ptp(forest.predict(x)) > 0  # a forest that learned something
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, WINDOW, N_FEAT)


def test_champion_moves_only_on_improvement_on_the_same_data(store, trained):
    tracker, _ = store
    uri = trained[4]
    name = registered_model_name("lstm", "champ-test")

    def run_with(rmse: float, data_hash: str = "hash-a") -> str:
        run = tracker.start_parent("unit-test", "reg", dataset_hash=data_hash)
        tracker.log_metrics(run, {"rmse": rmse})
        return run

    def register(rmse: float, data_hash: str = "hash-a", t: Tracker = tracker):
        return t.register_model(uri, name, run_with(rmse, data_hash), "rmse", rmse)

    def champion() -> str:
        return str(tracker.client.get_model_version_by_alias(name, "champion").version)

    first = register(10.0)
    assert (first.version, first.champion, first.reason) == ("1", True, "first model")
    worse = register(12.0)
    assert (worse.version, worse.champion, champion()) == ("2", False, "1")
    better = register(8.0)
    assert (better.champion, better.previous_champion, champion()) == (True, "1", "3")
    tie = register(8.0)
    assert (tie.champion, champion()) == (False, "3")
    nan = register(math.nan)
    assert (nan.champion, champion()) == (False, "3")
    keep = Tracker(TrackingConfig(uri=tracker.uri, champion_on_new_data="keep"))
    kept = register(50.0, "hash-b", keep)
    assert (kept.champion, champion()) == (False, "3")
    assert "other data" in kept.reason
    replaced = register(50.0, "hash-b")  # default rule: the newest data's model takes over
    assert (replaced.champion, champion()) == (True, "7")
    now_worse = register(60.0, "hash-b")  # same data again: compared normally
    assert (now_worse.champion, champion()) == (False, "7")
    mv = tracker.client.get_model_version(name, "7")
    assert mv.tags["pdmlens.metric_value"] == "50.0" and mv.tags["pdmlens.metric"] == "rmse"
    loaded = tracker.load_model(f"models:/{name}@champion")
    x = trained[3]
    np.testing.assert_array_equal(loaded.predict(x), trained[2].predict(x))


def test_higher_is_better(store, trained):
    tracker, _ = store
    uri, name = trained[4], "pdmlens-forest-auc-test"
    regs = []
    for auc in (0.7, 0.8, 0.75):
        run = tracker.start_parent("unit-test", "auc", dataset_hash="hash-a")
        tracker.log_metrics(run, {"auc": auc})
        regs.append(tracker.register_model(uri, name, run, "auc", auc, higher_is_better=True))
    assert [r.champion for r in regs] == [True, True, False]


def _versions(tracker: Tracker, name: str) -> list:
    return list(tracker.client.search_model_versions(f"name = '{name}'"))


def test_tracked_run_failure_marks_all_failed_and_registers_nothing(store, trained):
    tracker, _ = store
    uri, name = trained[4], "pdmlens-lstm-failure-test"
    holder = {}
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracker.tracked_run("unit-test", "failing", dataset_hash="hash-a") as run,
    ):
        holder["run"] = run
        lstm = run.child("lstm")
        tracker.log_metrics(lstm, {"rmse": 5.0})
        tracker.finish(run.child("signatures"))  # a child that had completed
        run.register_later(uri, name, lstm, "rmse", 5.0)
        raise RuntimeError("boom")
    run = holder["run"]
    statuses = {tracker.client.get_run(r).info.status for r in [run.run_id, *run.children.values()]}
    assert statuses == {"FAILED"}
    assert len(run.children) == 2
    assert _versions(tracker, name) == []


def test_tracked_run_failing_registration_undoes_earlier_ones(store, trained):
    tracker, _ = store
    uri, name = trained[4], "pdmlens-lstm-undo-test"
    with (
        pytest.raises(Exception, match="m-doesnotexist"),
        tracker.tracked_run("unit-test", "bad-registration") as run,
    ):
        lstm = run.child("lstm")
        run.register_later(uri, name, lstm, "rmse", 5.0)
        run.register_later("models:/m-doesnotexist", name, lstm, "rmse", 4.0)
    assert _versions(tracker, name) == []
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"


def test_tracked_run_success_registers_at_the_end(store, trained):
    tracker, _ = store
    uri, name = trained[4], "pdmlens-lstm-success-test"
    with tracker.tracked_run("unit-test", "ok", dataset_hash="hash-a") as run:
        lstm = run.child("lstm")
        tracker.log_metrics(lstm, {"rmse": 5.0})
        run.register_later(uri, name, lstm, "rmse", 5.0)
        assert _versions(tracker, name) == []  # not before the block ends
    assert [(r.version, r.champion) for r in run.registrations] == [("1", True)]
    assert tracker.client.get_run(run.run_id).info.status == "FINISHED"
    assert tracker.client.get_run(lstm).info.status == "FINISHED"


def test_artifacts_and_dataset_input(store, trained, tmp_path):
    tracker, _ = store
    parent = trained[0]
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    tracker.log_figure(parent, fig, "figures/line.png")
    plt.close(fig)
    df = pd.DataFrame({"unit": ["u1", "u2"], "value": [0.5, 1.5]})
    tracker.log_frame_parquet(parent, df, "explain/values.parquet")
    tracker.log_frame_parquet(parent, df, "top.parquet")
    tracker.log_html(parent, "<p>report</p>")
    local = tmp_path / "notes.txt"
    local.write_text("hello")
    tracker.log_artifact_file(parent, local, "extra")
    tracker.log_dataset_input(parent, df, "train", "abc123", "simulated:seed=0")
    tracker.log_dataset_input(parent, df, "file", "def456", local, context="test")

    names = {a.path for a in tracker.client.list_artifacts(parent)}
    assert {"figures", "explain", "top.parquet", "report.html", "extra"} <= names
    out = Path(tracker.client.download_artifacts(parent, "explain/values.parquet", str(tmp_path)))
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    html = Path(tracker.client.download_artifacts(parent, "report.html", str(tmp_path)))
    assert html.read_text() == "<p>report</p>"
    png = Path(tracker.client.download_artifacts(parent, "figures/line.png", str(tmp_path)))
    assert png.read_bytes()[:4] == b"\x89PNG"
    inputs = tracker.client.get_run(parent).inputs.dataset_inputs
    got = {(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in inputs}
    assert got == {("train", "abc123", "training"), ("file", "def456", "test")}


def test_nothing_written_outside_the_store(store):
    _, cwd = store
    assert os.listdir(cwd) == []
