"""The pipeline graph: defined once, consistent, and walked by both the plain runner and the
Prefect flow."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pdmlens.config import RunConfig
from pdmlens.results import MODELS, StepResult, model_metrics, model_scores, score_name
from pdmlens.steps import graph


def test_every_input_is_an_earlier_step() -> None:
    seen: set[str] = set()
    for spec in graph.PIPELINE:
        assert set(spec.inputs) <= seen, spec.name
        assert set(spec.after) <= seen, spec.name
        seen.add(spec.name)
    assert len(seen) == len(graph.PIPELINE)  # names are unique
    assert len({s.folder for s in graph.PIPELINE}) == len(graph.PIPELINE)


def test_each_step_takes_its_inputs_folders_then_its_own() -> None:
    for spec in graph.PIPELINE:
        params = list(inspect.signature(spec.fn).parameters)
        assert params[0] == "cfg", spec.name
        assert len(params) >= len(spec.inputs) + 2, spec.name
        if spec.progress_arg is not None:
            assert spec.progress_arg in params, spec.name


def test_cached_steps_come_first_and_logged_steps_name_known_runs() -> None:
    cached = [s.cache_key is not None for s in graph.PIPELINE]
    assert cached == sorted(cached, reverse=True)  # a prefix: the data, before MLflow
    runs = {graph.PARENT, *(c.name for c in graph.CHILD_RUNS)}
    for spec in graph.PIPELINE:
        assert (spec.run is None) == (spec.cache_key is not None), spec.name
        assert spec.run is None or spec.run in runs, spec.name
    # every model is trained by one step, logged to the model's own child run
    for kind in MODELS:
        spec = graph.step(kind.train_step)
        assert spec.model is kind and spec.run == kind.child_run
    assert set(graph.LOG_AFTER) <= set(graph.STEP_NAMES)


def test_unknown_step_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no step 'trian'"):
        graph.run_steps(RunConfig(), tmp_path, until="trian")
    assert list(tmp_path.iterdir()) == []


def test_the_runner_and_the_flow_walk_the_same_graph() -> None:
    """Neither wires steps itself: both call ``call_step`` on the specs of PIPELINE."""
    import pipelines.flow as flow

    runner = inspect.getsource(graph.run_steps)
    assert "for spec in PIPELINE" in runner and "call_step(" in runner
    source = inspect.getsource(flow)
    assert "PIPELINE" in source and "call_step(" in source
    for spec in graph.PIPELINE:  # no step function is called by name in the flow
        assert f"steps.{spec.fn.__name__}(" not in source
        assert f" {spec.fn.__name__}(cfg" not in source


def test_metric_names_are_made_and_taken_apart_in_one_place() -> None:
    ev = {"lstm_test_rmse": 1.0, "lstm_test_all_rmse": 2.0, "forest_test_rmse": 3.0}
    assert score_name("lstm", "rmse") == "lstm_test_rmse"
    assert model_metrics(ev, "lstm") == {"test_rmse": 1.0, "test_all_rmse": 2.0}
    assert model_scores(ev, "forest") == {"rmse": 3.0}


def test_step_result_round_trips_through_json(tmp_path: Path) -> None:
    res = StepResult("x", str(tmp_path), metrics={"a": 1.5}, info={"k": [1, 2]}, seconds=0.25)
    assert res.save() is res
    assert StepResult.load(tmp_path) == res
    assert StepResult.coerce(vars(res)) == res and StepResult.coerce(res) is res
