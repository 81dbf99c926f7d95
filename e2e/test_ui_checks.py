"""What an operator sees after runs, in the real web UI (screenshots in ``screenshots/ui-*.png``;
the README shows copies from ``docs/``): the graph and the checks after a healthy backfill of the
five assets (all passing), the checks after a launch in which the Hub refused the key (none
failed), that run's error dialog (the project's sentence on top) and the full-refresh job
launched with a partition range.

Launches go through the same GraphQL mutations the UI's dialogs send (test_webserver); the
full-refresh job is launched through its dialog."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from feedback_pipeline.checks import CHECKS
from feedback_pipeline.providers import get_spec, names
from feedback_pipeline_tests.test_webserver import (
    BACKFILL_STATUS, LAUNCH_BACKFILL, LAUNCH_RUN, LOCATION, Ui, Webserver, asset_launch, check_statuses, wait_for_run,
)

from test_ui_0_graph_before_any_run import GRAPH, GRAPH_HEIGHT
from test_ui_backfill import _clickable, body_text, button, dismiss_community_modal, wait_for_text

UTC = timezone.utc
ASSETS = sorted(get_spec(p).asset_name for p in names())
TIMEOUT = 300


def wait_for_backfill(webserver: Webserver, backfill_id: str) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while True:
        backfill = webserver.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill
        assert time.monotonic() < deadline, backfill
        time.sleep(2)


def days(first, last) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def checks_page(browser: WebDriver, webserver: Webserver, asset: str) -> str:
    browser.get(f"{webserver.url}/assets/{asset}?view=checks")
    dismiss_community_modal(browser)
    wait_for_text(browser, r"reject_rate", timeout=60)
    return wait_for_text(browser, r"(Passed|Succeeded)[\s\S]*(Passed|Succeeded)[\s\S]*(Passed|Succeeded)", timeout=60, reload_every=10).string


def open_full_message(browser: WebDriver) -> str:
    """Click the (only) log row's "View full message"; returns the dialog's text (it stays open
    for the screenshot)."""
    more = WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.XPATH, "//button[normalize-space(.)='View full message']")))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", more)
    return WebDriverWait(browser, 15).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]"))).text


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_checks_pass_after_a_backfill_none_fail_after_a_refused_key_and_the_error_opens_with_the_sentence(
    browser: WebDriver, ui: Ui, webserver: Webserver, screenshots: Path
):
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=7), today - timedelta(days=1)

    # A healthy backfill of the five assets (what the Materialize dialog sends for a range).
    launched = webserver.graphql(LAUNCH_BACKFILL, {"backfillParams": {
        "assetSelection": [{"path": [a]} for a in ASSETS], "partitionNames": days(first, last), "fromFailure": False, "tags": []}})
    backfill = wait_for_backfill(webserver, launched["launchPartitionBackfill"]["backfillId"])
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    assert check_statuses(webserver, ASSETS) == {a: dict.fromkeys(CHECKS, "SUCCEEDED") for a in ASSETS}

    browser.set_window_size(1600, GRAPH_HEIGHT)  # the five nodes in one screenshot
    browser.get(f"{webserver.url}{GRAPH}")
    dismiss_community_modal(browser)
    wait_for_text(browser, r"(3 / 3 Passed[\s\S]*){5}", timeout=60, reload_every=10)
    browser.save_screenshot(str(screenshots / "ui-graph-after-backfill.png"))
    browser.set_window_size(1600, 1000)
    text = checks_page(browser, webserver, "formbricks_feedback")
    assert "Failed" not in text and "Not evaluated" not in text
    browser.save_screenshot(str(screenshots / "ui-checks-after-backfill.png"))

    # The Hub refuses the key (401 with a proxy's HTML page); one partition of two assets with
    # their checks, as the asset page's dialog launches it.
    httpx.post(f"{ui.sandbox_url}/_control/formbricks/faults", json={"kind": "server_error", "status": 401, "count": None}, timeout=10).raise_for_status()
    try:
        run = webserver.graphql(LAUNCH_RUN, {"executionParams": asset_launch(["formbricks_feedback", "mapbox_feedback"], last.isoformat())})["launchRun"]
        run_id = run["run"]["runId"]
        assert wait_for_run(webserver, run_id)["runOrError"]["status"] == "FAILURE"
    finally:
        httpx.delete(f"{ui.sandbox_url}/_control/faults", timeout=10).raise_for_status()

    text = checks_page(browser, webserver, "formbricks_feedback")
    assert "Execution failed" not in text and "Failed" not in text
    assert "Evaluated without this run's sync of formbricks" in text
    browser.save_screenshot(str(screenshots / "ui-checks-after-auth-failure.png"))

    # The run's page: the step's failure opens with the project's sentence.
    # The run's logs filtered to the step's failure (the run page's own filter, in its URL); the
    # row is truncated and its "View full message" opens the whole error.
    browser.get(f"{webserver.url}/runs/{run_id}?logs=type:STEP_FAILURE")
    wait_for_text(browser, r"formbricks/tenant-sandbox: GET", timeout=60, reload_every=10)
    shown = open_full_message(browser)
    assert shown.startswith("Error\n")
    start = shown.index("formbricks/tenant-sandbox: GET")
    assert "HTTP 401" in shown[start : start + 300] and "FORMBRICKS_HUB_API_KEY" in shown[start : start + 300]
    top = shown[: shown.index('File "')]  # what the dialog shows above the stack trace
    assert top.startswith("Error\ndagster._core.definitions.events.Failure: formbricks/tenant-sandbox: GET") and "<html" not in top.lower()
    browser.save_screenshot(str(screenshots / "ui-error-dialog.png"))

    # The full-refresh job from the Jobs list: Materialize all… with a partition range.
    browser.get(f"{webserver.url}/locations/{LOCATION}/jobs/feedback_full_refresh")
    dismiss_community_modal(browser)
    wait_for_text(browser, r"Full refresh of a partition range", timeout=60)
    button(browser, "Materialize all…", timeout=60).click()
    dialog = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))
    # The dialog opens before its partitions load ("Loading pipeline and partition sets…"), with
    # a partition picker in place of the range box until then.
    partitions = WebDriverWait(browser, 60).until(
        lambda _: "Loading" not in dialog.text and _clickable(dialog.find_elements(By.CSS_SELECTOR, "input[type=text]"))
    )
    partitions.click()
    partitions.send_keys(Keys.CONTROL, "a")
    partitions.send_keys(f"[{first.isoformat()}...{last.isoformat()}]", Keys.ENTER)
    WebDriverWait(browser, 15).until(lambda _: "7 partitions" in dialog.text)
    browser.save_screenshot(str(screenshots / "ui-full-refresh-dialog.png"))
    launch = next(b for b in dialog.find_elements(By.TAG_NAME, "button") if b.text.strip() in ("Launch backfill", "Launch run", "Launch 1 run"))
    launch.click()
    backfill_id = wait_for_text(browser, r"Created backfill (\w+)").group(1)
    backfill = wait_for_backfill(webserver, backfill_id)
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    [refresh] = backfill["runs"]
    tags = {t["key"]: t["value"] for t in refresh["tags"]}
    assert refresh["status"] == "SUCCESS" and tags["feedback/full_refresh"] == "true"
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (first.isoformat(), last.isoformat())
    browser.get(f"{webserver.url}/runs/{refresh['runId']}")
    button(browser, "View tags and config", timeout=60).click()
    wait_for_text(browser, r"feedback/full_refresh", timeout=30)
    browser.save_screenshot(str(screenshots / "ui-full-refresh-run.png"))
