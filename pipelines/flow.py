"""The main pdmlens flow: ingest -> prepare -> train LSTM || train forest -> evaluate ->
explain || signatures -> report, one Prefect task per step, everything logged to MLflow.

Orchestration only: every task calls one function of :mod:`pdmlens.steps` (the maths) or
of :class:`pdmlens.tracking.Tracker` (MLflow). Tasks pass small values between them (step
summaries with paths, run ids), never DataFrames. Ingest and prepare are cached by the
content key of their inputs and config (``pdmlens.steps.ingest_key``/``prepare_key``) and
write into content-addressed folders, so a second run on the same data reuses both. I/O
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
from prefect.tasks import exponential_backoff

from pdmlens import steps
from pdmlens.config import RunConfig
from pdmlens.errors import PdmlensError
from pdmlens.report import run_report
from pdmlens.steps import StepOutput
from pdmlens.tracking import Tracker, registered_model_name

FLOW_NAME = "pdmlens"
log = logging.getLogger("pdmlens.pipeline")


def _retry_io(task, task_run, state) -> bool:  # noqa: ANN001 (Prefect's callback shape)
    """Retry transient I/O failures only: bad input data stays bad."""
    try:
        state.result()
    except PdmlensError:
        return False
    except Exception:
        return True
    return False


def _io(name: str, retries: int = 2):
    return task(
        name=name,
        retries=retries,
        retry_delay_seconds=exponential_backoff(2),
        retry_condition_fn=_retry_io,
    )


def _cache_key(kind: str):
    """Prefect cache key: the step's content key (None, no caching, when caching is off)."""

    def key_fn(context, parameters: dict[str, Any]) -> str | None:  # noqa: ANN001
        if not parameters.get("use_cache", True):
            return None
        return f"pdmlens-{kind}-{parameters['key']}"

    return key_fn


def _cached(task_fn, out_dir: Path, cache_root: Path, use_cache: bool):
    """The task with its results kept beside the cached folders, and its cache refreshed
    when the folder a cached result points to is gone or incomplete."""
    complete = (out_dir / steps.OUTPUT_FILE).is_file()
    return task_fn.with_options(
        result_storage=cache_root / "prefect-results", refresh_cache=use_cache and not complete
    )


# ----------------------------------------------------------------------------- tasks


@task(
    name="ingest",
    cache_key_fn=_cache_key("ingest"),
    persist_result=True,
    retries=2,
    retry_delay_seconds=exponential_backoff(2),
    retry_condition_fn=_retry_io,
)
def ingest_task(cfg: RunConfig, key: str, out_dir: str, use_cache: bool = True) -> dict:
    return vars(steps.ingest(cfg, out_dir))


@task(name="prepare", cache_key_fn=_cache_key("prepare"), persist_result=True)
def prepare_task(
    cfg: RunConfig, ingest_dir: str, key: str, out_dir: str, use_cache: bool = True
) -> dict:
    return vars(steps.prepare(cfg, ingest_dir, out_dir))


@task(name="train-lstm")
def train_lstm_task(
    cfg: RunConfig, prepared_dir: str, out_dir: str, tracking: dict, run_id: str
) -> dict:
    tracker = Tracker(**tracking)
    epoch_log = tracker.make_epoch_callback(run_id)
    logger = get_run_logger()

    def on_epoch(epoch: int, row: dict[str, float]) -> None:
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

    return vars(steps.train_lstm(cfg, prepared_dir, out_dir, callback=on_epoch))


@task(name="train-forest")
def train_forest_task(cfg: RunConfig, prepared_dir: str, out_dir: str) -> dict:
    return vars(steps.train_forest(cfg, prepared_dir, out_dir))


@task(name="evaluate")
def evaluate_task(
    cfg: RunConfig, prepared_dir: str, lstm: dict, forest: dict, out_dir: str
) -> dict:
    return vars(steps.evaluate(cfg, prepared_dir, lstm["dir"], forest["dir"], out_dir))


