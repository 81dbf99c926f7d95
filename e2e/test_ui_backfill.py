"""A data engineer backfills a date range from the asset page, as the README tells them to:
asset page -> Materialize… -> partition range -> Launch backfill -> the backfill succeeds as one run."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from feedback_pipeline.providers import get_spec
from feedback_pipeline_tests.test_webserver import BACKFILL_STATUS, Webserver

UTC = timezone.utc
ASSET = "mapbox_feedback"
DAYS = 7
BACKFILL_TIMEOUT = 300


def button(driver: WebDriver, text: str, *, within: WebElement | None = None, timeout: float = 30) -> WebElement:
    xpath = f".//button[normalize-space(.)='{text}']"
    root = within or driver
    return WebDriverWait(driver, timeout).until(lambda _: _clickable(root.find_elements(By.XPATH, xpath)))


def _clickable(elements: list[WebElement]) -> WebElement | bool:
    for element in elements:
        try:
            if element.is_displayed() and element.is_enabled():
                return element
        except StaleElementReferenceException:
            pass
    return False


def body_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver: WebDriver, pattern: str, *, timeout: float = 30, reload_every: float | None = None) -> re.Match:
    """Wait until the page text matches ``pattern`` (regex), optionally reloading the page."""
    deadline = time.monotonic() + timeout
    reloaded = time.monotonic()
    while True:
        try:
            match = re.search(pattern, body_text(driver))
        except StaleElementReferenceException:
            match = None
        if match:
            return match
        if time.monotonic() > deadline:
            raise TimeoutException(f"no {pattern!r} on {driver.current_url} after {timeout}s:\n{body_text(driver)[:3000]}")
        if reload_every and time.monotonic() - reloaded > reload_every:
            driver.refresh()
            reloaded = time.monotonic()
        time.sleep(1)


def dismiss_community_modal(driver: WebDriver) -> None:
    """A fresh DAGSTER_HOME greets the first visitor with "Join the Dagster community"."""
    try:
        button(driver, "Skip", timeout=5).click()
    except TimeoutException:
        pass


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_backfill_of_7_partitions_launched_from_the_asset_page_succeeds_as_one_run(
    browser: WebDriver, webserver: Webserver, screenshots: Path
):
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=DAYS), today - timedelta(days=1)

    # The asset page shows what the catalog promises: group, kinds, description.
    browser.get(f"{webserver.url}/assets/{ASSET}")
    button(browser, "Materialize…", timeout=60)
    dismiss_community_modal(browser)
    text = wait_for_text(browser, r"Definition").string
    assert get_spec("mapbox").description.split(" (")[0].rstrip(".") in text
    assert "feedback" in text and "api" in text and "DuckDB" in text
    browser.save_screenshot(str(screenshots / "e2e-1-asset-page.png"))

    # Materialize… opens the partition dialog; type the range the way a user would.
    materialize = button(browser, "Materialize…")
    materialize.click()
    dialog = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))
    assert f"Launch runs to materialize {ASSET}" in dialog.text
    assert "Backfills all partitions in a single run." in dialog.text  # single-run backfill policy
    partitions = dialog.find_element(By.CSS_SELECTOR, "input[type=text]")
    partitions.click()
    partitions.send_keys(Keys.CONTROL, "a")
    partitions.send_keys(f"[{first.isoformat()}...{last.isoformat()}]", Keys.ENTER)
    WebDriverWait(browser, 15).until(lambda _: f"{DAYS} partitions" in dialog.text)
    browser.save_screenshot(str(screenshots / "e2e-2-materialize-dialog.png"))
    button(browser, "Launch backfill", within=dialog).click()

    # The toast names the backfill and links to its page.
    backfill_id = wait_for_text(browser, r"Created backfill (\w+)").group(1)
    WebDriverWait(browser, 15).until(EC.element_to_be_clickable((By.XPATH, f"//a[contains(@href, '/runs/b/{backfill_id}')]"))).click()
    WebDriverWait(browser, 30).until(EC.url_contains(f"/runs/b/{backfill_id}"))

    # Wait on the backfill page until it says Succeeded (the page polls; reload now and then).
    status = wait_for_text(browser, r"Status\s*\n\s*(Succeeded|Failed|Canceled|Completed)", timeout=BACKFILL_TIMEOUT, reload_every=20)
    page = body_text(browser)
    assert status.group(1) == "Succeeded", page
    assert f"{first.isoformat()}…{last.isoformat()}" in page or f"{first.isoformat()}...{last.isoformat()}" in page
    # Asset name | targeted | in progress | succeeded | failed
    assert re.search(rf"{ASSET}\s*\n\s*100% completed\s*\n\s*{DAYS}\s*\n\s*0\s*\n\s*{DAYS}\s*\n\s*0", page), page
    browser.save_screenshot(str(screenshots / "e2e-3-backfill-succeeded.png"))

    # One run for the whole range (single-run backfill policy), as the Runs tab shows.
    backfill = webserver.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
    assert backfill["status"] == "COMPLETED_SUCCESS" and [r["status"] for r in backfill["runs"]] == ["SUCCESS"], backfill

    # The asset's Partitions tab: exactly the seven days are materialized.
    browser.get(f"{webserver.url}/assets/{ASSET}?view=partitions")
    wait_for_text(browser, rf"Materialized \({DAYS}\)", timeout=60, reload_every=15)
    assert "Failed (0)" in body_text(browser)
    browser.save_screenshot(str(screenshots / "e2e-4-asset-partitions.png"))

    # And the analysts' snapshot has Mapbox rows on each of those days, none elsewhere.
    with duckdb.connect(str(webserver.db_path), read_only=True) as con:
        days = con.execute("SELECT DISTINCT collected_date FROM feedback WHERE provider = 'mapbox' ORDER BY 1").fetchall()
    assert [d for (d,) in days] == [first + timedelta(days=i) for i in range(DAYS)]
