"""The dashboard file in headless Chromium: it opens offline from disk with no console error and
no request, fits laptop and phone widths, and leaves screenshots (``screenshots/dashboard-*.png``;
``docs/dashboard.png`` in the README is a copy of the laptop one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback_pipeline.dashboard import build_dashboard
from feedback_pipeline_tests.conftest import make_sandbox, sync_sandbox

SECTIONS = ("volume", "funnel", "nps", "pages", "requests", "rejects", "freshness", "latest")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dashboard of the sandbox's default data (30 days, seed 7), as ``make demo`` draws it."""
    workdir = tmp_path_factory.mktemp("dashboard")
    server = make_sandbox()
    try:
        db = sync_sandbox(server, workdir / "feedback.duckdb")
    finally:
        server.stop()
    out = workdir / "dashboard.html"
    assert build_dashboard(db, out).written
    yield out


def open_page(browser, path: Path, width: int) -> dict:
    """Open ``path`` at ``width`` pixels; returns the page's own measurements."""
    browser.set_window_size(width, 1000)
    browser.get(path.as_uri())
    return browser.execute_script(
        """const nav = performance.getEntriesByType('navigation')[0];
        return {title: document.title, scrollWidth: document.documentElement.scrollWidth,
                innerWidth: window.innerWidth, height: document.documentElement.scrollHeight,
                resources: performance.getEntriesByType('resource').map(r => r.name),
                loadMs: nav.loadEventEnd, sections: [...document.querySelectorAll('section')].map(s => s.id)};"""
    )


def shown_charts(browser, section: str) -> list[int]:
    """Widths of the section's charts that are displayed."""
    return browser.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} .chart svg`)].map(s => s.getBoundingClientRect().width).filter(w => w > 0);",
        section,
    )


def test_the_dashboard_opens_offline_with_no_console_error(browser, dashboard: Path, screenshots: Path):
    page = open_page(browser, dashboard, 1366)
    assert page["title"] == "Feedback dashboard" and tuple(page["sections"]) == SECTIONS
    assert page["resources"] == []  # nothing fetched: no script, stylesheet, font or image from anywhere
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    for section in SECTIONS[:6]:
        assert len(shown_charts(browser, section)) == 1, section
    assert page["scrollWidth"] <= page["innerWidth"]
    print(f"dashboard loaded in {page['loadMs']:.0f} ms ({dashboard.stat().st_size / 1024:.0f} KiB)")
    browser.set_window_size(1366, page["height"] + 140)  # the whole page in one screenshot
    browser.save_screenshot(str(screenshots / "dashboard.png"))


def test_the_dashboard_fits_a_phone_screen(browser, dashboard: Path, screenshots: Path):
    page = open_page(browser, dashboard, 390)
    assert page["scrollWidth"] <= page["innerWidth"]  # no sideways scrolling
    widths = shown_charts(browser, "volume")
    assert len(widths) == 1 and widths[0] <= page["innerWidth"]  # the narrow drawing, not the wide one
    browser.save_screenshot(str(screenshots / "dashboard-phone.png"))
