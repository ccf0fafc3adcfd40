"""Runs whose process was killed: who owns a run, and closing the orphans.

A run killed with SIGKILL (or by the OOM killer, or a power cut) cannot mark itself
finished, so MLflow shows it RUNNING forever. Every run pdmlens creates carries its owner
in tags (children inherit them from the parent):

- ``pdmlens.owner.host``: the host name,
- ``pdmlens.owner.pid``: the process id,
- ``pdmlens.owner.start``: the process's start time (clock ticks since boot, Linux
  ``/proc/<pid>/stat``), so a recycled pid is not mistaken for the owner,
- ``pdmlens.owner.boot``: the kernel's boot id, so a pid after a reboot is not either.

**The rule** (:func:`close_orphaned_runs`, run when pdmlens next starts a run): a RUNNING run
owned by a process *on this host* is marked KILLED, with the tag ``pdmlens.killed_reason``,
when that process no longer exists: the boot id differs, the pid is gone, or the pid now
belongs to a process with another start time. Runs owned by another host are left alone (their
owner cannot be checked from here; that host's next run closes them), and so are runs without
owner tags (made by something else than pdmlens) and runs of live processes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pdmlens.processes import pid_exists

log = logging.getLogger(__name__)

TAG_OWNER_HOST = "pdmlens.owner.host"
TAG_OWNER_PID = "pdmlens.owner.pid"
TAG_OWNER_START = "pdmlens.owner.start"
TAG_OWNER_BOOT = "pdmlens.owner.boot"
TAG_KILLED_REASON = "pdmlens.killed_reason"


def process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, as text), None when the
    process does not exist or the platform has no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of the whole line


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's boot id (changes on every reboot); empty where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """The owner tags of a run created by process ``pid`` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return {
        TAG_OWNER_HOST: socket.gethostname(),
        TAG_OWNER_PID: str(pid),
        TAG_OWNER_START: process_start(pid) or "",
        TAG_OWNER_BOOT: boot_id(),
    }


def owner_gone(tags: Mapping[str, str]) -> str | None:
    """Why the owner named in ``tags`` is known to be dead (a sentence), or None when it is
    alive, on another host, or not named at all."""
    host, pid_text = tags.get(TAG_OWNER_HOST), tags.get(TAG_OWNER_PID)
    if host != socket.gethostname() or not pid_text or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    boot = tags.get(TAG_OWNER_BOOT, "")
    if boot and boot_id() and boot != boot_id():
        return f"owner process {pid} on {host} ran before the host rebooted"
    start = tags.get(TAG_OWNER_START, "")
    now = process_start(pid)
    if now is None:
        if os.path.isdir("/proc"):
            return f"owner process {pid} on {host} no longer exists"
        return None if pid_exists(pid) else f"owner process {pid} on {host} no longer exists"
    if start and now != start:
        return f"owner process {pid} on {host} no longer exists (its pid was reused)"
    return None


def close_orphaned_runs(client: Any, experiment_ids: Iterable[str] | None = None) -> list[str]:
    """Mark KILLED every RUNNING run of ``experiment_ids`` (default: all active experiments)
    whose owner process on this host is gone (the rule in the module docstring); the tag
    ``pdmlens.killed_reason`` says why. Returns the ids of the runs closed."""
    from mlflow.entities import ViewType

    ids = (
        list(experiment_ids)
        if experiment_ids is not None
        else [e.experiment_id for e in _all_experiments(client)]
    )
    if not ids:
        return []
    host = socket.gethostname().replace("'", "")
    query = f"attributes.status = 'RUNNING' and tags.`{TAG_OWNER_HOST}` = '{host}'"
    closed: list[str] = []
    token = None
    while True:
        page = client.search_runs(
            ids, filter_string=query, run_view_type=ViewType.ALL, max_results=1000, page_token=token
        )
        for run in page:
            reason = owner_gone(run.data.tags)
            if reason is None:
                continue
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            client.set_tag(
                run.info.run_id,
                TAG_KILLED_REASON,
                f"{reason}; closed at {stamp} by pid {os.getpid()}",
            )
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
        token = page.token
        if not token:
            break
    if closed:
        log.warning("marked %d orphaned MLflow run(s) KILLED: %s", len(closed), closed)
    return closed


def _all_experiments(client: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out
