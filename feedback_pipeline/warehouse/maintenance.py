"""Operator actions on the working database: forgetting a provider (``feedback-pipeline reset``),
erasing one person (``feedback-pipeline erase``), and rewriting the file compactly after that."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa

from .. import erasure
from . import changes
from .files import WarehouseFiles, fsync_dir, fsync_file
from .publish import STORAGE_VERSION
from .transaction import checkpoint, transaction

RESET_TABLES = ("feedback", "feedback_rejects", "pipeline_sync_days", "pipeline_cursors", "pipeline_refresh_keys")
COMPACT_ALIAS = "compacted"


def reset(con: duckdb.DuckDBPyConnection, provider: str, account_id: str | None = None) -> dict[str, int]:
    """Forget a provider (or one of its accounts): rows, rejects, sync state and cursors, in one
    transaction, with the removed keys logged for the next publish. Rows removed per table."""
    where = "provider = $p" + (" AND account_id = $a" if account_id is not None else "")
    args = {"p": provider, **({"a": account_id} if account_id is not None else {})}
    removed: dict[str, int] = {}
    with transaction(con):
        generation = changes.bump(con)
        con.execute(
            f"INSERT INTO pipeline_changes ({changes.LOG_COLUMNS}, previous_date) SELECT $gen, provider, account_id, feedback_id, NULL, collected_date FROM feedback WHERE {where}",
            {**args, "gen": generation},
        )
        con.execute(
            f"INSERT INTO pipeline_changes ({changes.LOG_COLUMNS}) SELECT DISTINCT $gen, provider, account_id, NULL, NULL FROM feedback_rejects WHERE {where}",
            {**args, "gen": generation},
        )
        for table in RESET_TABLES:
            removed[table] = con.execute(f"DELETE FROM {table} WHERE {where}", args).fetchone()[0]
    return removed


def erase(con: duckdb.DuckDBPyConnection, kind: str, value: str, provider: str | None) -> erasure.ErasureResult:
    """Erase one person (``erasure.erase``) and log what went, in ONE transaction: the removed
    keys as deleted rows, and the rejects of every account that lost some, so publishing and the
    Iceberg copy apply them. Always bumps the generation: the audit row is new either way."""
    with transaction(con):
        result = erasure.erase(con, kind=kind, value=value, provider=provider)
        generation = changes.bump(con)
        if result.removed_keys:
            keys = pa.table({name: pa.array([k[i] for k in result.removed_keys], pa.string()) for i, name in enumerate(("provider", "account_id", "feedback_id"))})
            con.register("_erased_keys", keys)
            try:
                con.execute(
                    f"INSERT INTO pipeline_changes ({changes.LOG_COLUMNS}) SELECT $gen, provider, account_id, feedback_id, NULL FROM _erased_keys", {"gen": generation}
                )
            finally:
                con.unregister("_erased_keys")
        for reject_provider, account_id in result.reject_accounts:
            changes.log_rejects(con, generation, reject_provider, account_id)
    return result


def compact_copy(con: duckdb.DuckDBPyConnection, files: WarehouseFiles) -> Path:
    """Copy the working database into a new file (``COPY FROM DATABASE``: tables with their
    constraints and column compression, views, rows as they are now) and return its path.

    Why: DuckDB marks deleted rows and frees their blocks, but neither overwrites them; after
    an erasure the person's bytes would stay in the file until reused. A fresh copy holds only
    live rows. Under the writer lock, outside any transaction."""
    files.remove_litter()
    target = files.temporary()
    source = con.execute("SELECT current_database()").fetchone()[0]
    checkpoint(con)
    con.execute(f"ATTACH $path AS {COMPACT_ALIAS} (STORAGE_VERSION '{STORAGE_VERSION}')", {"path": str(target)})
    try:
        con.execute(f'COPY FROM DATABASE "{source}" TO {COMPACT_ALIAS}')
    finally:
        con.execute(f"DETACH {COMPACT_ALIAS}")  # checkpoints the copy: it needs no WAL
    return target


def swap_in(copy: Path, files: WarehouseFiles) -> None:
    """Replace the working database (closed by the caller) by ``copy``, durably. The old WAL is
    removed first: after the clean close it holds nothing the copy lacks, and replayed against
    the new file it would corrupt it."""
    files.work_wal.unlink(missing_ok=True)
    fsync_file(copy)
    os.replace(copy, files.work)
    fsync_dir(files.path.parent)
