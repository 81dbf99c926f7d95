"""The numbers behind the asset checks and ``dagster/row_count``, scoped to the run's window so
they cost what the window holds, not the account's whole history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb


@dataclass(frozen=True)
class WindowStats:
    """One provider account's rows collected in the run's window, and what the checks count."""

    rows_in_window: int
    duplicate_keys: int
    bad_collected: int


def check_stats(con: duckdb.DuckDBPyConnection, provider: str, account_id: str | None, first_day: date, last_day: date) -> WindowStats:
    """Rows in ``[first_day, last_day]``, keys among them that appear twice, and rows whose
    collected date is not the UTC date of ``collected_at``; of every account of the provider
    when ``account_id`` is None (the checks of a provider a run did not sync in full)."""
    args: dict[str, object] = {"p": provider, "first": first_day, "last": last_day}
    # Two spellings rather than `($a IS NULL OR account_id = $a)`, so the one-account form keeps
    # a plain equality filter DuckDB can push into the scan.
    account = ""
    if account_id is not None:
        account, args["a"] = " AND account_id = $a", account_id
    rows, duplicates, bad_dates = con.execute(
        f"""WITH w AS (
            SELECT account_id, feedback_id, collected_at, collected_date FROM feedback
            WHERE provider = $p{account} AND collected_date BETWEEN $first AND $last
        )
        SELECT (SELECT count(*) FROM w),
               (SELECT count(*) FROM (SELECT 1 FROM w GROUP BY account_id, feedback_id HAVING count(*) > 1)),
               (SELECT count(*) FROM w WHERE collected_at IS NULL
                    OR collected_date IS DISTINCT FROM CAST(timezone('UTC', collected_at) AS DATE))""",
        args,
    ).fetchone()
    return WindowStats(rows_in_window=rows, duplicate_keys=duplicates, bad_collected=bad_dates)
