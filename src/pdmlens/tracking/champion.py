"""Champion promotion: registering a model version and moving the alias ``champion``.

**The rule** (:func:`beats`): the new version takes the alias when it is strictly better
than the current champion on the metric it was registered with (the champion's score is that
metric of its source run; a tie keeps the champion). Scores are comparable only on the same
data (the ``pdmlens.dataset_hash`` tag of both source runs); a champion trained on other data
is replaced (``champion_on_new_data="replace"``, the newest data's model takes over) or kept
(``"keep"``). No champion, or one without the metric (or NaN): the new version takes the
alias; a NaN new score never does.

**Races.** Two runs finishing at once must not lose an update (both read champion v1, the
better one sets the alias first, the worse one overwrites it). Every version is registered
whatever happens; the read-compare-set of the alias is then guarded:

- SQLite store: under an exclusive ``flock`` on ``mlflow.db.champion.lock`` beside the
  database (:func:`~pdmlens.tracking.store.store_lock`), so promotions run one at a time;
  the kernel drops the lock of a killed process.
- Tracking server (no lock across machines): optimistic; after its own decision each
  process re-reads the registry (:func:`reconcile_champion`): the versions registered since
  the champion it compared against are replayed through the same rule in version order, and
  the alias is set again when it is not on the winner, until a read-back agrees. The last
  process to write the alias has seen every version whose process wrote before it, so the
  alias ends on the winner of the rule; a process that never wrote read an alias at least as
  good as its own model.

Undo (:func:`undo`) deletes a version registered by a run whose later registrations failed,
and puts the alias back on the previous champion only while the alias is still on the
deleted version (a racer's later promotion stays).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pdmlens.tracking.models import is_logged_model_uri, model_location
from pdmlens.tracking.store import store_lock

log = logging.getLogger(__name__)

CHAMPION = "champion"
TAG_DATASET_HASH = "pdmlens.dataset_hash"
TAG_METRIC = "pdmlens.metric"
TAG_METRIC_VALUE = "pdmlens.metric_value"
TAG_HIGHER_IS_BETTER = "pdmlens.higher_is_better"
TAG_REASON = "pdmlens.champion_reason"
RECONCILE_ROUNDS = 10

OnNewData = Literal["replace", "keep"]


@dataclass(frozen=True)
class Registration:
    """Outcome of registering one model version."""

    name: str
    version: str
    champion: bool
    reason: str
    previous_champion: str | None = None


def register_model(
    client: MlflowClient,
    uri: str,
    model_uri: str,
    name: str,
    run_id: str,
    metric_name: str,
    metric_value: float,
    higher_is_better: bool = False,
    on_new_data: OnNewData = "replace",
) -> Registration:
    """Register ``model_uri`` (logged by run ``run_id``) as a new version of ``name`` on the
    store ``uri`` and move the alias ``champion`` to it when :func:`beats` says so, guarded
    against racing promotions as the module docstring describes."""
    new_hash = client.get_run(run_id).data.tags.get(TAG_DATASET_HASH)
    model_id = model_uri[len("models:/") :] if is_logged_model_uri(model_uri) else None
    source = model_location(client, model_uri)
    with store_lock(uri, "champion") as locked:
        with contextlib.suppress(MlflowException):  # already exists
            client.create_registered_model(name)
        # the source is the artifact location itself: the SQL registry resolves a
        # models:/ source through MLflow's global tracking URI, not this client's
        mv = client.create_model_version(
            name,
            source=source,
            run_id=run_id,
            model_id=model_id,
            tags={
                TAG_METRIC: metric_name,
                TAG_METRIC_VALUE: repr(float(metric_value)),
                TAG_HIGHER_IS_BETTER: str(bool(higher_is_better)),
                TAG_DATASET_HASH: new_hash or "",
            },
        )
        champion = current_champion(client, name)
        prev = str(champion.version) if champion is not None else None
        better, reason = beats(
            client, champion, metric_name, float(metric_value), higher_is_better, new_hash,
            on_new_data,
        )  # fmt: skip
        if better:
            set_champion(client, name, str(mv.version))
        client.set_model_version_tag(name, mv.version, TAG_REASON, reason)
        if not locked:
            winner = reconcile_champion(client, name, since=prev, on_new_data=on_new_data)
            if better and winner != str(mv.version):
                better, reason = False, f"{reason}, then v{winner} registered at once won"
                client.set_model_version_tag(name, mv.version, TAG_REASON, reason)
    log.info(
        "registered %s v%s (%s): %s",
        name,
        mv.version,
        "champion" if better else "not champion",
        reason,
    )
    return Registration(name, str(mv.version), better, reason, prev)


def current_champion(client: MlflowClient, name: str) -> Any:
    """The model version holding the alias ``champion`` of ``name``, None when none does."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def beats(
    client: MlflowClient,
    champion: Any,
    metric_name: str,
    value: float,
    higher_is_better: bool,
    new_hash: str | None,
    on_new_data: OnNewData = "replace",
) -> tuple[bool, str]:
    """Whether a model scoring ``value`` on ``metric_name`` (trained on data ``new_hash``)
    takes the alias from ``champion`` (a model version or None), and why (a sentence)."""
    if math.isnan(value):
        return False, f"new {metric_name} is NaN"
    if champion is None:
        return True, "first model"
    if not champion.run_id:
        return True, "champion has no source run"
    run = client.get_run(champion.run_id)
    old_hash = run.data.tags.get(TAG_DATASET_HASH)
    if new_hash and old_hash and new_hash != old_hash:
        keep = on_new_data == "keep"
        return (not keep), ("champion trained on other data: " + ("kept" if keep else "replaced"))
    old = run.data.metrics.get(metric_name)
    if old is None or math.isnan(old):
        return True, f"champion v{champion.version} has no {metric_name}"
    better = value > old if higher_is_better else value < old
    verdict = "beats" if better else "does not beat"
    return better, f"{metric_name} {value:.6g} {verdict} v{champion.version}'s {old:.6g}"


