"""Sync state: which days of a provider account were read whole (and up to which watermark), and
the resume points of unfinished queries. Reads run on any cursor; writes run inside a commit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import duckdb
import orjson

from .model import CursorRow, Progress, Scope, utc


def sync_days(con: duckdb.DuckDBPyConnection, provider: str, account_id: str, first_day: date, last_day: date) -> dict[date, tuple[datetime, datetime]]:
    """``{day: (synced_at, watermark)}`` for the days of the range that were ever read whole."""
    rows = con.execute(
        "SELECT day, synced_at, watermark FROM pipeline_sync_days WHERE provider = ? AND account_id = ? AND day BETWEEN ? AND ?",
        [provider, account_id, first_day, last_day],
    ).fetchall()
    return {day: (utc(synced), utc(watermark)) for day, synced, watermark in rows}


_CURSOR_COLUMNS = "query_key, first_day, last_day, changes_since, started_at, resume, pages"


def stored_cursor(con: duckdb.DuckDBPyConnection, provider: str, account_id: str, query_key: str) -> CursorRow | None:
    """The stored resume point of an unfinished query, if any."""
    row = con.execute(
        f"SELECT {_CURSOR_COLUMNS} FROM pipeline_cursors WHERE provider = ? AND account_id = ? AND query_key = ?",
        [provider, account_id, query_key],
    ).fetchone()
    return None if row is None else _cursor_row(row)


def stored_cursors(con: duckdb.DuckDBPyConnection, provider: str, account_id: str) -> list[CursorRow]:
    """Every unfinished query of one account, by first day."""
    rows = con.execute(
        f"SELECT {_CURSOR_COLUMNS} FROM pipeline_cursors WHERE provider = ? AND account_id = ? ORDER BY first_day, query_key",
        [provider, account_id],
    ).fetchall()
    return [_cursor_row(row) for row in rows]


def _cursor_row(row: tuple[Any, ...]) -> CursorRow:
    return CursorRow(row[0], row[1], row[2], utc(row[3]) if row[3] else None, utc(row[4]), orjson.loads(row[5]), row[6])


def drop_cursor(con: duckdb.DuckDBPyConnection, provider: str, account_id: str, query_key: str) -> None:
    """Forget an unfinished query (its cursor was refused by the API); call inside a transaction."""
    con.execute("DELETE FROM pipeline_cursors WHERE provider = ? AND account_id = ? AND query_key = ?", [provider, account_id, query_key])
    forget_seen_keys(con, provider, account_id, query_key)


def forget_seen_keys(con: duckdb.DuckDBPyConnection, provider: str, account_id: str, query_key: str) -> None:
    """Drop the keys recorded under ``query_key`` (with its cursor, or before a query under that
    key starts afresh, so its sweep judges the provider by what this query returns); call inside
    a transaction."""
    con.execute("DELETE FROM pipeline_refresh_keys WHERE provider = ? AND account_id = ? AND query_key = ?", [provider, account_id, query_key])


def write_cursor(con: duckdb.DuckDBPyConnection, scope: Scope, progress: Progress, now: datetime) -> None:
    """Store where the query resumes (or, finished, that it has nothing to resume)."""
    con.execute("DELETE FROM pipeline_cursors WHERE provider = ? AND account_id = ? AND query_key = ?", [scope.provider, scope.account_id, progress.query_key])
    if progress.resume is not None:
        con.execute(
            "INSERT INTO pipeline_cursors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                scope.provider, scope.account_id, progress.query_key, progress.first_day, progress.last_day,
                progress.changes_since, progress.started_at, orjson.dumps(progress.resume).decode(), progress.pages, now,
            ],
        )


def finish_query(con: duckdb.DuckDBPyConnection, scope: Scope, progress: Progress, now: datetime) -> None:
    """A query read its days whole: mark them synced with watermark ``started_at`` (everything
    changed before the query started is known) and drop cursors the finished query covers.

    A covered full refresh that is still unfinished (its cursor has seen keys) is dropped only by
    a query that swept too: a read that deletes nothing does not do a refresh's job, so its
    cursor stays for ``feedback_resume``. Seen keys go with their cursor, those of queries whose
    cursor is gone included: a later refresh under the same key must not skip them in its sweep."""
    who = {"p": scope.provider, "a": scope.account_id}
    span = {**who, "first": progress.first_day, "last": progress.last_day}
    covered = "provider = $p AND account_id = $a AND first_day >= $first AND last_day <= $last"
    if not progress.sweep:
        covered += " AND query_key NOT IN (SELECT query_key FROM pipeline_refresh_keys WHERE provider = $p AND account_id = $a)"
    con.execute(f"DELETE FROM pipeline_cursors WHERE {covered}", span)
    con.execute(
        """DELETE FROM pipeline_refresh_keys WHERE provider = $p AND account_id = $a
        AND query_key NOT IN (SELECT query_key FROM pipeline_cursors WHERE provider = $p AND account_id = $a)""",
        who,
    )
    con.execute(
        """INSERT INTO pipeline_sync_days
        SELECT $p, $a, d::DATE, $now, $started
        FROM range($first::TIMESTAMP, $last::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
        ON CONFLICT (provider, account_id, day) DO UPDATE
        SET synced_at = excluded.synced_at, watermark = greatest(pipeline_sync_days.watermark, excluded.watermark)""",
        {**span, "now": now, "started": progress.started_at},
    )
