"""The checks' results from their numbers: a synced provider's scoped to its window and records,
and those of a provider the run did not sync in full saying so first."""

from __future__ import annotations

from collections import Counter
from datetime import date

import dagster as dg

from feedback_pipeline.checks import CHECKS, check_results, rejects_sql, unsynced_check_results
from feedback_pipeline.providers.base import Window
from feedback_pipeline.sync import SyncReport
from feedback_pipeline.warehouse import WindowStats, WriteCounts

KEY = dg.AssetKey("mapbox_feedback")
WINDOW = Window.for_days(date(2026, 3, 1), date(2026, 3, 3))


def by_name(results: list[dg.AssetCheckResult]) -> dict[str, dg.AssetCheckResult]:
    return {r.check_name or "": r for r in results}


def values(result: dg.AssetCheckResult) -> dict:
    return {k: v.value for k, v in result.metadata.items()}


def test_a_synced_providers_reject_rate_counts_its_records_for_the_window_and_warns_above_one_percent():
    report = SyncReport("mapbox", "acct", WINDOW, False, counts=WriteCounts(inserted=90, updated=5, unchanged=3, out_of_window=40, rejected=2))
    results = by_name(check_results(KEY, report, WindowStats(98, 0, 0), Counter({"missing_collected_at": 2})))
    assert set(results) == set(CHECKS) and results["unique_keys"].passed and results["collected_at_valid"].passed
    rate = results["reject_rate"]
    meta = values(rate)
    assert rate.severity == dg.AssetCheckSeverity.WARN and not rate.passed  # 2 of 100 records
    assert (meta["records_rejected"], meta["records_received_for_window"], meta["reject_rate"]) == (2, 100, 0.02)
    assert meta["top_reasons"] == "missing_collected_at: 2" and rate.description is None


def test_a_provider_not_synced_in_full_has_each_result_open_with_why_and_its_rows_judged_as_stored():
    why = "it failed in this run (mapbox/eu: GET /feedback returned HTTP 401: check MAPBOX_ACCESS_TOKEN.)"
    results = by_name(unsynced_check_results(KEY, "mapbox", WINDOW, WindowStats(50, 1, 0), Counter(), 0, why))
    assert set(results) == set(CHECKS)
    assert all(r.description == f"Evaluated without this run's sync of mapbox: {why}" for r in results.values())
    assert all(values(r)["not_synced_by_this_run"] == why and values(r)["window"] == "2026-03-01..2026-03-03" for r in results.values())
    assert not results["unique_keys"].passed  # a duplicate stored in the window still fails its check
    assert results["reject_rate"].passed and values(results["reject_rate"])["records_received"] == 0


def test_the_rejects_query_lists_one_account_or_every_account_of_the_provider():
    assert "WHERE provider = 'mapbox' AND account_id = 'o''brien'\n" in rejects_sql("mapbox", "o'brien")
    assert "WHERE provider = 'mapbox'\n" in rejects_sql("mapbox", None)
