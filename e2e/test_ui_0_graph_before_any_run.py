"""The asset graph of a fresh instance, before any run (``screenshots/ui-graph-before-any-run.png``).

Runs before the other UI tests (file order). Each node's footer then reads "0 / 3 Passed" next to
a tick: that is Dagster 1.13's drawing of checks that have no result yet (``AssetChecksStatusSummary``
in its "dag2025" style counts passed checks and draws the tick unless one failed or was skipped);
the asset's Checks tab says "Not evaluated", and GraphQL has no execution for any check
(test_webserver.test_before_any_run_every_check_reads_not_evaluated)."""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from feedback_pipeline_tests.test_webserver import Webserver

from test_ui_backfill import body_text, dismiss_community_modal, wait_for_text

GRAPH = "/locations/feedback_pipeline/asset-groups/feedback"
GRAPH_HEIGHT = 1400


@pytest.mark.e2e
def test_before_any_run_the_graph_shows_no_check_result_and_the_checks_tab_says_not_evaluated(browser: WebDriver, webserver: Webserver, screenshots: Path):
    browser.set_window_size(1600, GRAPH_HEIGHT)  # the five nodes in one screenshot
    browser.get(f"{webserver.url}{GRAPH}")
    dismiss_community_modal(browser)
    wait_for_text(browser, r"(0 / 3 Passed[\s\S]*){5}", timeout=60)
    assert "Failed" not in body_text(browser)
    browser.save_screenshot(str(screenshots / "ui-graph-before-any-run.png"))

    browser.set_window_size(1600, 1000)
    browser.get(f"{webserver.url}/assets/formbricks_feedback?view=checks")
    text = wait_for_text(browser, r"unique_keys", timeout=60).string
    assert text.lower().count("not evaluated") >= 3 and "Failed" not in text
    browser.save_screenshot(str(screenshots / "ui-checks-before-any-run.png"))
