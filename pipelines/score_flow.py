"""The scoring flow: read whatever the configured source holds now, score it, record it.

``pdmlens_score_flow`` is what ``pdmlens score`` does, as a Prefect flow for schedules:
load the source (I/O, retried), score with the chosen model (default: the dataset's LSTM
champion; or a model URI, or a local bundle folder), write the fleet table and board, and
record a scoring run in MLflow (experiment ``pdmlens-score-<dataset>``). Bad data fails
the flow before any scoring run exists.

``pdmlens serve --cron ... --score-cron ...`` (``pipelines.run.serve(score_cron=)``) serves
it beside the training deployment (e.g. training nightly, scoring hourly), each on its own
cron, one run at a time, stopped cleanly together.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from pdmlens.config import RunConfig
from pipelines.retries import retry_options

SCORE_FLOW_NAME = "pdmlens-score"
SCORE_DEPLOYMENT = "scoring"


def _tracker(cfg: RunConfig) -> Any:
    from pdmlens.tracking import Tracker

    return Tracker(cfg.tracking)


@task(name="score", **retry_options(2))
def score_task(
    cfg: RunConfig,
    model: str | None,
    bundle_dir: str | None,
    split: str,
    explain: str,
    out_dir: str,
) -> dict[str, Any]:
    """Load the source, score it, write the outputs; returns counts, files and models."""
    from pdmlens.scoring.bundle import ScoringBundle
    from pdmlens.scoring.outputs import data_file, dataset_name, load_scoring_data, write_outputs
    from pdmlens.scoring.score import score_fleet

    fleet, used = load_scoring_data(cfg, split)
    dataset = dataset_name(cfg, fleet)
    if bundle_dir is not None:
        bundle, versions = ScoringBundle.load(bundle_dir), {"bundle": bundle_dir}
    else:
        from pdmlens.tracking import scoring as TS

        resolved = TS.load_bundle(_tracker(cfg), model or TS.champion_uri(dataset))
        bundle, versions = resolved.bundle, resolved.versions
    scores = score_fleet(bundle, fleet, explain=explain, file=data_file(cfg, used))
    files = write_outputs(
        scores,
        bundle,
        out_dir,
        title=f"pdmlens fleet board: {dataset}",
        subtitle=f"{used} split scored {time.strftime('%Y-%m-%d %H:%M:%S')}",
        split=used,
        models=versions,
    )
    return {
        "dataset": dataset,
        "split": used,
        "counts": scores.counts(),
        "seconds": scores.seconds,
        "models": versions,
        "files": {k: str(v) for k, v in files.artifacts().items()},
        "summary": str(files.summary),
        "board": str(files.board),
    }


@task(name="log-scoring", **retry_options(2))
def log_scoring_task(cfg: RunConfig, result: dict[str, Any], flow_run_id: str | None) -> str:
    """Record the scoring run (metrics from the written summary, artifacts the files)."""
    import json

    from pdmlens.scoring.score import ScoreTable
    from pdmlens.tracking import scoring as TS
    from pdmlens.tracking.tags import SPLIT_TAG

    doc = json.loads(Path(result["summary"]).read_text())
    import pandas as pd

    scores = ScoreTable(table=pd.DataFrame(doc["units"]), seconds=doc["seconds"])
    tags = {**TS.model_tags(result["models"]), SPLIT_TAG: result["split"]}
    if flow_run_id:
        tags["pdmlens.flow_run_id"] = flow_run_id
    with TS.scoring_run(_tracker(cfg), result["dataset"], tags=tags) as run:
        run.log(scores, result["files"])
        return run.run_id


@flow(name=SCORE_FLOW_NAME, log_prints=True)
def pdmlens_score_flow(
    config: dict | None = None,
    overrides: list[str] | None = None,
    model: str | None = None,
    bundle: str | None = None,
    split: str = "auto",
    explain: str = "all",
    out_dir: str | None = None,
) -> dict[str, Any]:
    """Score the configured source's current data; returns counts, files and the MLflow
    scoring run id."""
    from prefect.runtime import flow_run

    cfg = RunConfig.model_validate(config or {})
    if overrides:
        cfg = cfg.with_overrides(list(overrides))
    logger = get_run_logger()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out_dir or str(Path(cfg.pipeline.work_dir).parent / "scores" / stamp)
    result = score_task(cfg, model, bundle, split, explain, out)
    run_id = log_scoring_task(cfg, result, flow_run.get_id())
    logger.info("scored %s: %s (MLflow run %s)", result["dataset"], result["counts"], run_id)
    return {**result, "mlflow_run_id": run_id}
