"""A read-only index of a local SQLite MLflow store: runs, tags, params, latest metrics.

Why: the explorer's first page needs the list of runs, one run's params and where its
artifacts lie. Through MLflow that costs about two seconds on a small machine (importing
mlflow, then SQLAlchemy and alembic checking the schema) before the first row; plain
``sqlite3`` answers in milliseconds. The index reads only MLflow's core tables
(``experiments``, ``runs``, ``tags``, ``params``, ``latest_metrics``, unchanged in shape
since MLflow 1.x), opens the database read-only, and answers exactly what the MLflow client
answers (``tests/test_sqlite_index.py`` compares the two on a real store). Any SQLite error
(a schema that moved, a locked file) is raised as :class:`IndexUnavailable`, and the caller
(:class:`~pdmlens.tracking.explorer_reader.StoreReader`) falls back to the client.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ACTIVE = "active"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"


class IndexUnavailable(RuntimeError):
    """The database cannot be read as an MLflow store right now (use the client)."""


class SqliteIndex:
    """Read-only queries on one SQLite MLflow database."""

    def __init__(self, db_path: str | Path) -> None:
        self.path = Path(db_path)

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as con:
                return con.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise IndexUnavailable(f"{self.path}: {exc}") from exc

    def runs(
        self, max_results: int = 500, experiment: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Active runs of active experiments (of the experiment named ``experiment``; with
        ``status``), newest first as ``search_runs`` orders them (start time, then run
        id): ``run_id, experiment, name, start_time (ms), status, tags, metrics``."""
        where, args = ["r.lifecycle_stage = ?", "e.lifecycle_stage = ?"], [ACTIVE, ACTIVE]
        if experiment is not None:
            where.append("e.name = ?")
            args.append(experiment)
        if status is not None:
            where.append("r.status = ?")
            args.append(status)
        rows = self._query(
            "SELECT r.run_uuid, e.name, r.name, r.start_time, r.status FROM runs r "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            f"WHERE {' AND '.join(where)} ORDER BY r.start_time DESC, r.run_uuid ASC LIMIT ?",
            (*args, max_results),
        )
        ids = [r[0] for r in rows]
        tags, metrics = self._by_run("tags", ids), self._latest_metrics(ids)
        return [
            {
                "run_id": run_id,
                "experiment": experiment_name,
                "name": name,
                "start_time": start,
                "status": run_status,
                "tags": tags.get(run_id, {}),
                "metrics": metrics.get(run_id, {}),
            }
            for run_id, experiment_name, name, start, run_status in rows
        ]

    def _by_run(self, table: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for start in range(0, len(run_ids), 500):  # SQLite's bound-variable limit
            chunk = run_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for run_id, key, value in self._query(
                f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({marks})", chunk
            ):
                out.setdefault(run_id, {})[key] = value
        return out

    def tags(self, run_id: str) -> dict[str, str]:
        return self._by_run("tags", [run_id]).get(run_id, {})

    def params(self, run_id: str) -> dict[str, str]:
        return self._by_run("params", [run_id]).get(run_id, {})

    def metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric (MLflow's ``latest_metrics``: highest step,
        then latest timestamp), NaN where MLflow stored one."""
        return self._latest_metrics([run_id]).get(run_id, {})

    def _latest_metrics(self, run_ids: list[str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for start in range(0, len(run_ids), 500):  # SQLite's bound-variable limit
            chunk = run_ids[start : start + 500]
            rows = self._query(
                "SELECT run_uuid, key, value, is_nan FROM latest_metrics "
                f"WHERE run_uuid IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for run_id, key, value, is_nan in rows:
                out.setdefault(run_id, {})[key] = math.nan if is_nan else float(value)
        return out

    def artifact_uri(self, run_id: str) -> str | None:
        rows = self._query("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
        return str(rows[0][0]) if rows else None

    def children(self, run_id: str) -> dict[str, str]:
        """Active child runs of ``run_id``: run name -> run id."""
        rows = self._query(
            "SELECT r.run_uuid, n.value FROM tags p "
            "JOIN runs r ON r.run_uuid = p.run_uuid "
            "LEFT JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = ? "
            "WHERE p.key = ? AND p.value = ? AND r.lifecycle_stage = ? "
            "ORDER BY r.start_time DESC, r.run_uuid ASC",
            (RUN_NAME_TAG, PARENT_TAG, run_id, ACTIVE),
        )
        # in the client's order, a later (older) run taking a repeated name, as the
        # client's answer does
        return {(tagged or child): child for child, tagged in rows}
