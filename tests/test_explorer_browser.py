"""The explorer in a real browser: headless Debian Chromium driven by Playwright through
every view, on a tiny run made by this module (``pdmlens run``, once), served by the real
``pdmlens explore`` command in a subprocess. Screenshots go to ``test-artifacts/explorer/``.

Under CI (``CI=true``) a missing Chromium or Playwright fails these tests; elsewhere it
skips them. ``pdmlens explore`` must leave no process behind on SIGTERM, including a run
started from its Launch view.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tiny import TINY_RUN as TINY

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "explorer"
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_S = 900


def _need_browser() -> None:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        msg = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)


def _env(root: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("PREFECT_HOME", str(root / "prefect"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    return env


def _sets(root: Path) -> list[str]:
    return [
        *TINY,
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"pipeline.work_dir={root / 'runs'}",
        f"pipeline.cache_dir={root / 'cache'}",
    ]


def _pdmlens() -> list[str]:
    exe = Path(sys.executable).parent / "pdmlens"
    return (
        [str(exe)]
        if exe.is_file()
        else [sys.executable, "-c", "from pdmlens.cli import app; app()"]
    )


def start_explorer(root: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``pdmlens explore --port 0`` over the module's store; returns it and its URL."""
    sets = [a for s in [*_sets(root), *extra] for a in ("--set", s)]
    log = open(root / f"explore-{time.time_ns()}.log", "w+")  # noqa: SIM115 (kept open)
    proc = subprocess.Popen(
        [*_pdmlens(), "explore", "--port", "0", *sets],
        cwd=root,
        env=_env(root),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        log.seek(0)
        m = re.search(r"explorer on (http://127\.0\.0\.1:\d+/)", log.read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"pdmlens explore exited: {log.read()[-3000:]}")
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("pdmlens explore did not start within 180 s")


def stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_browser()
    reuse = os.environ.get("PDMLENS_TEST_EXPLORER_DIR")  # a development aid: keep the run
    if reuse:
        Path(reuse).mkdir(parents=True, exist_ok=True)
        return Path(reuse)
    return tmp_path_factory.mktemp("explorer")


@pytest.fixture(scope="module")
def tiny_run(root: Path) -> dict:
    """One tiny run trained on fault modes 0 and 1 (mode 2 stays unseen)."""
    saved = root / "tiny_run.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    sets = [*_sets(root), "data.simulator.fault_mode_subset=[0, 1]"]
    args = [a for s in sets for a in ("--set", s)]

    def cli(*command: str) -> dict:
        res = subprocess.run(
            [*_pdmlens(), *command, "--json", *args],
            cwd=root,
            env=_env(root),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout)

    doc = cli("run")
    # the source's current data scored with this run's models (the Fleet view shows it)
    doc["scoring"] = cli("score", "--run", doc["mlflow_run_id"])
    saved.write_text(json.dumps(doc))
    return doc


@pytest.fixture(scope="module")
def explorer(root: Path, tiny_run: dict) -> Iterator[str]:
    proc, url = start_explorer(root, "model.lstm.epochs=1")
    yield url
    assert stop(proc) == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
        yield b
        b.close()


class Page:
    """A page with its console errors collected."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)


@pytest.fixture(scope="module")
def page(browser: Any, explorer: str) -> Iterator[Page]:
    p = Page(browser)
    p.page.set_default_timeout(180_000)
    p.page.goto(explorer)
    p.page.wait_for_selector("#fleet-table td")
    yield p
    p.page.close()


def test_fleet_lists_every_machine_and_opens_one(page: Page, tiny_run: dict) -> None:
    pg = page.page
    pg.click("#tab-fleet")
    # the top sensors and novelty are filled in once computed
    pg.wait_for_function("document.querySelector('#fleet-table').innerText.includes('sensor_')")
    machines = pg.locator("#fleet-table td[data-dash-column=machine]").all_inner_texts()
    assert len(machines) == tiny_run["data"]["test_units"] == 6
    assert all(m.startswith("test_") for m in machines)
    assert "6 machines." in page.text("#fleet-summary")
    header = page.text("#fleet-table")
    for col in ("lstm rul", "forest rul", "disagreement", "alert", "top sensors", "novel"):
        assert col in header
    # sortable: sort by machine name and the first row changes to test_001
    pg.locator("#fleet-table th[data-dash-column=machine] .column-header--sort").click()
    pg.wait_for_function(
        "document.querySelector('#fleet-table td[data-dash-column=machine]')"
        ".innerText.trim() === 'test_001'"
    )
    page.shot("fleet")
    # scored data: the scoring run made with this run's models, chosen by default
    scoring = tiny_run["scoring"]
    pg.wait_for_selector("#scored-table td[data-dash-column=machine]")
    assert "this run's models" in page.text("#scored-select")
    assert f"{scoring['counts']['units_scored']} machines scored." in page.text("#scored-summary")
    scored = pg.locator("#scored-table td[data-dash-column=machine]").all_inner_texts()
    assert scored == [u["unit"] for u in scoring["units"]]  # the scorer's order
    for col in ("lstm rul", "forest rul", "alert", "why", "novelty", "top sensors"):
        assert col in page.text("#scored-table")
    first = scoring["units"][0]
    pg.locator("#scored-table td[data-dash-column=machine]", has_text=first["unit"]).click()
    pg.wait_for_selector("#scored-story")
    story = page.text("#scored-story")
    assert story.startswith(f"{first['unit']} at its latest cycle {int(first['time'])}")
    assert f"Alert {first['alert']}" in story and "Novelty of its latest window" in story
    page.shot("fleet_scored")
    pg.locator("#fleet-table td[data-dash-column=machine]", has_text="test_003").click()
    pg.wait_for_selector("#view-machine[style*='block']")
    pg.wait_for_function(
        "document.querySelector('#machine-summary').innerText.startsWith('test_003 at')"
    )
    assert page.errors == []


def test_machine_slider_moves_the_explained_window(page: Page) -> None:
    pg = page.page
    pg.click("#tab-machine")
    thumb = pg.locator("#cycle-slider [role=slider]")
    # settled: the explained window is the one the slider shows
    pg.wait_for_function(
        "(() => { const t = document.querySelector('#cycle-slider [role=slider]');"
        " const now = t.getAttribute('aria-valuenow');"
        " const unit = document.querySelector('#machine-summary').innerText.split(' ')[0];"
        " return now === t.getAttribute('aria-valuemax')"
        " && document.querySelector('#window-summary').innerText"
        "    .includes('Window ending at cycle ' + now + ':')"
        " && document.querySelector('#machine-shap').innerText"
        "    .includes(unit + ', window ending at cycle ' + now); })()"
    )
    end = int(thumb.get_attribute("aria-valuenow"))
    thumb.focus()
    for _ in range(3):
        pg.keyboard.press("ArrowLeft")
    pg.wait_for_function(
        f"document.querySelector('#window-summary').innerText.includes("
        f"'Window ending at cycle {end - 3}:')"
    )
    pg.wait_for_function(
        f"document.querySelector('#machine-shap').innerText.includes('ending at cycle {end - 3}')"
    )
    pg.wait_for_function(
        f"document.querySelector('#machine-gates').innerText.includes('cycle {end - 3}')"
    )
    assert "RUL (cycles)" in page.text("#machine-rul")
    pg.click("#gate-view input[value=diff]")
    pg.wait_for_function(
        "document.querySelector('#machine-gates').innerText.includes('healthy minus failing')"
    )
    pg.wait_for_function(
        "document.querySelector('#machine-novelty').innerText.includes('threshold')"
    )
    page.shot("machine")
    assert page.errors == []


def test_signatures_recompute_with_a_new_k(page: Page) -> None:
    pg = page.page
    pg.click("#tab-signatures")
    pg.wait_for_function("document.querySelector('#sig-timing').innerText.includes('k=4')")
    before = page.text("#sig-table")
    verdict = page.text("#sig-verdict")
    assert "layer" in verdict and ("first layer" in verdict or "No layer" in verdict)
    pg.fill("#sig-k", "7")
    pg.wait_for_function("document.querySelector('#sig-timing').innerText.includes('k=7')")
    after = page.text("#sig-table")
    assert after != before
    ks = pg.locator("#sig-table td[data-dash-column=k]").all_inner_texts()
    assert [k.strip() for k in ks] == ["7", "7", "7"]
    page.shot("signatures")
    pg.fill("#sig-bins", "0, 30")
    pg.press("#sig-bins", "Enter")
    pg.wait_for_selector("#sig-verdict .error")
    assert "at least three edges" in page.text("#sig-verdict")
    pg.fill("#sig-bins", "0, 30, 75, 125")
    pg.press("#sig-bins", "Enter")
    pg.wait_for_function("!document.querySelector('#sig-verdict .error')")
    assert page.errors == []


def test_a_new_fault_shows_rates_per_layer(page: Page) -> None:
    pg = page.page
    pg.click("#tab-newfault")
    pg.wait_for_selector("#nf-verdict")
    assert "unseen fault mode 2" in page.text("#nf-modes")
    table = page.text("#nf-table")
    for name in ("input", "LSTM layer 1", "LSTM layer 2", "detection rate", "false alarm rate"):
        assert name in table
    assert re.search(r"\d+% of new windows flagged, \d+% false alarms", page.text("#nf-verdict"))
    assert "units firing only on the new fault" in page.text("#nf-graphs")
    page.shot("new_fault")
    assert page.errors == []


def test_launch_refuses_a_bad_value_then_runs_and_lists_the_run(page: Page) -> None:
    pg = page.page
    pg.click("#tab-launch")
    pg.fill("#launch-epochs", "0")
    pg.click("#launch-button")
    pg.wait_for_selector("#launch-message .error")
    assert "model.lstm.epochs: Input should be greater than or equal to 1" in page.text(
        "#launch-message"
    )
    assert "Traceback" not in pg.content()
    page.shot("launch_refused")
    n_runs = len(_run_options(pg))
    pg.fill("#launch-epochs", "1")
    pg.click("#launch-button")
    pg.wait_for_selector("#job-1")
    pg.wait_for_function(
        "!document.querySelector('#job-1').innerText.includes('running')",
        timeout=LAUNCH_TIMEOUT_S * 1000,
    )
    status = page.text("#job-1")
    assert "finished" in status and "now in the run list" in status, status
    run_id = re.search(r"MLflow run ([0-9a-f]{32})", status).group(1)
    deadline = time.monotonic() + 30  # the list refreshes right after the job's status
    options = _run_options(pg)
    while len(options) < n_runs + 1 and time.monotonic() < deadline:
        time.sleep(1)
        options = _run_options(pg)
    assert len(options) == n_runs + 1
    assert any(run_id in o for o in options) or n_runs + 1 == len(options)
    page.shot("launch_finished")
    assert page.errors == []


def _run_options(pg: Any) -> list[str]:
    pg.click("#run-select")
    pg.wait_for_selector("[role=option]")
    options = pg.locator("[role=option]").all_inner_texts()
    pg.keyboard.press("Escape")
    return options


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def test_sigterm_stops_the_explorer_and_its_launched_run(
    root: Path, tiny_run: dict, browser: Any
) -> None:
    import psutil

    proc, url = start_explorer(root, "model.lstm.epochs=50")
    try:
        pg = browser.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(url)
        pg.click("#tab-launch")
        pg.click("#launch-button")
        pg.wait_for_selector("#job-1")
        pg.close()
        deadline = time.monotonic() + 60
        children: list[int] = []
        while time.monotonic() < deadline and not children:
            children = _descendants(proc.pid)
            time.sleep(0.5)
        assert children, "the launched run did not start"
        assert stop(proc) == 0
        gone_by = time.monotonic() + 30
        alive = children
        while time.monotonic() < gone_by:
            alive = [
                c
                for c in children
                if psutil.pid_exists(c) and psutil.Process(c).status() != psutil.STATUS_ZOMBIE
            ]
            if not alive:
                break
            time.sleep(0.5)
        assert alive == [], f"left running: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_report_links_and_zoom_work_inside_a_sandboxed_frame(browser: Any, tiny_run: dict) -> None:
    """The report as MLflow shows an HTML artifact: a blob: URL in an iframe sandboxed with
    ``allow-scripts`` only. It opens on the machines at risk, named in words and in the
    order of the run's table; each contents link scrolls (no navigation to ``blob:...#id``)
    and a click on a figure enlarges it to full size, Escape or a click closes it."""
    import pandas as pd

    report = Path(tiny_run["report"]).read_text(encoding="utf-8")
    p = Page(browser)
    pg = p.page
    # the host page needs an origin of its own (as MLflow's UI has) for its blob: URL to
    # load in the frame; it is served from memory, nothing goes to the network
    host = '<iframe id="f" sandbox="allow-scripts" style="width:1200px;height:700px"></iframe>'
    pg.route(
        "http://mlflow.test/**",
        lambda route: route.fulfill(body=host, content_type="text/html", status=200),
    )
    pg.goto("http://mlflow.test/")
    pg.evaluate(
        "html => { const u = URL.createObjectURL(new Blob([html], {type: 'text/html'}));"
        " document.getElementById('f').src = u; }",
        report,
    )
    pg.wait_for_function("document.getElementById('f').src.startsWith('blob:')")
    deadline = time.monotonic() + 30
    frame = None
    while frame is None and time.monotonic() < deadline:
        frame = next((f for f in pg.frames if f.url.startswith("blob:")), None)
        pg.wait_for_timeout(100)  # not time.sleep: Playwright sees the frame while it waits
    assert frame is not None
    frame.wait_for_selector("nav a[data-target]")
    links = frame.locator("nav a[data-target]")
    assert links.count() >= 3
    titles = [links.nth(i).inner_text() for i in range(links.count())]
    assert titles[:2] == ["Machines at risk", "Biggest late predictions"]
    # the machines are named in the page's words, not only in images
    first = frame.locator("section").first
    risk = pd.read_csv(Path(tiny_run["work_dir"]) / "at_risk" / "machines_at_risk.csv")
    assert risk["machine"].iloc[0] in first.locator("li").first.inner_text()
    rows = first.locator("table.data tbody tr")
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == list(
        risk["machine"]
    )
    url_before = frame.url
    # every contents link scrolls its section to the top of the frame, none navigates
    for i in (titles.index("Inside the LSTM: gates"), 2, 0):
        target = links.nth(i).get_attribute("data-target")
        links.nth(i).click()
        frame.wait_for_function(
            f"Math.abs(document.getElementById('{target}').getBoundingClientRect().top) < 40"
        )
        assert frame.url == url_before  # scrolled, not navigated
    # a gate figure enlarges to its full size (wider than it is shown) and closes again
    gates = frame.locator("section", has_text="Inside the LSTM: gates").locator("figure img")
    assert gates.count() >= 4  # near failure and healthy, per layer
    img = gates.first
    img.scroll_into_view_if_needed()
    natural, shown = img.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
    assert natural <= 900  # drawn for the report's column: little or no shrinking
    img.click()
    frame.wait_for_selector("#zoom.on img[src^='data:image/png']")
    big = frame.locator("#zoom.on img")
    assert big.evaluate("i => i.getBoundingClientRect().width") == pytest.approx(natural, abs=1)
    assert big.evaluate("i => i.getBoundingClientRect().width") >= shown - 1
    pg.keyboard.press("Escape")
    frame.wait_for_selector("#zoom:not(.on)", state="attached")
    frame.locator("figure img").first.click()  # a click on the overlay closes it too
    frame.wait_for_selector("#zoom.on")
    frame.locator("#zoom").click()
    frame.wait_for_selector("#zoom:not(.on)", state="attached")
    p.shot("report_in_frame")
    assert p.errors == []
    pg.close()