@task(name="explain")
def explain_task(cfg: RunConfig, prepared_dir: str, lstm: dict, forest: dict, out_dir: str) -> dict:
    logger = get_run_logger()
    last: dict[str, float] = {}

    def progress(what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last.get(what, 0.0) > 5:
            last[what] = now
            logger.info("%s: %d/%d windows", what, done, total)

    return vars(
        steps.explain(cfg, prepared_dir, lstm["dir"], forest["dir"], out_dir, progress=progress)
    )


@task(name="signatures")
def signatures_task(cfg: RunConfig, prepared_dir: str, lstm: dict, out_dir: str) -> dict:
    return vars(steps.signatures(cfg, prepared_dir, lstm["dir"], out_dir))


@_io("log-step")
def log_step_task(
    tracking: dict, run_id: str, output: dict, prefix: str = "", metrics: bool = True
) -> None:
    Tracker(**tracking).log_step(
        run_id,
        output["metrics"] if metrics else None,
        {**output["figures"], **output["tables"]},
        prefix,
    )


@_io("log-model")
def log_model_task(tracking: dict, run_id: str, kind: str, output: dict) -> str:
    """Log a fitted model (signature, input example); returns its ``models:/`` URI.
    ``output``: the train step's output (``kind`` lstm or forest)."""
    from pdmlens.models.forest import ForestEstimator
    from pdmlens.models.lstm import LSTMEstimator

    tracker = Tracker(**tracking)
    example = steps.load_example(output["dir"])
    if kind == "lstm":
        lstm = LSTMEstimator.load(Path(output["dir"]) / "lstm.pt")
        return tracker.log_lstm_model(run_id, lstm, example)
    forest = ForestEstimator.load(Path(output["dir"]) / "forest.joblib")
    return tracker.log_forest_model(run_id, forest, example)


@_io("report")
def report_task(
    tracking: dict, run_id: str, outputs: dict[str, dict], out_dir: str, title: str, subtitle: str
) -> str:
    tracker = Tracker(**tracking)
    outs = {k: StepOutput(**v) for k, v in outputs.items()}
    page = run_report.build_report(
        outs, title=title, subtitle=subtitle, footer=f"MLflow run {run_id}"
    )
    path = Path(out_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    tracker.log_html(run_id, page, "report.html")
    return str(path)


# ----------------------------------------------------------------------------- flow


@flow(name=FLOW_NAME, log_prints=True)
def pdmlens_flow(config: dict | None = None, overrides: list[str] | None = None) -> dict:
    """One pdmlens run: train, evaluate, explain and profile both models on one dataset,
    everything recorded in MLflow. ``config``: a RunConfig as a dict (None: defaults);
    ``overrides``: ``key=value`` strings applied on top. Returns the run's summary."""
    cfg = RunConfig.model_validate(config or {})
    if overrides:
        cfg = cfg.with_overrides(list(overrides))
    logger = get_run_logger()
    t0 = time.perf_counter()
    pc = cfg.pipeline
    run_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{(flow_run.get_id() or 'local')[:8]}"
    work = Path(pc.work_dir) / run_name
    cache = Path(pc.cache_dir)

    ikey = steps.ingest_key(cfg)
    ing_dir = cache / "ingest" / ikey
    ing_fut = (
        _cached(ingest_task, ing_dir, cache, pc.cache)
        .with_options(retries=pc.retries)
        .submit(cfg, ikey, str(ing_dir), pc.cache)
    )
    ing = ing_fut.result()
    pkey = steps.prepare_key(cfg, ikey)
    prep_dir = cache / "prepare" / pkey
    prep_fut = _cached(prepare_task, prep_dir, cache, pc.cache).submit(
        cfg, ing["dir"], pkey, str(prep_dir), pc.cache
    )
    prep = prep_fut.result()
    cached = {"ingest": ing_fut.state.name == "Cached", "prepare": prep_fut.state.name == "Cached"}
    dataset = ing["info"]["dataset"]
    logger.info("data %s ready (cached: %s)", dataset, cached)

    tracker = Tracker(cfg.tracking)
    # resolved once, so every task (thread or Dask worker) writes to the same store
    tracking = {
        "cfg": cfg.tracking.model_copy(
            update={"uri": tracker.uri, "artifact_root": tracker.artifact_root}
        )
    }
    experiment = cfg.tracking.experiment or f"pdmlens-{dataset}"
    # the champion is judged on the last window per test unit (rul) or, for the horizon
    # task, on every test window (a handful of last windows may hold no failure at all)
    key_metric = "rmse" if cfg.model.task == "rul" else "all_pr_auc"
    with tracker.tracked_run(
        experiment,
        run_name,
        dataset_hash=ing["info"]["hash"],
        dataset=dataset,
        flow_run_id=flow_run.get_id(),
    ) as run:
        parent = run.run_id
        children = {name: run.child(name) for name in ("lstm", "random_forest", "signatures")}
        tracker.log_params(parent, cfg.flat())
        for name, child in children.items():
            section = {
                "lstm": "model.lstm.",
                "random_forest": "model.forest.",
                "signatures": "signatures.",
            }[name]
            tracker.log_params(
                child,
                {
                    k: v
                    for k, v in cfg.flat().items()
                    if k.startswith(section) or k in ("seed", "model.task")
                },
            )
        data_dir = prep["dir"]
        _log_inputs(tracker, parent, children, ing, dataset)

        lstm_f = train_lstm_task.submit(
            cfg, data_dir, str(work / "lstm"), tracking, children["lstm"]
        )
        forest_f = train_forest_task.submit(cfg, data_dir, str(work / "forest"))
        lstm, forest = lstm_f.result(), forest_f.result()
        ev = evaluate_task.submit(cfg, data_dir, lstm, forest, str(work / "evaluate")).result()
        ex_f = explain_task.submit(cfg, data_dir, lstm, forest, str(work / "explain"))
        sg_f = signatures_task.submit(cfg, data_dir, lstm, str(work / "signatures"))
        models = {"lstm": lstm, "forest": forest}
        uris = {
            kind: log_model_task.submit(tracking, children[child], kind, models[kind])
            for kind, child in (("lstm", "lstm"), ("forest", "random_forest"))
        }
        logs = [
            log_step_task.submit(tracking, children["lstm"], lstm),
            log_step_task.submit(tracking, children["random_forest"], forest),
            log_step_task.submit(tracking, parent, ev),
        ]
        for model, child in (("lstm", "lstm"), ("forest", "random_forest")):
            own = {
                k[len(model) + 1 :]: v
                for k, v in ev["metrics"].items()
                if k.startswith(model + "_")
            }
            tracker.log_metrics(children[child], own)
        ex, sg = ex_f.result(), sg_f.result()
        logs += [
            log_step_task.submit(tracking, parent, ex),
            log_step_task.submit(tracking, children["signatures"], sg),
        ]
        outputs = {
            "ingest": ing,
            "prepare": prep,
            "train_lstm": lstm,
            "train_forest": forest,
            "evaluate": ev,
            "explain": ex,
            "signatures": sg,
        }
        summary = run_report.summary({k: StepOutput(**v) for k, v in outputs.items()})
        report = report_task.submit(
            tracking,
            parent,
            outputs,
            str(work),
            title=f"pdmlens run on {dataset}",
            subtitle=f"{run_name} · seed {cfg.seed} · dataset hash {ing['info']['hash']}",
        )
        for fut in logs:
            fut.result()
        report_path = report.result()
        for kind, child, reg_kind in (
            ("lstm", "lstm", "lstm"),
            ("forest", "random_forest", "forest"),
        ):
            value = ev["metrics"].get(f"{kind}_test_{key_metric}", float("nan"))
            run.register_later(
                uris[kind].result(),
                registered_model_name(reg_kind, dataset),
                children[child],
                f"test_{key_metric}",
                value,
                higher_is_better=key_metric != "rmse",
            )
        tracker.set_tags(
            parent,
            {
                "pdmlens.report": "report.html",
                "pdmlens.cached_ingest": cached["ingest"],
                "pdmlens.cached_prepare": cached["prepare"],
            },
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
            description=f"pdmlens run {run_name} on {dataset}",
        )
    except Exception as exc:  # an artifact is a courtesy; the run itself is recorded
        logger.warning("could not create the Prefect artifact: %s", exc)
    return summary


def _log_inputs(
    tracker: Tracker, parent: str, children: dict[str, str], ing: dict, dataset: str
) -> None:
    """The ingested fleets as MLflow dataset inputs (schema, size, content hash)."""
    import pandas as pd

    for split in ("train", "test"):
        path = Path(ing["dir"]) / f"{split}.parquet"
        if not path.is_file():
            continue
        frame = pd.read_parquet(path)
        name = f"{dataset}-{split}"
        digest = f"{ing['info']['hash']}-{split}"
        context = "training" if split == "train" else "testing"
        for run_id in (parent, children["lstm"], children["random_forest"]):
            tracker.log_dataset_input(run_id, frame, name, digest, path, context)