def reconcile_champion(
    client: MlflowClient,
    name: str,
    since: str | None = None,
    on_new_data: OnNewData = "replace",
    rounds: int = RECONCILE_ROUNDS,
) -> str | None:
    """Put the alias on the winner among the current champion and every version of ``name``
    newer than version ``since`` (all when None), replaying :func:`beats` in version order;
    repeat until a read-back of the alias agrees (at most ``rounds`` times). Returns the
    champion's version. The guard of promotions on a store without a lock."""
    floor = int(since) if since is not None else 0
    winner: str | None = None
    for _ in range(rounds):
        alias = current_champion(client, name)
        candidates = sorted(
            (v for v in _versions(client, name) if int(v.version) > floor),
            key=lambda v: int(v.version),
        )
        best = alias
        for mv in candidates:
            if best is not None and mv.version == best.version:
                continue
            tags = mv.tags or {}
            if TAG_METRIC not in tags:
                continue
            better, _ = beats(
                client,
                best,
                tags[TAG_METRIC],
                float(tags.get(TAG_METRIC_VALUE, "nan")),
                tags.get(TAG_HIGHER_IS_BETTER) == "True",
                tags.get(TAG_DATASET_HASH) or None,
                on_new_data,
            )
            if better:
                best = mv
        winner = str(best.version) if best is not None else None
        if winner is None or (alias is not None and str(alias.version) == winner):
            return winner
        set_champion(client, name, winner)
    return winner


def set_champion(client: MlflowClient, name: str, version: str, tries: int = 3) -> None:
    """Point the alias ``champion`` of ``name`` at ``version``. Retried: two processes setting
    an alias that does not exist yet both try to insert its row, and the second one fails on
    the store's unique key (it succeeds as an update on the next try)."""
    for attempt in range(tries):
        try:
            client.set_registered_model_alias(name, CHAMPION, version)
            return
        except MlflowException:
            if attempt == tries - 1:
                raise


def _versions(client: MlflowClient, name: str) -> Iterable[Any]:
    token = None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def register_all(
    client: MlflowClient,
    uri: str,
    pending: Iterable[Mapping[str, Any]],
    on_new_data: OnNewData = "replace",
) -> list[Registration]:
    """:func:`register_model` for each queued item; when one fails, the ones already made
    are undone (:func:`undo`) and the error raised."""
    done: list[Registration] = []
    try:
        for item in pending:
            done.append(register_model(client, uri, **item, on_new_data=on_new_data))
    except BaseException:
        for reg in reversed(done):
            undo(client, uri, reg)
        raise
    return done


def undo(client: MlflowClient, uri: str, reg: Registration) -> None:
    """Delete the version of ``reg``; when it held the alias, give the alias back to the
    previous champion (under the same guard as a promotion)."""
    with store_lock(uri, "champion"), contextlib.suppress(MlflowException):
        holder = current_champion(client, reg.name)
        client.delete_model_version(reg.name, reg.version)
        if (
            reg.champion
            and reg.previous_champion is not None
            and holder is not None
            and str(holder.version) == reg.version
        ):
            set_champion(client, reg.name, reg.previous_champion)
