"""Close the MLflow runs a killed flow run left open.

A flow run cancelled by ``pdmlens serve`` normally marks its MLflow runs KILLED itself
(``Tracker.tracked_run`` catches the termination). When its process is killed before it
can, its parent and child runs stay RUNNING forever; serve calls
:func:`mark_flow_runs_killed` on its way out to end them honestly. Runs are found by the
``pdmlens.flow_run_id`` tag the flow sets on the parent and its children inherit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


def mark_flow_runs_killed(tracking_uri: str, flow_run_ids: Iterable[str]) -> list[str]:
    """Mark every RUNNING MLflow run tagged with one of ``flow_run_ids`` KILLED (in every
    experiment of the store at ``tracking_uri``); returns the MLflow run ids it ended."""
    ids = sorted({str(i) for i in flow_run_ids})
    if not ids:
        return []
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from pdmlens.tracking import TAG_FLOW_RUN

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    ended: list[str] = []
    for flow_run_id in ids:
        for run in client.search_runs(
            experiments,
            filter_string=f"tags.`{TAG_FLOW_RUN}` = '{flow_run_id}' "
            "AND attributes.status = 'RUNNING'",
            run_view_type=ViewType.ALL,
            max_results=10_000,
        ):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    if ended:
        log.info("marked %d MLflow run(s) of cancelled flow runs KILLED", len(ended))
    return ended
