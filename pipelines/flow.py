"""The main pdmlens flow: ingest -> prepare -> train LSTM || train forest -> evaluate ->
explain || signatures -> report, one Prefect task per step, everything logged to MLflow.

Orchestration only: the flow walks the pipeline graph (:data:`pdmlens.steps.graph.PIPELINE`,
the same definition :func:`pdmlens.steps.run_steps` walks); each task calls one step
(``call_step``) or one method of :class:`pdmlens.tracking.Tracker` (MLflow). Tasks pass
small values between them (:class:`pdmlens.results.StepResult`: paths, numbers; run ids),
never DataFrames. The cached steps (ingest, prepare) are keyed by the content of their
inputs and config (``StepSpec.cache_key``) and write into content-addressed folders, so a
second run on the same data reuses both; a folder is written whole or not at all and
reused only when its files match their recorded sha256 (:mod:`pdmlens.steps.cache`). I/O
tasks (reading the source, logging to MLflow) retry with exponential backoff; bad data is
never retried. The MLflow parent run is opened once the data is known good; a failure in
any later task marks the parent and its children FAILED and registers nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, State

from pdmlens.config import RunConfig
from pdmlens.report import run_report
from pdmlens.results import (
    MODELS,
    REPORT_FILE,
    TEST,
    StepResult,
    model_metrics,
    score_name,
)
from pdmlens.steps import cache as folder_cache
from pdmlens.steps import graph
from pdmlens.steps.graph import (
    BUNDLE_STEP,
    CHILD_RUNS,
    LOG_AFTER,
    PARENT,
    StepSpec,
    call_step,
    step,
)
from pdmlens.task import task_of
from pdmlens.tracking import Tracker, registered_model_name
from pipelines.retries import retry_options

FLOW_NAME = "pdmlens"
log = logging.getLogger("pdmlens.pipeline")


def _io(name: str, retries: int = 2):
    return task(name=name, **retry_options(retries))


def _cached(spec: StepSpec, cfg: RunConfig):
    """The cached step's task: named after the step, retried on transient I/O failures
    where the step reads the source."""
    retry = retry_options(cfg.pipeline.retries) if spec.retry_io else {}
    return cached_step_task.with_options(name=spec.task_name, **retry)


# ----------------------------------------------------------------------------- tasks


@task
def cached_step_task(
    name: str,
    cfg: RunConfig,
    inputs: dict[str, StepResult],
    key: str,
    out_dir: str,
    use_cache: bool = True,
) -> StepResult | State:
    """A cached step (ingest, prepare), kept in the folder ``out_dir`` named by its content
    ``key``. The folder is the cache: reused (state ``Cached``) only when every file
    matches its recorded size and sha256, else removed and built again, atomically
    (:mod:`pdmlens.steps.cache`)."""
    if use_cache:
        kept = folder_cache.reuse(out_dir)
        if kept is not None:
            return Completed(data=kept, name="Cached", message=f"reused {out_dir}")
    spec = step(name)
    return folder_cache.build(
        out_dir, lambda tmp: call_step(spec, cfg, inputs, tmp), replace=not use_cache
    )


@task
def step_task(
    name: str,
    cfg: RunConfig,
    inputs: dict[str, StepResult],
    out_dir: str,
    tracking: dict,
    run_id: str | None,
) -> StepResult:
    """One step of the graph, with its progress reported to the Prefect log (and, for
    training epochs, to its MLflow run)."""
    spec = step(name)
    extra: dict[str, Any] = {}
    if spec.progress_arg is not None:
        make = _epoch_logger if spec.progress == "epochs" else _window_logger
        extra[spec.progress_arg] = make(cfg, tracking, run_id)
    return call_step(spec, cfg, inputs, out_dir, **extra)


def _epoch_logger(cfg: RunConfig, tracking: dict, run_id: str | None) -> Any:
    """Each epoch's row to the MLflow run ``run_id`` and a line to the Prefect log."""
    epoch_log = Tracker(**tracking).make_epoch_callback(run_id) if run_id else None
    logger = get_run_logger()

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
        if epoch_log is not None:
            epoch_log(epoch, row)
        if "refit_train_loss" in row:  # the refit on training + validation units
            logger.info("LSTM refit epoch %d: train loss %.4f", epoch + 1, row["refit_train_loss"])
            return
        logger.info(
            "LSTM epoch %d/%d: train loss %.4f, validation loss %s",
            epoch + 1,
            cfg.model.lstm.epochs,
            row["train_loss"],
            f"{row['val_loss']:.4f}" if "val_loss" in row else "-",
        )

    return on_epoch


