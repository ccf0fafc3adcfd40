"""The pipeline's steps as plain functions (no Prefect, no MLflow) on a tiny fleet."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdmlens import steps
from pdmlens.config import RunConfig
from pdmlens.models.lstm import LSTMEstimator
from pdmlens.report.html import find_external_references
from pdmlens.report.run_report import build_report, markdown, summary
from pdmlens.results import LSTM, StepResult, model_file

TINY = [
    "data.simulator.n_units=16",
    "data.simulator.n_test_units=4",
    "model.lstm.epochs=2",
    "model.lstm.hidden_size=8",
    "model.forest.n_estimators=5",
    "explain.n_explain=8",
    "explain.deletion_random=1",
    "explain.gate_samples=2",
]


@pytest.fixture(scope="module")
def cfg() -> RunConfig:
    return RunConfig().with_overrides(TINY)


def test_cache_keys_follow_content(cfg: RunConfig, tmp_path: Path) -> None:
    key = steps.ingest_key(cfg)
    assert key == steps.ingest_key(RunConfig().with_overrides(TINY))
    assert key != steps.ingest_key(cfg.with_overrides(["seed=1"]))  # simulator seed
    assert key != steps.ingest_key(cfg.with_overrides(["data.simulator.noise=0.2"]))
    # the work folders are not content
    assert key == steps.ingest_key(cfg.with_overrides(["pipeline.work_dir=elsewhere"]))
    pkey = steps.prepare_key(cfg, key)
    assert pkey != steps.prepare_key(cfg.with_overrides(["prepare.rul_cap=100"]), key)
    assert pkey != steps.prepare_key(cfg, "other")
    # file sources: the bytes of the files count
    data = tmp_path / "t.csv"
    data.write_text("unit,time,sensor_1\n1,1,0.5\n")
    tcfg = cfg.with_overrides(["data.source=table", f"data.path={data}"])
    k1 = steps.ingest_key(tcfg)
    data.write_text("unit,time,sensor_1\n1,1,0.6\n")
    assert steps.ingest_key(tcfg) != k1


def test_steps_end_to_end_write_what_they_say(cfg: RunConfig, tmp_path: Path) -> None:
    seen: list[str] = []
    outs = steps.run_steps(cfg, tmp_path, on_step=lambda spec, res, s: seen.append(spec.name))
    assert seen == list(outs) == [spec.name for spec in steps.PIPELINE]
    for spec in steps.PIPELINE:
        out = outs[spec.name]
        assert Path(out.dir) == tmp_path / spec.folder
        saved = json.loads((Path(out.dir) / steps.OUTPUT_FILE).read_text())
        assert saved["step"] == out.step == spec.name
        assert StepResult.load(out.dir) == out
        for local in [*out.figures.values(), *out.tables.values()]:
            assert Path(local).is_file(), local
    assert outs["ingest"].info["dataset"] == "simulated"
    assert outs["prepare"].info["train_units"] + outs["prepare"].info["val_units"] == 16
    ev = outs["evaluate"].metrics
    assert ev["lstm_test_n"] == 4 and ev["forest_test_rmse"] > 0
    assert outs["explain"].metrics["gate_max_abs_error"] < 1e-4
    s = summary(outs)
    assert s["lstm"]["rmse"] == ev["lstm_test_rmse"]
    page = build_report(outs, "tiny")
    assert find_external_references(page) == [] and "Inside the LSTM" in page
    assert "| lstm |" in markdown(s, "http://x")


def test_refit_trains_on_train_and_validation_units(cfg: RunConfig, tmp_path: Path) -> None:
    steps.ingest(cfg, tmp_path / "i")
    steps.prepare(cfg, tmp_path / "i", tmp_path / "p")
    rows: list[dict] = []
    out = steps.train_lstm(
        cfg.with_overrides(["model.lstm.refit=true"]),
        tmp_path / "p",
        tmp_path / "l",
        callback=lambda e, row: rows.append(row),
    )
    est = LSTMEstimator.load(model_file(LSTM, tmp_path / "l"))
    first_fit = out.info["history"]
    assert len(first_fit) == 2 and all("val_loss" in h for h in first_fit)
    # the refit ran best_epoch + 1 epochs without validation units
    assert len(est.history_) == out.metrics["best_epoch"] + 1
    assert all("val_loss" not in h for h in est.history_)
    # progress of both fits reaches the caller, the refit's under refit_* names
    refit_rows = [r for r in rows if "refit_train_loss" in r]
    assert len(rows) - len(refit_rows) == 2 and len(refit_rows) == len(est.history_)
    assert [r["refit_train_loss"] for r in refit_rows] == [h["train_loss"] for h in est.history_]


def test_refit_keeps_the_task_and_the_validation_fitted_calibration(
    cfg: RunConfig, tmp_path: Path
) -> None:
    from pdmlens.data.prepare import PreparedData

    hcfg = cfg.with_overrides(["model.task=horizon"])
    steps.ingest(hcfg, tmp_path / "i")
    steps.prepare(hcfg, tmp_path / "i", tmp_path / "p")
    data = PreparedData.load(tmp_path / "p")
    col = steps.LSTM_TARGET
    early = (
        LSTMEstimator.from_config(hcfg, task="horizon")
        .set_params(threshold=0.4)
        .fit(data.windows("train", hcfg.window, col), data.windows("val", hcfg.window, col))
    )
    refit = steps.refit_lstm(hcfg, data, col, early)
    assert refit.task == "horizon" and len(refit.history_) == early.best_epoch_ + 1
    # no unit is left to fit on: the early-stopped model's threshold and scale are kept
    assert refit.threshold_ == early.threshold_ == 0.4
    assert refit.horizon_scale_ == early.horizon_scale_
    x = data.windows("val", hcfg.window, col).all_windows()
    rul = refit._outputs(x, raw=True).astype(np.float64) * refit._scale()
    np.testing.assert_allclose(
        refit.predict(x), 1 / (1 + np.exp(-(30.5 - rul) / early.horizon_scale_)), atol=1e-6
    )


def test_horizon_task_runs_through_evaluate_and_explain(cfg: RunConfig, tmp_path: Path) -> None:
    hcfg = cfg.with_overrides(["model.task=horizon"])
    outs = steps.run_steps(hcfg, tmp_path, until="explain")
    assert list(outs) == [*steps.STEP_NAMES[: steps.STEP_NAMES.index("explain") + 1]]
    tr = outs["train_lstm"]
    # the probability's scale is fitted on the validation units and logged for analysts
    assert (
        tr.metrics["horizon_scale"] == LSTMEstimator.load(model_file(LSTM, tr.dir)).horizon_scale_
    )
    assert tr.info["decision"].startswith("P(failure within 30 cycles) = sigmoid((30.5 - ")
    assert tr.info["decision"].endswith("an alarm at 0.5, i.e. predicted RUL <= 30.5")
    ev = outs["evaluate"]
    assert ev.info["key"] == "all_pr_auc"
    for name in ("lstm", "forest"):
        # every test window is scored too: the last windows alone may hold no failure
        assert ev.metrics[f"{name}_test_all_n"] > ev.metrics[f"{name}_test_n"]
        assert 0.0 <= ev.metrics[f"{name}_test_all_roc_auc"] <= 1.0
    ex = outs["explain"]
    assert "figures/gates_near_failure_layer1.png" in ex.figures
    # the machines at risk: the LSTM's RUL and the alert, no late table (no RUL truth)
    from pdmlens.steps.graph import call_step, step

    for name in ("bundle", "at_risk"):
        outs[name] = call_step(step(name), hcfg, outs, tmp_path / name)
    ar = outs["at_risk"]
    assert set(ar.tables) == {"machines_at_risk.csv"} and ar.info["n_machines"] == 4
    risk = pd.read_csv(ar.tables["machines_at_risk.csv"])
    assert risk["lstm_rul"].notna().all() and risk["forest_rul"].isna().all()
    assert "true_rul" not in risk
    # the analyst reads how an alarm is raised in the summary, the markdown and the report
    rule = tr.info["decision"]
    assert summary(outs)["lstm"]["decision"] == rule
    assert f"LSTM alarm rule: {rule}" in markdown(summary(outs))
    assert html.escape(f"The LSTM's alarm rule: {rule}.") in build_report(outs, "tiny")
