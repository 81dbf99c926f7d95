"""The publish generation and the change log that lets publishing copy only what changed.

``pipeline_publish.generation`` counts the committed transactions that changed what analysts see;
each such transaction bumps it and, in the same transaction, logs what it changed in
``pipeline_changes`` at the new generation:

* ``(provider, account_id, feedback_id, collected_date, ingested_at, previous_date)``: that key's
  row was inserted or updated and now has that collected date and ``ingested_at`` (NULL, NULL:
  the row was deleted); publishing reads the current rows back within the changed dates and from
  ``written_since`` on, so it scans the row groups the changes were appended to, not the table.
  ``previous_date`` is the collected date of the stored row the change replaced or deleted, NULL
  when the key was new; a delete that does not know it (an erasure) logs NULL in both dates.
  With every old row located, a publish deletes a snapshot's old copies only among the rows of
  the logged dates (``located_dates``), not by scanning every key of the snapshot;
* ``(provider, account_id, NULL, NULL)``: that account's rejects changed;
* ``(NULL, NULL, NULL, NULL)``: anything may have changed (schema migration, reset): copy everything.

The log holds every change after ``pipeline_publish.changes_since``; a snapshot file at generation
``g >= changes_since`` is brought up to date by applying the keys logged after ``g``. Pruning
keeps the log from growing: entries at or below both snapshot files' generations (and the Iceberg
copy's, when there is one) are no longer needed by any of them.

Keys are logged only while a reader will read them. Once both snapshot files are due for a full
copy (an everything entry after the newer file's generation: a migration, a reset, or a change
past ``FULL_COPY_SHARE`` of the table, see ``collapse_if_large``) and no Iceberg copy reads the
log, a commit logs one everything entry at its generation instead of its keys, until the next
publish: a backfill's log stays a few batches long. Every change is still logged at its
generation, as keys or as everything, so a reader the working database did not record (a
publish or a lake feed that failed before recording) is rebuilt, never left stale.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

# Past this share of the table changed (and this many keys), a compacted full copy costs less
# than deleting and re-inserting the keys (measured: 40,000 keys applied to a 200,000-row file
# took as long as a full copy of it), and leaves no deleted rows behind.
FULL_COPY_SHARE = 0.10
FULL_COPY_MIN_KEYS = 10_000


def full_copy_cheaper(con: duckdb.DuckDBPyConnection, changed: int) -> bool:
    """True when ``changed`` keys are more than a snapshot file is worth patching with (the table
    is counted only past ``FULL_COPY_MIN_KEYS``: an hourly run's commits never count it)."""
    if changed <= FULL_COPY_MIN_KEYS:
        return False
    return changed > FULL_COPY_SHARE * con.execute("SELECT count(*) FROM feedback").fetchone()[0]


def bump(con: duckdb.DuckDBPyConnection) -> int:
    """Mark the snapshot behind, inside the transaction that changes what analysts see (so the
    change and the mark commit together); returns the new generation to log the change at."""
    return con.execute("UPDATE pipeline_publish SET generation = generation + 1 RETURNING generation").fetchone()[0]


# The columns every schema version since migration 4 has; ``ingested_at`` (migration 9) is
# named only where it is written, so these inserts also run while older migrations apply.
LOG_COLUMNS = "generation, provider, account_id, feedback_id, collected_date"


def log_keys(
    con: duckdb.DuckDBPyConnection,
    generation: int,
    provider: str,
    account_id: str,
    keys_sql: str,
    params: dict[str, Any] | None = None,
    *,
    ingested_at: datetime | None = None,
) -> None:
    """Log the keys that ``keys_sql`` returns (columns ``feedback_id``, ``collected_date``: the
    row's date now, NULL for a deleted row; ``previous_date``: the replaced or deleted row's
    date, NULL for a new key); ``ingested_at`` is the written rows' (None for deleted rows)."""
    con.execute(
        f"INSERT INTO pipeline_changes ({LOG_COLUMNS}, ingested_at, previous_date) "
        f"SELECT $gen, $p_log, $a_log, feedback_id, collected_date, $at_log, previous_date FROM ({keys_sql})",
        {**(params or {}), "gen": generation, "p_log": provider, "a_log": account_id, "at_log": ingested_at},
    )


def key_log_state(con: duckdb.DuckDBPyConnection) -> tuple[bool, int | None]:
    """Whether a commit's changed keys are worth logging, and how many keys were logged since the
    newer snapshot file's generation (None when an Iceberg copy reads the log: then every key is
    logged, whatever a publish does), in one statement: every statement of a commit waits for the
    interpreter lock again in a busy run. Keys are not worth logging once both snapshot files are
    due for a full copy (an everything entry after the newer file's generation) and no Iceberg
    copy reads the log: no publish would read them."""
    lake, everything, logged = con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM pipeline_snapshot_files WHERE file = $lake),
            EXISTS (SELECT 1 FROM pipeline_changes WHERE provider IS NULL AND generation > ({_NEWER_FILE})),
            (SELECT count(*) FROM pipeline_changes WHERE feedback_id IS NOT NULL AND generation > ({_NEWER_FILE}))""",
        {"lake": LAKE},
    ).fetchone()
    if lake:
        return True, None
    return not everything, logged


def collapse_if_large(con: duckdb.DuckDBPyConnection, generation: int, logged: int) -> None:
    """After logging keys at ``generation`` (``logged``: the log's keys since the newer snapshot
    file, this commit's included, a key logged twice counted twice): when they make a full copy
    of that file cheaper (``full_copy_cheaper``, the publish's own rule, on the distinct keys),
    log everything, so the next commits log no keys (``key_log_state``). Only as the publish would
    decide: rows written later are changes too, so the share can only grow until it runs."""
    if not full_copy_cheaper(con, logged):
        return
    distinct = con.execute(
        f"SELECT count(DISTINCT (provider, account_id, feedback_id)) FROM pipeline_changes WHERE feedback_id IS NOT NULL AND generation > ({_NEWER_FILE})"
    ).fetchone()[0]
    if full_copy_cheaper(con, distinct):
        mark_everything(con, generation)


def log_rejects(con: duckdb.DuckDBPyConnection, generation: int, provider: str, account_id: str) -> None:
    con.execute(f"INSERT INTO pipeline_changes ({LOG_COLUMNS}) VALUES (?, ?, ?, NULL, NULL)", [generation, provider, account_id])


def log_everything(con: duckdb.DuckDBPyConnection, generation: int) -> None:
    """Ask every reader behind ``generation`` for a full copy (migrations: the log may not exist yet)."""
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pipeline_changes' AND database_name = current_database()").fetchone()[0]:
        mark_everything(con, generation)


def mark_everything(con: duckdb.DuckDBPyConnection, generation: int) -> None:
    """Log that anything may have changed at ``generation``: every reader behind it copies
    everything. A commit that logs no keys logs this, so whichever reader a key was left out
    for (a snapshot file or an Iceberg table the working database never recorded) is rebuilt."""
    con.execute(f"INSERT INTO pipeline_changes ({LOG_COLUMNS}) VALUES (?, NULL, NULL, NULL, NULL)", [generation])


def written_since(con: duckdb.DuckDBPyConnection, held: int) -> datetime | None:
    """The earliest ``ingested_at`` of the rows written after generation ``held``: every current
    row of a key changed since then was written at or after it (a commit stamps its rows and its
    log entries with the same instant), so ``ingested_at >= written_since`` lets DuckDB skip, by
    their zone maps, the row groups written before (an hourly run's rows sit in the table's last
    row groups; a backfill's row groups each hold every date). None when a logged row has no
    instant (logged before migration 9): then no bound is safe."""
    return con.execute(
        "SELECT CASE WHEN count(*) = count(ingested_at) THEN min(ingested_at) END FROM pipeline_changes WHERE generation > ? AND collected_date IS NOT NULL",
        [held],
    ).fetchone()[0]


def located_dates(con: duckdb.DuckDBPyConnection, held: int) -> tuple[Any, Any] | None:
    """The first and last collected date of every row a file at generation ``held`` may hold for
    the keys changed since, or None when some change does not say where its old row was.

    Why it holds: the first change of a key after ``held`` replaced or deleted the row the file
    holds, and logged that row's date as ``previous_date`` (or the key was new then, and the file
    has no row of it). A delete that logged no date at all (NULL, NULL) leaves the row unlocated.
    Entries logged before migration 10 never reach this: that migration asked for a full copy."""
    unlocated, first, last = con.execute(
        """SELECT count(*) FILTER (WHERE collected_date IS NULL AND previous_date IS NULL),
                  least(min(collected_date), min(previous_date)), greatest(max(collected_date), max(previous_date))
        FROM pipeline_changes WHERE generation > ? AND feedback_id IS NOT NULL""",
        [held],
    ).fetchone()
    if unlocated or first is None:
        return None
    return first, last


def generations(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """(generation, published, changes_since) of the working database."""
    return con.execute("SELECT generation, published, coalesce(changes_since, generation) FROM pipeline_publish").fetchone()


def needs_everything(con: duckdb.DuckDBPyConnection, since: int) -> bool:
    """True when a change after ``since`` asks for a full copy."""
    return con.execute("SELECT count(*) > 0 FROM pipeline_changes WHERE generation > ? AND provider IS NULL", [since]).fetchone()[0]


LAKE = "lake"  # the Iceberg copy's row in pipeline_snapshot_files
# The newer snapshot file's generation (0 before any is recorded).
_NEWER_FILE = "SELECT coalesce(max(generation), 0) FROM pipeline_snapshot_files WHERE file IN ('a', 'b')"


def record_reader(con: duckdb.DuckDBPyConnection, reader: str, generation: int) -> None:
    """Remember that ``reader`` (the Iceberg copy) holds every change up to ``generation``, so
    pruning keeps what it has not read yet. Call inside a transaction."""
    con.execute(
        "INSERT INTO pipeline_snapshot_files VALUES (?, ?) ON CONFLICT (file) DO UPDATE SET generation = excluded.generation",
        [reader, generation],
    )


def record_snapshot(con: duckdb.DuckDBPyConnection, file: str, generation: int, *, live: bool) -> None:
    """After a snapshot file reached ``generation``: remember it, mark it published when it is
    the live one, and prune what neither file needs any more. Call inside a transaction."""
    con.execute(
        "INSERT INTO pipeline_snapshot_files VALUES (?, ?) ON CONFLICT (file) DO UPDATE SET generation = excluded.generation",
        [file, generation],
    )
    if live:
        con.execute("UPDATE pipeline_publish SET published = ?", [generation])
    # A file never recorded counts as generation 0, so nothing it may need is pruned before it
    # exists; the Iceberg copy counts only once it has been fed (a warehouse without one keeps
    # nothing for it).
    floor = con.execute(
        "SELECT least(coalesce((SELECT generation FROM pipeline_snapshot_files WHERE file = 'a'), 0), "
        "coalesce((SELECT generation FROM pipeline_snapshot_files WHERE file = 'b'), 0), "
        "coalesce((SELECT generation FROM pipeline_snapshot_files WHERE file = ?), 9223372036854775807))",
        [LAKE],
    ).fetchone()[0]
    con.execute("DELETE FROM pipeline_changes WHERE generation <= ?", [floor])
    con.execute("UPDATE pipeline_publish SET changes_since = greatest(coalesce(changes_since, 0), ?)", [floor])
