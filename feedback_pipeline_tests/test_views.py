"""Analyst views in FEEDBACK_DB, each checked against known data."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Progress, Scope, Warehouse

UTC = timezone.utc
DAY1, DAY2 = date(2026, 4, 1), date(2026, 4, 2)


def store(wh: Warehouse, provider: str, rows: list[dict]) -> None:
    batch = FeedbackBatch(provider, "acct")
    for row in rows:
        batch.add(
            row,
            feedback_id=row["id"],
            collected_at=row.get("at", "2026-04-01T12:00:00Z"),
            provider_status=row.get("status"),
            category=row.get("category"),
            rating=row.get("rating"),
            page_url=row.get("page"),
            attributes=row.get("attributes"),
        )
    progress = Progress("window:test", DAY1, DAY2, None, datetime.now(UTC), 1, None)
    with wh.session() as session, session.cursor() as cursor:
        cursor.commit(Scope(provider, "acct", DAY1, DAY2), batch.rows(), batch.rejects(), progress)


def query(wh: Warehouse, sql: str) -> list[tuple]:
    wh.publish_if_behind()
    con = duckdb.connect(str(wh.path), read_only=True)  # what analysts open
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def test_daily_counts_by_provider_and_status(wh: Warehouse):
    store(wh, "mapbox", [
        {"id": "1", "status": "received"}, {"id": "2", "status": "received"},
        {"id": "3", "status": "fixed", "at": "2026-04-02T00:00:00Z"}, {"id": "4", "status": "weird"},
    ])
    assert query(wh, "SELECT * FROM feedback_daily_counts ORDER BY ALL") == [
        (DAY1, "mapbox", "none", 1), (DAY1, "mapbox", "open", 2), (DAY2, "mapbox", "resolved", 1),
    ]


def test_status_funnel_shares(wh: Warehouse):
    statuses = ["pending"] * 4 + ["in_progress"] * 2 + ["resolved"] * 3 + ["dismissed"]
    store(wh, "mintlify", [{"id": str(i), "status": s} for i, s in enumerate(statuses)])
    assert query(wh, "SELECT stage, feedback, share_of_received FROM feedback_status_funnel ORDER BY stage_order") == [
        ("received", 10, 1.0), ("triaged", 6, 0.6), ("in_progress_or_resolved", 5, 0.5), ("resolved", 3, 0.3),
    ]


def test_nps_per_day_from_formbricks_and_usersnap(wh: Warehouse):
    store(wh, "formbricks", [
        {"id": "f1", "category": "nps", "rating": 10},
        {"id": "f2", "category": "nps", "rating": 3},
        {"id": "f3", "category": "rating", "rating": 5},  # not an NPS question
        {"id": "f4", "category": "nps", "rating": 8, "at": "2026-04-02T08:00:00Z"},
        {"id": "f5", "category": "nps", "rating": 6.5, "at": "2026-04-02T09:00:00Z"},  # fractional: its whole part's bucket
        {"id": "f6", "category": "nps", "rating": 8.5, "at": "2026-04-02T10:00:00Z"},
    ])
    nps = lambda order, value: {"order": order, "label": "How likely are you to recommend us? (NPS)", "value": value}
    store(wh, "usersnap", [
        {"id": "u1", "attributes": {"ordered_inputs": [{"order": 0, "label": "Comment", "value": "hi"}, nps(1, "9")]}},
        {"id": "u2", "attributes": {"ordered_inputs": [nps(2, 0), nps(1, 10)]}},  # first by order wins: 10
        {"id": "u3", "attributes": {"ordered_inputs": [nps(0, "N/A")]}},  # not a number: ignored
        {"id": "u4", "attributes": {"ordered_inputs": [{"order": 0, "label": "Rating", "value": 2}]}},
        {"id": "u5", "attributes": {"ordered_inputs": [{"label": "NPS", "value": 9}, nps(7, 1)]}},  # no order comes last: 1
    ])
    # day 1: promoters f1, u1, u2 (3); detractors f2, u5 (2); 5 responses -> NPS 20.0;
    # day 2: passives f4 and f6 (8.5), detractor f5 (6.5) -> NPS -33.3
    assert query(wh, "SELECT * FROM nps_daily ORDER BY collected_date") == [(DAY1, 5, 3, 0, 2, 20.0), (DAY2, 3, 0, 2, 1, -33.3)]
    # A date filter on the view reaches the scan (no window over the whole table in between).
    plan = "\n".join(row[1] for row in query(wh, "EXPLAIN SELECT * FROM nps_daily WHERE collected_date = DATE '2026-04-02'"))
    assert "window" not in plan.lower()


def test_mintlify_helpfulness_per_page(wh: Warehouse):
    store(wh, "mintlify", [
        {"id": "1", "page": "/quickstart", "attributes": {"helpful": True}},
        {"id": "2", "page": "/quickstart", "attributes": {"helpful": True}},
        {"id": "3", "page": "/quickstart", "attributes": {"helpful": False}},
        {"id": "4", "page": "/faq", "attributes": {"helpful": False}},
        {"id": "5", "page": "/faq", "attributes": {"code": "x = 1"}},  # code snippet: no vote
    ])
    assert query(wh, "SELECT * FROM mintlify_page_helpfulness ORDER BY page_url") == [
        ("/faq", 1, 0, 1, 0.0), ("/quickstart", 3, 2, 1, 0.6667),
    ]
