"""Browser tests of the Dagster web UI (``make e2e``; not part of ``make test``).

Fixtures: ``feedback-pipeline ui`` (what ``make ui`` runs: sandbox + Dagster code server,
webserver and daemon with DAGSTER_HOME=.dagster_home holding the repo's dagster.yaml) started once for the session and
stopped with Ctrl-C (SIGINT) at the end, which must shut everything down; and headless Debian
Chromium through Selenium. Screenshots go to ``screenshots/`` (git-ignored); a failing test
leaves ``<test>-FAILED.png`` there.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator

from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest e2e` without `python -m` does not put the repo on sys.path
    sys.path.insert(0, str(ROOT))

from feedback_pipeline_tests.test_webserver import Ui, Webserver, make_ui, stop_ui  # noqa: E402


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


def _stop_ui(ui: Ui) -> None:
    """Ctrl-C as a terminal delivers it; the CLI must shut everything down cleanly."""
    stop = stop_ui(ui)
    output = stop.log[-2000:]
    assert stop.exit_code == 0, output
    assert "Dagster services exited: code server 0, webserver 0, daemon 0" in output, output
    assert "Stopped the Dagster UI and the sandbox." in output, output
    assert not stop.left_behind, "Dagster processes survived the CLI"
    for url in (ui.sandbox_url, ui.webserver.url):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    """The UI exactly as ``make ui`` starts it (see ``make_ui``), stopped with Ctrl-C at the end."""
    with make_ui(tmp_path_factory.mktemp("ui"), days=E2E_DAYS, per_day=10) as handle:
        try:
            yield handle
        finally:
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
