"""When a Prefect task of pdmlens is retried: on transient failures only.

A :class:`pdmlens.errors.PdmlensError` (bad input data, a bad configuration) fails the same
way every time, so it is never retried; anything else (a file system hiccup, a tracking
server restarting) is retried with exponential back-off. Shared by the training flow and
the scoring flow.
"""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from pdmlens.errors import PdmlensError


def retry_transient(task, task_run, state) -> bool:  # noqa: ANN001 (Prefect's callback shape)
    """Prefect's ``retry_condition_fn``: retry unless the failure is a PdmlensError."""
    try:
        state.result()
    except PdmlensError:
        return False
    except Exception:
        return True
    return False


def retry_options(retries: int = 2) -> dict[str, Any]:
    """``task(...)`` / ``with_options(...)`` keywords: ``retries`` tries on transient
    failures, 2 s back-off doubling."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(2),
        "retry_condition_fn": retry_transient,
    }
