"""What ``pdmlens run`` says when the pipeline fails: the MLflow run is named as marked
FAILED only when the failure carries one (``mlflow_run_id``); otherwise no run is claimed
(a failure in ingest or prepare happens before any MLflow run exists)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdmlens.cli import app, opened_mlflow_run


def _say(monkeypatch: pytest.MonkeyPatch, exc: Exception, store: Path) -> tuple[int, str]:
    import pipelines.run

    def fail(cfg: object) -> dict:
        raise exc

    monkeypatch.setattr(pipelines.run, "run_pipeline", fail)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"tracking.uri=sqlite:///{store / 'mlflow.db'}"  # the CLI checks the store first
    res = CliRunner().invoke(app, ["run", "--set", uri])
    return res.exit_code, res.stderr.strip().splitlines()[-1]


def test_failure_before_any_mlflow_run_claims_none(monkeypatch, tmp_path: Path) -> None:
    code, last = _say(monkeypatch, RuntimeError("disk vanished"), tmp_path)
    assert code == 1
    assert last.startswith("error: the run failed: RuntimeError: disk vanished")
    assert "its MLflow runs are marked FAILED" not in last
    assert "if one was opened" in last


def test_failure_after_the_run_was_opened_names_it(monkeypatch, tmp_path: Path) -> None:
    exc = RuntimeError("explain broke")
    exc.mlflow_run_id = "0123abcd"  # type: ignore[attr-defined]
    assert opened_mlflow_run(exc) == "0123abcd"
    code, last = _say(monkeypatch, exc, tmp_path)
    assert code == 1
    assert last == (
        "error: the run failed: RuntimeError: explain broke (its MLflow run 0123abcd and its "
        "children are marked FAILED and no model was registered)"
    )