def _window_logger(cfg: RunConfig, tracking: dict, run_id: str | None) -> Any:
    """A line to the Prefect log at most every 5 seconds per computation (and at its end)."""
    logger = get_run_logger()
    last: dict[str, float] = {}

    def progress(what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last.get(what, 0.0) > 5:
            last[what] = now
            logger.info("%s: %d/%d windows", what, done, total)

    return progress


@_io("log-step")
def log_step_task(tracking: dict, run_id: str, output: StepResult) -> None:
    Tracker(**tracking).log_step(run_id, output.metrics, output.files, "")


@_io("log-model")
def log_model_task(tracking: dict, run_id: str, kind: str, bundle: StepResult) -> str:
    """Log a trained model as a scoring pyfunc over the run's scoring bundle (it takes raw
    fleet tables and windows [N, W, F]); returns its ``models:/`` URI."""
    from pdmlens.results import model_kind
    from pdmlens.tracking.scoring import log_scoring_model

    model = model_kind(kind)
    return log_scoring_model(Tracker(**tracking), run_id, bundle.dir, model.name, model.child_run)


@_io("report")
def report_task(
    tracking: dict,
    run_id: str,
    outputs: dict[str, StepResult],
    out_dir: str,
    title: str,
    subtitle: str,
) -> str:
    tracker = Tracker(**tracking)
    page = run_report.build_report(
        outputs, title=title, subtitle=subtitle, footer=f"MLflow run {run_id}"
    )
    path = Path(out_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    tracker.log_html(run_id, page, REPORT_FILE)
    return str(path)


# ----------------------------------------------------------------------------- flow


@flow(name=FLOW_NAME, log_prints=True)
def pdmlens_flow(config: dict | None = None, overrides: list[str] | None = None) -> dict:
    """One pdmlens run: train, evaluate, explain and profile both models on one dataset,
    everything recorded in MLflow. ``config``: a RunConfig as a dict (None: defaults);
    ``overrides``: ``key=value`` strings applied on top. Returns the run's summary.

    Walks :data:`pdmlens.steps.graph.PIPELINE`: the cached steps first (the data, known
    good before the MLflow run opens), then every other step as a task that starts once
    its inputs are done, so independent steps run side by side."""
    cfg = RunConfig.model_validate(config or {})
    if overrides:
        cfg = cfg.with_overrides(list(overrides))
    logger = get_run_logger()
    t0 = time.perf_counter()
    pc = cfg.pipeline
    work_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{(flow_run.get_id() or 'local')[:8]}"
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(pc.work_dir) / work_id
    cache = Path(pc.cache_dir)

    # a store that cannot be used fails the run now, within seconds, before any work
    tracker = Tracker(cfg.tracking)
    tracker.preflight()

    results: dict[str, StepResult] = {}
    keys: dict[str, str] = {}
    cached: dict[str, bool] = {}
    pipeline = graph.PIPELINE  # read at run time: a test may swap a step's function
    cached_steps = [s for s in pipeline if s.cache_key is not None]
    for spec in cached_steps:
        assert spec.cache_key is not None
        keys[spec.name] = spec.cache_key(cfg, *(keys[i] for i in spec.inputs))
        out_dir = cache / spec.folder / keys[spec.name]
        fut = _cached(spec, cfg).submit(
            spec.name,
            cfg,
            {i: results[i] for i in spec.inputs},
            keys[spec.name],
            str(out_dir),
            pc.cache,
        )
        results[spec.name] = StepResult.coerce(fut.result())
        cached[spec.name] = fut.state.name == "Cached"
    ing = results["ingest"]
    dataset = ing.info["dataset"]
    logger.info("data %s ready (cached: %s)", dataset, cached)

    # resolved once, so every task (thread or Dask worker) writes to the same store
    tracking = {
        "cfg": cfg.tracking.model_copy(
            update={"uri": tracker.uri, "artifact_root": tracker.artifact_root}
        )
    }
    experiment = cfg.tracking.experiment or f"pdmlens-{dataset}"
    task = task_of(cfg)
    with tracker.tracked_run(
        experiment,
        f"{dataset} {started} (running)",
        dataset_hash=ing.info["hash"],
        dataset=dataset,
        flow_run_id=flow_run.get_id(),
    ) as run:
        parent = run.run_id
        children = {c.name: run.child(c.name) for c in CHILD_RUNS}
        runs = {PARENT: parent, **children}
        flat = cfg.flat()
        tracker.log_params(parent, flat)
        for c in CHILD_RUNS:
            tracker.log_params(
                children[c.name],
                {
                    k: v
                    for k, v in flat.items()
                    if k.startswith(c.params) or k in ("seed", "model.task")
                },
            )
        _log_inputs(tracker, parent, children, ing, dataset)

        futures: dict[str, Any] = {}
        uris: dict[str, Any] = {}
        logs = []
        for spec in pipeline:
            if spec.cache_key is not None:
                continue
            run_id = runs[spec.run] if spec.run else None
            fut = step_task.with_options(name=spec.task_name).submit(
                spec.name,
                cfg,
                {i: futures.get(i, results.get(i)) for i in spec.inputs},
                str(work / spec.folder),
                tracking,
                run_id,
                wait_for=[futures[a] for a in spec.after],
                return_state=False,
            )
            futures[spec.name] = fut
        # logging starts once the scoring is done (LOG_AFTER), so nothing runs beside it
        scored = [futures[name] for name in LOG_AFTER]
        for spec in pipeline:
            if spec.name not in futures:
                continue
            fut = futures[spec.name]
            if spec.model is not None:
                uris[spec.model.name] = log_model_task.submit(
                    tracking,
                    runs[spec.model.child_run],
                    spec.model.name,
                    futures[BUNDLE_STEP],
                    wait_for=[fut, *scored],
                )
            if spec.run is not None:
                logs.append(log_step_task.submit(tracking, runs[spec.run], fut, wait_for=scored))
        for spec in pipeline:
            if spec.name in futures:
                results[spec.name] = futures[spec.name].result()
        # each model's own evaluate metrics on its child run, without the model prefix
        for kind in MODELS:
            tracker.log_metrics(
                children[kind.child_run], model_metrics(results["evaluate"].metrics, kind.name)
            )
        summary = run_report.summary(results)
        report = report_task.submit(
            tracking,
            parent,
            results,
            str(work),
            title=f"pdmlens run on {dataset}",
            subtitle=f"{started} · seed {cfg.seed} · dataset hash {ing.info['hash']} · "
            f"work folder {work_id}",
        )
        for fut in logs:
            fut.result()
        report_path = report.result()
        # the champion is judged on the task's headline metric (rul: the last window per
        # test unit; horizon: every test window, a handful of last windows may hold no
        # failure at all)
        for kind in MODELS:
            value = results["evaluate"].metrics.get(
                score_name(kind.name, task.headline), float("nan")
            )
            run.register_later(
                uris[kind.name].result(),
                registered_model_name(kind.registered_kind, dataset),
                children[kind.child_run],
                TEST + task.headline,
                value,
                higher_is_better=task.higher_is_better,
            )
        tracker.set_tags(
            parent,
            {
                "pdmlens.report": REPORT_FILE,
                "pdmlens.cached_ingest": cached["ingest"],
                "pdmlens.cached_prepare": cached["prepare"],
            },
        )
        # a readable name and the headline in words, shown in MLflow's runs list and run page
        tracker.describe(
            parent,
            name=run_report.run_name(summary, started),
            note=run_report.description(results, summary),
        )
        url = tracker.run_url(parent)
    registrations = [
        {"name": r.name, "version": r.version, "champion": r.champion, "reason": r.reason}
        for r in run.registrations
    ]
    summary.update(
        {
            "mlflow_run_id": parent,
            "experiment": experiment,
            "mlflow_url": url,
            "tracking_uri": tracker.uri,
            "children": children,
            "registered": registrations,
            "cached": cached,
            "report": report_path,
            "work_dir": str(work),
            "flow_run_id": flow_run.get_id(),
            "seconds_total": round(time.perf_counter() - t0, 2),
        }
    )
    try:
        create_markdown_artifact(
            run_report.markdown(summary, url),
            key="pdmlens-run-summary",
            description=f"pdmlens run {work_id} on {dataset}",
        )
    except Exception as exc:  # an artifact is a courtesy; the run itself is recorded
        logger.warning("could not create the Prefect artifact: %s", exc)
    return summary


def _log_inputs(
    tracker: Tracker, parent: str, children: dict[str, str], ing: StepResult, dataset: str
) -> None:
    """The ingested fleets as MLflow dataset inputs (schema, size, content hash)."""
    import pandas as pd

    for split in ("train", "test"):
        path = Path(ing.dir) / f"{split}.parquet"
        if not path.is_file():
            continue
        frame = pd.read_parquet(path)
        name = f"{dataset}-{split}"
        digest = f"{ing.info['hash']}-{split}"
        context = "training" if split == "train" else "testing"
        for run_id in (parent, *(children[m.child_run] for m in MODELS)):
            tracker.log_dataset_input(run_id, frame, name, digest, path, context)
