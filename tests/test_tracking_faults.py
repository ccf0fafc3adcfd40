"""The tracking layer under faults: a dead tracking store, killed runs, two processes
creating one store at once, and two runs racing for the champion alias; plus the rule that
only :mod:`pdmlens.tracking` imports mlflow.

Races run in real processes (``spawn``: nothing inherited from this one) released together
by a barrier; nothing here sleeps to win or lose a race.
"""

from __future__ import annotations

import ast
import http.server
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from pdmlens.config import TrackingConfig
from pdmlens.errors import PdmlensError, TrackingUnavailableError
from pdmlens.tracking import (
    Tracker,
    check_tracking_reachable,
    mlflow_ui_command,
    registered_model_name,
)
from pdmlens.tracking.champion import (
    CHAMPION,
    current_champion,
    reconcile_champion,
    set_champion,
)
from pdmlens.tracking.orphans import (
    TAG_KILLED_REASON,
    TAG_OWNER_PID,
    TAG_OWNER_START,
    owner_gone,
    owner_tags,
)
from pdmlens.tracking.store import HTTP_RETRY_ENV, lock_path, sqlite_path
from tests.servers import free_port
from tests.test_tracking import _copy_empty_store

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds a worker process may take (importing mlflow on a busy machine)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Tracker:
    db = tmp_path_factory.mktemp("faults") / "store" / "mlflow.db"
    _copy_empty_store(pytestconfig, db)
    return Tracker(TrackingConfig(uri=f"sqlite:///{db}"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return env


# ----------------------------------------------------------------------------- preflight


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


def _serve(status: int) -> http.server.HTTPServer:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_preflight_names_a_dead_server_and_what_to_do():
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TrackingUnavailableError) as err:
        check_tracking_reachable(uri, timeout=2)
    message = str(err.value)
    assert uri in message and "/health" in message and "tracking.uri" in message
    assert isinstance(err.value, PdmlensError)


def test_preflight_times_out_on_a_server_that_never_answers():
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TrackingUnavailableError, match="within 0.5 s"):
            check_tracking_reachable(uri, timeout=0.5)


def test_preflight_passes_a_healthy_server_and_rejects_an_unhealthy_one():
    ok, sick = _serve(200), _serve(503)
    try:
        check_tracking_reachable(f"http://127.0.0.1:{ok.server_port}/", timeout=5)
        with pytest.raises(TrackingUnavailableError, match="HTTP 503"):
            check_tracking_reachable(f"http://127.0.0.1:{sick.server_port}", timeout=5)
    finally:
        ok.shutdown()
        sick.shutdown()


def test_preflight_of_sqlite_checks_the_folder_is_writable(tmp_path):
    check_tracking_reachable(f"sqlite:///{tmp_path}/new/mlflow.db")
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/mlflow.db"  # its "folder" is a file
    with pytest.raises(TrackingUnavailableError, match="not writable") as err:
        check_tracking_reachable(uri)
    assert uri in str(err.value)


def test_preflight_of_a_database_server_opens_a_connection():
    uri = f"postgresql://user:secret@127.0.0.1:{free_port()}/mlflow"
    with pytest.raises(TrackingUnavailableError) as err:
        check_tracking_reachable(uri, timeout=2)
    assert "secret" not in str(err.value) and "user:***@127.0.0.1" in str(err.value)


def test_pdmlens_run_against_a_dead_server_stops_in_one_line_before_any_work(tmp_path):
    """The command checks the store before Prefect starts its server and before ingest:
    exit 1, one line naming the URI, no traceback, nothing written (no cache or work
    folder, no local store: nothing that could be marked finished)."""
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    here = tmp_path / "here"
    here.mkdir()
    sets = [f"tracking.uri={uri}", f"pipeline.cache_dir={here / 'cache'}"]
    sets.append(f"pipeline.work_dir={here / 'runs'}")
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "pdmlens"),
            "run",
            *(a for s in sets for a in ("--set", s)),
        ],
        cwd=here,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # no Prefect server started, no traceback
    assert lines[0].startswith(f"error: MLflow tracking store {uri} is not usable")
    assert "Nothing was run" in lines[0] and out.stdout == ""
    assert list(here.iterdir()) == []


