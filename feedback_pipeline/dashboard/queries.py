"""What the dashboard shows, read from the analysts' snapshot (``FEEDBACK_DB``) as small aggregates.

Every chart reads an analyst view where one exists (``feedback_daily_counts``,
``feedback_status_funnel``, ``nps_daily``, ``mintlify_page_helpfulness``), so its numbers are
the ones an analyst gets from the same view. Only aggregates and the latest 20 texts leave the
database; personal data never does: e-mail addresses and user ids are neither selected for display
nor left inside the texts shown (see :func:`redact`).

Two charts are about one provider by definition (Mintlify's page votes, FeedbackKit's vote
counts): their SQL names that provider, as the views and the README's cookbook do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

VOLUME_DAYS = 90
NPS_WEEKS = 26
MIN_PAGE_VOTES = 5
TOP_PAGES = 10
TOP_REQUESTS = 10
LATEST_TEXTS = 20
TEXT_CHARS = 280

DAILY_VOLUME_SQL = """
SELECT collected_date, provider, sum(feedback)::BIGINT AS feedback
FROM feedback_daily_counts
WHERE collected_date BETWEEN $first AND $last
GROUP BY ALL ORDER BY collected_date, provider"""

STATUS_FUNNEL_SQL = """
SELECT provider, stage_order, stage, feedback, share_of_received
FROM feedback_status_funnel ORDER BY provider, stage_order"""

# Weekly NPS from the daily view's counts (an NPS is not an average of daily NPS values).
NPS_WEEKLY_SQL = """
SELECT date_trunc('week', collected_date)::DATE AS week,
       sum(responses)::BIGINT AS responses, sum(promoters)::BIGINT AS promoters,
       sum(passives)::BIGINT AS passives, sum(detractors)::BIGINT AS detractors,
       round(100.0 * (sum(promoters) - sum(detractors)) / sum(responses), 1) AS nps
FROM nps_daily
WHERE collected_date BETWEEN $first AND $last
GROUP BY week ORDER BY week"""

LEAST_HELPFUL_SQL = """
SELECT page_url, votes, helpful, not_helpful, helpful_share
FROM mintlify_page_helpfulness
WHERE votes >= $min_votes
ORDER BY helpful_share, votes DESC, page_url LIMIT $limit"""

# FeedbackKit keys arrive camelCase (documented) or snake_case (CONTRACT.md section 4).
TOP_REQUESTS_SQL = """
SELECT title, provider_status,
       try_cast(coalesce(attributes ->> '$.voteCount', attributes ->> '$.vote_count') AS BIGINT) AS votes
FROM feedback
WHERE provider = 'feedbackkit' AND status IN ('open', 'in_progress')
  AND coalesce(attributes ->> '$.mergedIntoId', attributes ->> '$.merged_into_id') IS NULL
ORDER BY votes DESC NULLS LAST, collected_at DESC, feedback_id LIMIT $limit"""

REJECTS_SQL = """
SELECT reason, provider, count(*) AS records
FROM feedback_rejects GROUP BY ALL ORDER BY records DESC, reason, provider"""

FRESHNESS_SQL = """
WITH synced AS (
    SELECT provider, account_id, max(day) AS newest_synced_day, max(synced_at) AS last_sync
    FROM pipeline_sync_days GROUP BY ALL),
stored AS (SELECT provider, account_id, count(*) AS feedback_rows FROM feedback GROUP BY ALL),
unfinished AS (SELECT provider, account_id, count(*) AS unfinished_queries FROM pipeline_cursors GROUP BY ALL)
SELECT provider, account_id, last_sync, newest_synced_day,
       date_diff('day', newest_synced_day, $today) AS partitions_behind,
       coalesce(feedback_rows, 0) AS feedback_rows, coalesce(unfinished_queries, 0) AS unfinished_queries
FROM synced FULL JOIN stored USING (provider, account_id) LEFT JOIN unfinished USING (provider, account_id)
ORDER BY provider, account_id"""

# user_id and user_email are read only to blank them out of the texts they may appear in.
LATEST_SQL = """
SELECT provider, collected_at, status, category, title, body, user_id, user_email
FROM feedback
WHERE coalesce(body, '') <> '' OR coalesce(title, '') <> ''
ORDER BY collected_at DESC, provider, account_id, feedback_id LIMIT $limit"""

TOTALS_SQL = """
SELECT provider, count(*) AS feedback, max(collected_at) AS newest_collected_at
FROM feedback GROUP BY provider ORDER BY provider"""

REJECT_TOTAL_SQL = "SELECT count(*) FROM feedback_rejects"

# What the snapshot holds, cheaply: the publish generation (bumped by every transaction that
# changed feedback or rejects) and the creation time of the database (so a rebuilt database whose
# generation happens to match never passes for the old one).
GENERATION_SQL = "SELECT generation FROM pipeline_publish"
CREATED_SQL = "SELECT min(applied_at) FROM pipeline_schema_version"

EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True)
class Table:
    """Rows of one query with their column names."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclass(frozen=True)
