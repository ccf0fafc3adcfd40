"""The Dask task runner on a real ``distributed`` cluster: two worker processes on
127.0.0.1, started and stopped by the module fixture. The whole pipeline runs once with the
thread runner and once on the cluster (``pipeline.task_runner=dask``,
``pipeline.dask_address``), on the same tiny config: the metrics are equal to the bit, and
the scheduler's task stream shows the pipeline's own tasks executed by the worker
processes (not by this one).

Bit-equality needs the same torch thread count on both sides: Dask's nanny starts each
worker with ``OMP_NUM_THREADS=1``, while this process would train with one thread per core,
and a float sum over other thread splits rounds differently; so both runs set
``model.lstm.num_threads=1``. Everything else (the forest's trees, the seeded samples,
predictions) does not depend on where a task runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import TINY_RUN

distributed = pytest.importorskip("distributed", reason="pip install -e '.[dask]'")
pytest.importorskip("prefect_dask", reason="pip install -e '.[dask]'")

from pdmlens.config import RunConfig  # noqa: E402 (after the importorskip)
from pdmlens.steps.graph import PIPELINE  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY = [*TINY_RUN, "model.lstm.num_threads=1"]  # bit-equal across runners
STEP_TASKS = ("cached_step_task", "step_task")
"""the flow's tasks that run a step of the graph (the rest log to MLflow)"""


def config(root: Path, name: str, *extra: str) -> RunConfig:
    return RunConfig().with_overrides(
        [
            *TINY,
            f"tracking.uri=sqlite:///{root / (name + '.db')}",
            f"pipeline.work_dir={root / name / 'runs'}",
            f"pipeline.cache_dir={root / name / 'cache'}",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-threaded worker processes on 127.0.0.1 (they import
    pdmlens as this process does: the editable install, or PYTHONPATH, which they inherit)."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> dict:
    from pipelines.run import run_pipeline

    root = tmp_path_factory.mktemp("dask")
    threads = run_pipeline(config(root, "threads"))
    with distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        with distributed.get_task_stream(client) as stream:
            dask = run_pipeline(
                config(
                    root,
                    "dask",
                    "pipeline.task_runner=dask",
                    f"pipeline.dask_address={cluster.scheduler_address}",
                )
            )
        workers = set(cluster.scheduler.workers)
    return {
        "threads": threads,
        "dask": dask,
        "stream": stream.data,
        "worker_pids": worker_pids,
        "workers": workers,
    }


def test_dask_run_gives_the_thread_runners_metrics_to_the_bit(runs: dict) -> None:
    threads, dask = runs["threads"], runs["dask"]
    for model in ("lstm", "forest"):
        a = {k: v for k, v in threads[model].items() if k != "train_seconds"}
        b = {k: v for k, v in dask[model].items() if k != "train_seconds"}
        assert a and a == b, model  # exact floats: ==, not approx
    assert threads["explain"] == dask["explain"]
    assert threads["signatures"] == dask["signatures"]
    assert threads["data"] == dask["data"]
    assert threads["dataset_hash"] == dask["dataset_hash"]


def test_the_trained_networks_are_identical(runs: dict) -> None:
    import torch

    a = torch.load(Path(runs["threads"]["work_dir"]) / "lstm" / "lstm.pt", weights_only=False)
    b = torch.load(Path(runs["dask"]["work_dir"]) / "lstm" / "lstm.pt", weights_only=False)
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_the_pipelines_tasks_ran_on_the_worker_processes(runs: dict) -> None:
    ran = {}
    for rec in runs["stream"]:
        name = distributed.utils.key_split(rec["key"])
        ran.setdefault(name, set()).add(rec["worker"])
    # every step of the graph computed once, on a worker
    computed = [r for r in runs["stream"] if distributed.utils.key_split(r["key"]) in STEP_TASKS]
    assert len(computed) == len(PIPELINE), sorted(ran)
    assert {"log_step_task", "log_model_task", "report_task"} <= set(ran)
    assert set().union(*ran.values()) <= runs["workers"]  # only the cluster's workers
    assert os.getpid() not in runs["worker_pids"] and len(runs["worker_pids"]) == 2
