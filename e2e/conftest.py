"""Browser tests of the Dagster web UI (``make e2e``; not part of ``make test``).

Fixtures: ``feedback-pipeline ui`` (what ``make ui`` runs: sandbox + ``dagster dev`` with
DAGSTER_HOME=.dagster_home holding the repo's dagster.yaml) started once for the session and
stopped with Ctrl-C (SIGINT) at the end, which must shut everything down; and headless Debian
Chromium through Selenium. Screenshots go to ``screenshots/`` (git-ignored); a failing test
leaves ``<test>-FAILED.png`` there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest e2e` without `python -m` does not put the repo on sys.path
    sys.path.insert(0, str(ROOT))

from feedback_pipeline.sandbox.server import free_port  # noqa: E402
from feedback_pipeline_tests.test_webserver import Webserver, _wait_until_ready  # noqa: E402

UTC = timezone.utc

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "screenshots"
E2E_DAYS = 30  # sandbox days = daily partitions (FEEDBACK_START_DATE is 29 days ago)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the real Dagster web UI in headless Chromium (make e2e)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass
class Ui:
    """``feedback-pipeline ui`` (what ``make ui`` runs) in a scratch working directory."""

    cli: subprocess.Popen
    cwd: Path
    sandbox_url: str
    webserver: Webserver
    dagster_dev_pgid: int


def _stop_ui(ui: Ui) -> None:
    """Ctrl-C as a terminal delivers it: SIGINT to the foreground group, which holds the CLI (and
    make) but not ``dagster dev`` (its own session); the CLI must shut everything down."""
    os.kill(ui.cli.pid, signal.SIGINT)
    code: int | None = None
    try:
        code = ui.cli.wait(timeout=90)
        left_behind = not _group_gone(ui.dagster_dev_pgid)
    finally:
        for pgid in (ui.dagster_dev_pgid, ui.cli.pid):  # never leave anything behind, pass or fail
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    output = ui.webserver.log_tail(2000)
    assert code == 0, output
    assert "Dagster services shut down." in output, output  # dagster dev's own clean shutdown
    assert "Stopped the Dagster UI and the sandbox." in output, output
    assert not left_behind, "dagster dev processes survived the CLI"
    for url in (ui.sandbox_url, ui.webserver.url):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return False
    except ProcessLookupError:
        return True


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """The UI exactly as ``make ui`` starts it (sandbox + dagster dev, DAGSTER_HOME=.dagster_home
    with the repo's dagster.yaml), on free ports, in a scratch directory holding copies of
    dagster.yaml and workspace.yaml so that .dagster_home/ and data/ do not touch the checkout."""
    cwd = tmp_path_factory.mktemp("ui")
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copyfile(ROOT / name, cwd / name)
    port, sandbox_port = free_port(), free_port()
    cli = Path(sys.executable).with_name("feedback-pipeline")
    command = [str(cli), "ui", "--port", str(port), "--sandbox-port", str(sandbox_port), "--days", str(E2E_DAYS), "--per-day", "10", "--no-rate-limit"]
    log_path = cwd / "ui.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    first = datetime.now(UTC).date() - timedelta(days=E2E_DAYS - 1)
    server = Webserver(f"http://127.0.0.1:{port}", process, log_path, cwd / "data" / "feedback.duckdb", cwd / ".dagster_home", first)
    pgid = -1
    try:
        _wait_until_ready(server)
        children = [p for p in psutil.Process(process.pid).children() if "dagster" in " ".join(p.cmdline())]
        assert len(children) == 1, children
        pgid = os.getpgid(children[0].pid)
        assert pgid != os.getpgid(process.pid)
        handle = Ui(process, cwd, f"http://127.0.0.1:{sandbox_port}", server, pgid)
    except BaseException:
        for group in (pgid, process.pid):
            if group > 0:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        server.client.close()
        raise
    try:
        yield handle
    finally:
        server.client.close()
        _stop_ui(handle)


@pytest.fixture(scope="session")
def webserver(ui: Ui) -> Webserver:
    return ui.webserver


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def browser(request: pytest.FixtureRequest, screenshots: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver (make e2e does)")
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages for driver.get_log("browser")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1600, 1000)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            driver.save_screenshot(str(screenshots / f"{request.node.name}-FAILED.png"))
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