class DashboardData:
    """Everything the page shows, with the date ranges it covers (UTC days)."""

    today: date
    volume_first: date
    nps_first: date
    snapshot_key: str | None
    totals: Table
    rejects_total: int
    daily_volume: Table
    status_funnel: Table
    nps_weekly: Table
    least_helpful: Table
    top_requests: Table
    rejects: Table
    freshness: Table
    latest: Table
    providers: tuple[str, ...] = field(default=())


def connect(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    """The snapshot, read-only (as analysts open it: never blocks or is blocked by a run)."""
    con = duckdb.connect(str(db_path), read_only=True, config={"memory_limit": "256MB", "threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    return con


def snapshot_key(con: duckdb.DuckDBPyConnection) -> str | None:
    """Identity of the snapshot's content: ``<created>/<generation>``; None when it cannot tell
    (a database without ``pipeline_publish``), which means "always rebuild"."""
    try:
        generation = con.execute(GENERATION_SQL).fetchone()
        created = con.execute(CREATED_SQL).fetchone()
    except duckdb.Error:
        return None
    if not generation or not created or created[0] is None:
        return None
    return f"{created[0].isoformat()}/{generation[0]}"


def load(con: duckdb.DuckDBPyConnection, today: date) -> DashboardData:
    """Run every dashboard query against the open snapshot."""
    volume_first = today - timedelta(days=VOLUME_DAYS - 1)
    this_monday = today - timedelta(days=today.weekday())
    nps_first = this_monday - timedelta(weeks=NPS_WEEKS - 1)
    totals = _table(con, TOTALS_SQL)
    rejects = _table(con, REJECTS_SQL)
    freshness = _table(con, FRESHNESS_SQL, {"today": today})
    # Every provider the snapshot knows, so each keeps one colour across the charts.
    providers = sorted(set(totals.column("provider")) | set(rejects.column("provider")) | set(freshness.column("provider")))
    return DashboardData(
        today=today,
        volume_first=volume_first,
        nps_first=nps_first,
        snapshot_key=snapshot_key(con),
        totals=totals,
        rejects_total=con.execute(REJECT_TOTAL_SQL).fetchone()[0],
        daily_volume=_table(con, DAILY_VOLUME_SQL, {"first": volume_first, "last": today}),
        status_funnel=_table(con, STATUS_FUNNEL_SQL),
        nps_weekly=_table(con, NPS_WEEKLY_SQL, {"first": nps_first, "last": today}),
        least_helpful=_redacted(_table(con, LEAST_HELPFUL_SQL, {"min_votes": MIN_PAGE_VOTES, "limit": TOP_PAGES}), ("page_url",)),
        top_requests=_redacted(_table(con, TOP_REQUESTS_SQL, {"limit": TOP_REQUESTS}), ("title",)),
        rejects=rejects,
        freshness=freshness,
        latest=_latest_texts(_table(con, LATEST_SQL, {"limit": LATEST_TEXTS})),
        providers=tuple(providers),
    )


def redact(text: str | None, known: tuple[str | None, ...] = ()) -> str | None:
    """``text`` with e-mail addresses and the given identifiers (the row's own user id and
    e-mail) replaced, so free text typed by an end user cannot carry them onto the page."""
    if text is None:
        return None
    for value in known:
        if value:
            text = text.replace(value, "[redacted]")
    return EMAIL.sub("[e-mail]", text)


def shorten(text: str | None, limit: int = TEXT_CHARS) -> str | None:
    """At most ``limit`` characters (a body can be 30,000), cut with an ellipsis."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def _table(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> Table:
    cursor = con.execute(sql, params or {})
    return Table(tuple(d[0] for d in cursor.description), cursor.fetchall())


def _redacted(table: Table, text_columns: tuple[str, ...]) -> Table:
    indexes = {table.columns.index(c) for c in text_columns}
    rows = [tuple(redact(v) if i in indexes else v for i, v in enumerate(row)) for row in table.rows]
    return Table(table.columns, rows)


def _latest_texts(table: Table) -> Table:
    """The latest texts without the identity columns; texts redacted and shortened."""
    columns = ("provider", "collected_at", "status", "category", "title", "body")
    rows = []
    for r in table.records():
        known = (r["user_id"], r["user_email"])
        rows.append((
            r["provider"], r["collected_at"], r["status"], redact(r["category"], known),
            shorten(redact(r["title"], known)), shorten(redact(r["body"], known)),
        ))
    return Table(columns, rows)


def as_utc_text(value: datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` (the page states every time in UTC)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"
