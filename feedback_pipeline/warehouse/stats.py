"""The numbers behind the asset checks and ``dagster/row_count``, scoped to the run's window so
they cost what the window holds, not the account's whole history."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb

from .model import utc


def check_stats(con: duckdb.DuckDBPyConnection, provider: str, account_id: str, first_day: date, last_day: date) -> dict[str, Any]:
    """Duplicate keys, rows whose collected date is not the UTC date of ``collected_at`` and rows
    in ``[first_day, last_day]``; the account's rejects (a small table with no collected date);
    the newest synced day of the account and when it was synced.

    ``total_rows`` is the rows of the window (the reject rate compares the account's rejects
    with it), kept under that name for the checks that read it."""
    args = {"p": provider, "a": account_id, "first": first_day, "last": last_day}
    rows_in_range, duplicates, bad_dates = con.execute(
        """WITH w AS (
            SELECT feedback_id, collected_at, collected_date FROM feedback
            WHERE provider = $p AND account_id = $a AND collected_date BETWEEN $first AND $last
        )
        SELECT (SELECT count(*) FROM w),
               (SELECT count(*) FROM (SELECT feedback_id FROM w GROUP BY feedback_id HAVING count(*) > 1)),
               (SELECT count(*) FROM w WHERE collected_at IS NULL
                    OR collected_date IS DISTINCT FROM CAST(timezone('UTC', collected_at) AS DATE))""",
        args,
    ).fetchone()
    rejects = con.execute("SELECT count(*) FROM feedback_rejects WHERE provider = $p AND account_id = $a", {"p": provider, "a": account_id}).fetchone()[0]
    newest = con.execute(
        "SELECT day, synced_at FROM pipeline_sync_days WHERE provider = $p AND account_id = $a ORDER BY day DESC LIMIT 1",
        {"p": provider, "a": account_id},
    ).fetchone()
    return {
        "duplicate_keys": duplicates,
        "bad_collected": bad_dates,
        "rows_in_range": rows_in_range,
        "total_rows": rows_in_range,
        "total_rejects": rejects,
        "newest_synced_day": newest[0] if newest else None,
        "newest_synced_at": utc(newest[1]) if newest else None,
    }