def test_importing_the_tracking_layer_bounds_mlflow_http_retries():
    code = (
        "import os, pdmlens.tracking, mlflow.environment_variables as ev;"
        "print(ev.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), ev.MLFLOW_HTTP_REQUEST_TIMEOUT.get(),"
        " os.environ['MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR'])"
    )
    env = {k: v for k, v in _env().items() if not k.startswith("MLFLOW_HTTP_")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.returncode == 0, out.stderr
    expected = [HTTP_RETRY_ENV[f"MLFLOW_HTTP_REQUEST_{k}"] for k in ("MAX_RETRIES", "TIMEOUT")]
    assert out.stdout.split() == [*expected, HTTP_RETRY_ENV["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]]
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "9"  # the user's own choice is kept
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.stdout.split()[0] == "9"


@pytest.mark.slow
@pytest.mark.integration
def test_a_server_gone_mid_run_fails_the_call_after_bounded_retries():
    """MLflow's own client against a dead server: an error after four quick retries (about
    15 s of backoff), not seven (about four minutes); the subprocess limit bounds it."""
    code = (
        "import sys\n"
        "from pdmlens.config import TrackingConfig\n"
        "from pdmlens.tracking import Tracker\n"
        "t = Tracker(TrackingConfig(uri=sys.argv[1]))\n"
        "try:\n"
        "    t.ensure_experiment('x')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, 'max retries' in str(exc).lower())\n"
    )
    env = {k: v for k, v in _env().items() if not k.startswith("MLFLOW_HTTP_")}
    uri = f"http://127.0.0.1:{free_port()}"
    out = subprocess.run(
        [sys.executable, "-c", code, uri],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,  # mlflow's default retries take ~256 s; the bound: ~15 s plus imports
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["MlflowException", "True"], out.stdout + out.stderr


# ----------------------------------------------------------------------------- killed runs

_OWNER = """
import sys, time
from pdmlens.config import TrackingConfig
from pdmlens.tracking import Tracker
t = Tracker(TrackingConfig(uri=sys.argv[1]))
parent = t.start_parent("orphans", "killed-run")
kids = [t.start_child(parent, name) for name in ("lstm", "random_forest")]
print(parent, *kids, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_runs_of_a_killed_process_are_marked_killed_and_live_ones_left(tracker, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_OWNER), tracker.uri],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        ids = proc.stdout.readline().split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    assert len(ids) == 3
    mine = tracker.start_parent("orphans", "live-run")
    mine_child = tracker.start_child(mine, "lstm")
    status = {r: tracker.client.get_run(r).info.status for r in [*ids, mine, mine_child]}
    assert set(status.values()) == {"RUNNING"}

    closed = tracker.close_orphaned_runs("orphans")
    assert sorted(closed) == sorted(ids)
    for run_id in ids:
        run = tracker.client.get_run(run_id)
        assert run.info.status == "KILLED" and run.info.end_time is not None
        assert f"owner process {proc.pid} " in run.data.tags[TAG_KILLED_REASON]
    assert {tracker.client.get_run(r).info.status for r in (mine, mine_child)} == {"RUNNING"}
    assert tracker.close_orphaned_runs("orphans") == []  # nothing left to close
    tracker.finish(mine_child)
    tracker.finish(mine)


def test_owner_rule_on_a_recycled_pid_another_host_and_no_tags():
    me = owner_tags()
    assert owner_gone(me) is None
    recycled = {**me, TAG_OWNER_START: str(int(me[TAG_OWNER_START]) + 1)}
    assert "reused" in (owner_gone(recycled) or "")
    assert owner_gone({**me, "pdmlens.owner.host": "elsewhere"}) is None
    assert owner_gone({}) is None
    assert owner_gone({**me, "pdmlens.owner.boot": "another-boot"}) is not None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=TIMEOUT)
    assert "no longer exists" in (owner_gone({**me, TAG_OWNER_PID: str(dead.pid)}) or "")


def test_tracked_run_closes_orphans_before_it_starts(tracker):
    parent = tracker.start_parent("orphans-2", "pretend-killed")
    tracker.set_tags(parent, {TAG_OWNER_START: "0"})  # as if its pid had been recycled
    with tracker.tracked_run("orphans-2", "next") as run:
        assert tracker.client.get_run(parent).info.status == "KILLED"
    assert tracker.client.get_run(run.run_id).info.status == "FINISHED"


# ----------------------------------------------------------------------------- store race


def _open_store(uri: str, barrier, results) -> None:
    try:
        from pdmlens.config import TrackingConfig
        from pdmlens.tracking import Tracker

        barrier.wait(timeout=TIMEOUT)
        t = Tracker(TrackingConfig(uri=uri))
        run = t.start_parent(f"race-{os.getpid()}", "run")
        t.finish(run)
        results.put(("ok", os.getpid()))
    except BaseException as exc:  # reported to the test, whatever it is
        results.put(("error", repr(exc)))


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_creating_one_fresh_store_both_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(uri, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=TIMEOUT) for _ in procs]
    for p in procs:
        p.join(timeout=TIMEOUT)
    assert [g[0] for g in got] == ["ok", "ok"], got
    db = sqlite_path(uri)
    assert db is not None and lock_path(uri, "init") == Path(db + ".init.lock")


# ----------------------------------------------------------------------------- champion race

ROUNDS = 12


def _racer(uri: str, me: int, barrier, results, guard: str) -> None:
    """Per round: log a run with this racer's score, wait for the other, register.
    ``guard="recheck"``: as against a tracking server, no lock (the read-back re-check)."""
    try:
        import contextlib

        from pdmlens.config import TrackingConfig
        from pdmlens.tracking import Tracker, champion

        if guard == "recheck":
            champion.store_lock = lambda uri, purpose: contextlib.nullcontext(False)  # type: ignore[assignment]

        t = Tracker(TrackingConfig(uri=uri))
        for i in range(ROUNDS):
            score = _score(i, me)
            run = t.start_parent("champion-race", f"round-{i}", dataset_hash="same-data")
            t.log_metrics(run, {"rmse": score})
            barrier.wait(timeout=TIMEOUT)
            reg = t.register_model(
                f"file:///models/{i}/{me}", f"race-{i}-{guard}", run, "rmse", score
            )
            t.finish(run)
            results.put(("ok", i, me, reg.version, reg.champion))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def _score(i: int, me: int) -> float:
    """Who wins alternates between rounds; every third round a prior champion (rmse 5)
    beats both racers."""
    return 10.0 + (me if i % 2 else 1 - me)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("guard", ["lock", "recheck"])
def test_two_runs_racing_for_the_champion_end_on_the_better_model(tracker, guard):
    for i in range(0, ROUNDS, 3):  # a prior champion better than both racers
        run = tracker.start_parent("champion-race", "prior", dataset_hash="same-data")
        tracker.log_metrics(run, {"rmse": 5.0})
        assert tracker.register_model(
            "file:///models/prior", f"race-{i}-{guard}", run, "rmse", 5.0
        ).champion
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(tracker.uri, me, barrier, results, guard)) for me in (0, 1)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=TIMEOUT) for _ in range(2 * ROUNDS)]
    for p in procs:
        p.join(timeout=TIMEOUT)
    assert all(g[0] == "ok" for g in got), [g for g in got if g[0] != "ok"]
    for i in range(ROUNDS):
        name = f"race-{i}-{guard}"
        versions = tracker.client.search_model_versions(f"name = '{name}'")
        prior = 1 if i % 3 == 0 else 0
        assert len(versions) == 2 + prior  # every run's model registered
        champ = current_champion(tracker.client, name)
        source_score = float(champ.tags["pdmlens.metric_value"])
        assert source_score == (5.0 if prior else 10.0), (name, champ.version)
        if prior:  # neither racer ever held the alias
            assert not any(g[4] for g in got if g[1] == i)


def test_setting_a_new_alias_at_once_from_two_writers_succeeds(tracker):
    """Both writers find no alias row and insert one; the store's unique key rejects the
    second insert, which :func:`set_champion` retries as an update."""
    errors: list[str] = []
    for i in range(20):
        name = f"alias-race-{i}"
        tracker.client.create_registered_model(name)
        for v in range(2):
            tracker.client.create_model_version(name, source=f"file:///models/{v}")
        barrier = threading.Barrier(2)

        def write(version: str, name: str = name, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=TIMEOUT)
            try:
                set_champion(tracker.client, name, version)
            except Exception as exc:  # collected: the assertion below names it
                errors.append(repr(exc))

        threads = [threading.Thread(target=write, args=(v,)) for v in ("1", "2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT)
        assert str(current_champion(tracker.client, name).version) in ("1", "2")
    assert errors == []


def test_reconcile_moves_a_stale_alias_to_the_winner(tracker):
    """What guards a tracking server (no lock): a racer that compared against v1 and wrote
    its worse model's alias last is corrected by the re-check."""
    name = registered_model_name("lstm", "reconcile")
    scores = (10.0, 8.0, 9.0)  # v2 is the best; v3 compared against v1 and wrote last
    for score in scores:
        run = tracker.start_parent("champion-race", "r", dataset_hash="same-data")
        tracker.log_metrics(run, {"rmse": score})
        tracker.register_model("file:///models/r", name, run, "rmse", score)
    tracker.client.set_registered_model_alias(name, CHAMPION, "3")  # the lost update
    assert reconcile_champion(tracker.client, name, since="1") == "2"
    assert str(current_champion(tracker.client, name).version) == "2"
    assert reconcile_champion(tracker.client, name, since=None) == "2"  # stable


def test_failed_run_registers_no_model_and_ends_failed(tracker):
    name = registered_model_name("forest", "failed-run")
    with pytest.raises(ValueError, match="mid-run"), tracker.tracked_run("fail", "f") as run:
        child = run.child("random_forest")
        tracker.log_metrics(child, {"rmse": 1.0})
        run.register_later("file:///models/f", name, child, "rmse", 1.0)
        raise ValueError("mid-run")
    assert tracker.client.search_model_versions(f"name = '{name}'") == []
    statuses = {tracker.client.get_run(r).info.status for r in (run.run_id, child)}
    assert statuses == {"FAILED"}


# ----------------------------------------------------------------------------- layering


def test_only_the_tracking_package_imports_mlflow():
    offenders = []
    for folder in ("src", "pipelines"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("src/pdmlens/tracking/"):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [
                    f"{rel}:{node.lineno} {n}" for n in names if n.split(".")[0] == "mlflow"
                ]
    assert offenders == []


def test_ui_command_serves_the_resolved_store(tmp_path):
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path}/m.db")
    cmd, uri, address = mlflow_ui_command(cfg, port=5123)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == uri == f"sqlite:///{tmp_path}/m.db"
    assert cmd[cmd.index("--default-artifact-root") + 1] == (tmp_path / "artifacts").as_uri()
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and address == "http://127.0.0.1:5123"
