"""Operator actions on the working database: forgetting a provider (``feedback-pipeline reset``)."""

from __future__ import annotations

import duckdb

from . import changes

RESET_TABLES = ("feedback", "feedback_rejects", "pipeline_sync_days", "pipeline_cursors", "pipeline_refresh_keys")


def reset(con: duckdb.DuckDBPyConnection, provider: str, account_id: str | None = None) -> dict[str, int]:
    """Forget a provider (or one of its accounts): rows, rejects, sync state and cursors, in one
    transaction, with the removed keys logged for the next publish. Rows removed per table."""
    where = "provider = $p" + (" AND account_id = $a" if account_id is not None else "")
    args = {"p": provider, **({"a": account_id} if account_id is not None else {})}
    removed: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        generation = changes.bump(con)
        con.execute(f"INSERT INTO pipeline_changes SELECT $gen, provider, account_id, feedback_id, NULL FROM feedback WHERE {where}", {**args, "gen": generation})
        con.execute(
            f"INSERT INTO pipeline_changes SELECT DISTINCT $gen, provider, account_id, NULL, NULL FROM feedback_rejects WHERE {where}",
            {**args, "gen": generation},
        )
        for table in RESET_TABLES:
            removed[table] = con.execute(f"DELETE FROM {table} WHERE {where}", args).fetchone()[0]
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return removed
