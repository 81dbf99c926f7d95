"""The commit of one batch: rows, rejects, the query's cursor and the change log, ONE transaction.

A commit runs as named stages on one DuckDB cursor, inside ``BEGIN ... COMMIT``:

1. ``stage``: the batch's rows of the run's days, as the Arrow table itself (deduplicated into a
   temporary table only when an id repeats), minus the records of erased people (``suppress``,
   only when an erasure is in force: ``erasure.py``);
2. ``classify``: each staged key against the stored row: insert, update, same, or stale (an older
   copy than the stored one). A probe reads only the key columns, within the batch's key range
   (zone maps skip row groups outside it); when no staged key is stored (a backfill's batches),
   every staged row is new and no other column of stored rows is read. Otherwise only stored
   rows whose key is staged are read whole;
3. ``delete_updated`` and ``insert_rows``: delete the updated keys, insert new and updated rows
   (bulk, from Arrow); ``relocate``: when the batch's stored rows lie scattered over the table,
   rewrite its unchanged ones side by side, so that the next re-read of the window reads a few
   vectors instead of the whole table (not logged: nothing analysts see changes);
4. ``rejects``: clear rejects of records now stored, upsert the batch's rejects (minus those
   whose payload names an erased person, and those of records the same batch stores: a page
   that holds a record twice, once unreadable and once whole, stores it and rejects nothing);
5. ``cursor``: store the resume point, or finish the query (sweep unseen rows, mark days synced);
6. ``log``: when anything analysts see changed, bump the generation and log the changed keys.

Every value that reaches SQL is a bound parameter or an Arrow table scanned by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ..erasure import suppressed_payload_sql, suppressed_rows_sql, suppression_salt
from ..schema import CONTENT_COLUMNS, ROW_COLUMNS
from . import changes, state
from .model import UTC, Progress, Scope, WriteCounts
from .transaction import transaction

# A batch's stored rows are rewritten side by side (relocate) when at least this many of them lie
# in more than RELOCATE_SPREAD times the vectors they need (see _scattered). Rows appended hour by
# hour share their vectors with the other accounts' appends of the same hours (five providers:
# about five times the vectors), which costs too little to rewrite; a backfill in the API's own
# order spreads a window over the whole table (FeedbackKit at 200,000 records: 30 times and more).
RELOCATE_MIN_ROWS = 256
RELOCATE_SPREAD = 8


def commit(con: duckdb.DuckDBPyConnection, scope: Scope, rows: pa.Table, rejects: pa.Table, progress: Progress) -> WriteCounts:
    """Write one batch and the cursor that covers it in ONE transaction (see the module docstring);
    any exception rolls all of it back."""
    now = datetime.now(UTC)
    who = {"p": scope.provider, "a": scope.account_id}
    counts = WriteCounts(rejected=rejects.num_rows)
    written: str | None = None
    try:
        with transaction(con):
            salt = suppression_salt(con)  # None (the usual case): no erasure in force, no filter
            if progress.sweep and progress.first:
                state.forget_seen_keys(con, scope.provider, scope.account_id, progress.query_key)
            staged = stage(con, scope, rows, counts)
            if staged and salt is not None:
                staged = suppress(con, staged, salt, counts)
            if staged:
                written = classify(con, staged, who, counts)
                delete_updated(con, counts)
                insert_rows(con, written, counts, now)
                relocate(con, counts)
                counts.rejects_cleared = clear_stored_rejects(con, staged, who)
                if progress.sweep:
                    con.execute(f"INSERT INTO pipeline_refresh_keys SELECT $p, $a, $k, feedback_id FROM {staged}", {**who, "k": progress.query_key})
            if rejects.num_rows:
                counts.rejects_written = write_rejects(con, who, rejects, now, counts, salt, staged)
            state.write_cursor(con, scope, progress, now)
            if progress.resume is None:
                if progress.sweep:
                    counts.deleted = sweep(con, scope, progress)
                state.finish_query(con, scope, progress, now)
            if counts.changed:
                log(con, scope, counts, written, now)
    finally:
        _unregister(con)
    return counts


def stage(con: duckdb.DuckDBPyConnection, scope: Scope, rows: pa.Table, counts: WriteCounts) -> str | None:
    """Expose the batch's rows of the run's days, one row per id; the relation's name, or None
    when the batch has no row of the run's days."""
    in_window = _in_scope(rows, scope)
    counts.out_of_window = rows.num_rows - in_window.num_rows
    if not in_window.num_rows:
        return None
    in_window = _json_typed(in_window)
    if pc.count_distinct(in_window.column("feedback_id")).as_py() == in_window.num_rows:
        con.register("_stage", in_window)  # DuckDB scans the Arrow batch in place (no copy)
        return "_stage"
    # The same id twice: keep the latest updated_at, else the last received.
    batch = in_window.append_column("_seq", pa.array(range(in_window.num_rows), type=pa.int64()))
    con.register("_batch", batch)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _deduped AS
        SELECT * EXCLUDE (_seq) FROM _batch
        QUALIFY row_number() OVER (PARTITION BY feedback_id ORDER BY updated_at DESC NULLS LAST, _seq DESC) = 1"""
    )
    con.unregister("_batch")
    return "_deduped"


def suppress(con: duckdb.DuckDBPyConnection, staged: str, salt: str, counts: WriteCounts) -> str | None:
    """Drop staged rows of erased people (``erasure.suppressed_rows_sql``) into ``_kept``;
    counted in ``counts.suppressed``. The relation to go on with, None when nothing is left."""
    kept, suppressed = _drop_where(con, staged, suppressed_rows_sql(staged), {"salt": salt}, "_kept")
    if not suppressed:
        return staged
    counts.suppressed += suppressed
    return kept if con.execute(f"SELECT count(*) FROM {kept}").fetchall()[0][0] else None


def classify(con: duckdb.DuckDBPyConnection, staged: str, who: dict[str, Any], counts: WriteCounts) -> str:
    """Count the staged keys as inserted, updated or unchanged (same, or stale: an older copy than
    the stored row); the relation of the rows to write (new and updated).

    A probe first finds the row ids of the staged keys already stored, reading only the key
    columns of stored rows in the batch's key range. None stored (every batch of a backfill): all
    staged rows are new and the relation is ``staged`` itself. Else ``_actions`` holds each staged
    key's action, from the stored rows fetched by row id (DuckDB reads only the row groups holding
    them: at 1M rows ~10 ms, against ~45 ms for a second scan of every column in the key range),
    and the row id of each stored copy for ``delete_updated`` and ``relocate`` (when those rows
    lie scattered, they are fetched into ``_existing`` first, for relocate to copy). Either way
    the relation carries the stored copy's date as ``_previous_date`` (NULL for a new key) for
    the change log."""
    size, low, high = con.execute(f"SELECT count(*), min(feedback_id), max(feedback_id) FROM {staged}").fetchone()
    keys = {**who, "low": low, "high": high}
    in_range = "provider = $p AND account_id = $a AND feedback_id BETWEEN $low AND $high"
    stored = [row for (row,) in con.execute(f"SELECT rowid FROM feedback WHERE {in_range} AND feedback_id IN (SELECT feedback_id FROM {staged})", keys).fetchall()]
    if not stored:
        counts.inserted = size
        return f"(SELECT *, NULL::DATE AS _previous_date FROM {staged})"
    fetch = "SELECT rowid AS stored_row, * FROM feedback WHERE rowid = ANY($stored)"
    scattered = _scattered(stored)
    if scattered:  # kept whole for relocate, which copies these rows without reading them again
        con.execute(f"CREATE OR REPLACE TEMP TABLE _existing AS {fetch}", {"stored": stored})
    distinct = " OR ".join(f"f.{c} IS DISTINCT FROM s.{c}" for c in CONTENT_COLUMNS)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _actions AS
        SELECT s.feedback_id, f.stored_row, f.collected_date AS stored_date,
            CASE WHEN f.feedback_id IS NULL THEN 'insert'
                 WHEN f.updated_at IS NOT NULL AND s.updated_at IS NOT NULL AND s.updated_at < f.updated_at THEN 'stale'
                 WHEN {distinct} THEN 'update'
                 ELSE 'same' END AS action
        FROM {staged} s LEFT JOIN {"_existing" if scattered else f"({fetch})"} f USING (feedback_id)""",
        {} if scattered else {"stored": stored},
    )
    tally = dict(con.execute("SELECT action, count(*) FROM _actions GROUP BY action").fetchall())
    counts.inserted = tally.get("insert", 0)
    counts.updated = tally.get("update", 0)
    counts.unchanged = tally.get("same", 0) + tally.get("stale", 0)
    counts.relocated = counts.unchanged if scattered else 0
    if scattered and not counts.relocated:
        con.execute("DROP TABLE _existing")
    return f"(SELECT s.*, a.stored_date AS _previous_date FROM {staged} s JOIN _actions a USING (feedback_id) WHERE a.action IN ('insert', 'update'))"


def _scattered(rowids: list[int]) -> bool:
    """Whether these stored rows of one batch lie scattered over the table: at least
    ``RELOCATE_MIN_ROWS`` of them, in more than ``RELOCATE_SPREAD`` times the 2,048-row vectors
    they would fill side by side. Fetching them reads every vector that holds one, so a re-read
    of a window whose rows the API returned in another order (FeedbackKit's array is in vote
    order, so its backfill stores every window's rows across the whole table) costs what the
    table holds, not what the window holds."""
    if len(rowids) < RELOCATE_MIN_ROWS:
        return False
    vectors = len({row >> 11 for row in rowids})
    return vectors > RELOCATE_SPREAD * (len(rowids) // 2048 + 1)


def relocate(con: duckdb.DuckDBPyConnection, counts: WriteCounts) -> None:
    """Rewrite the unchanged stored rows of a scattered batch (``counts.relocated``, from
    ``classify``) side by side at the end of the table: copied whole from ``_existing`` (their
    ``ingested_at`` included), then their old copies deleted by row id. The next re-read of the
    same window finds them in a few vectors. Nothing analysts see changes, so nothing is logged:
    the snapshot files keep their identical copies."""
    if counts.relocated:
        rows = _stored_rows(con, "same", "stale")
        con.execute("INSERT INTO feedback BY NAME SELECT * EXCLUDE (stored_row) FROM _existing WHERE stored_row = ANY($rows)", {"rows": rows})
        _delete_rows(con, rows)
        con.execute("DROP TABLE _existing")


def delete_updated(con: duckdb.DuckDBPyConnection, counts: WriteCounts) -> None:
    """Delete the stored copies of updated keys (``_actions``), by row id."""
    if counts.updated:
        _delete_rows(con, _stored_rows(con, "update"))


def _stored_rows(con: duckdb.DuckDBPyConnection, *actions: str) -> list[int]:
    """The row ids of the stored copies of the staged keys with these ``_actions`` actions."""
    return [row for (row,) in con.execute("SELECT stored_row FROM _actions WHERE action = ANY($actions)", {"actions": list(actions)}).fetchall()]


def _delete_rows(con: duckdb.DuckDBPyConnection, rows: list[int]) -> None:
    """Delete stored rows by row id (a constant list: DuckDB reads only the row groups holding them)."""
    con.execute("DELETE FROM feedback WHERE rowid = ANY($rows)", {"rows": rows})


def insert_rows(con: duckdb.DuckDBPyConnection, written: str, counts: WriteCounts, now: datetime) -> None:
    """Insert the new and updated rows (``written``, from ``classify``) in one bulk insert."""
    if counts.inserted or counts.updated:
        columns = ", ".join(f"s.{c}" for c in ROW_COLUMNS)
        con.execute(f"INSERT INTO feedback BY NAME SELECT {columns}, $now AS ingested_at FROM {written} s", {"now": now})


def clear_stored_rejects(con: duckdb.DuckDBPyConnection, staged: str, who: dict[str, Any]) -> int:
    """A record stored at last clears the rejects it had earlier."""
    return con.execute(
        f"DELETE FROM feedback_rejects WHERE provider = $p AND account_id = $a AND record_key IN (SELECT feedback_id FROM {staged})",
        who,
    ).fetchone()[0]


def write_rejects(
    con: duckdb.DuckDBPyConnection,
    who: dict[str, Any],
    rejects: pa.Table,
    now: datetime,
    counts: WriteCounts,
    salt: str | None = None,
    staged: str | None = None,
) -> int:
    """Upsert rejects by (record_key, reason); an identical reject is left as it is (its
    ``rejected_at`` included), so a rerun over the same bad record changes nothing. With
    ``salt`` (an erasure in force), a reject whose payload names an erased person is dropped and
    counted as suppressed, not rejected. A reject of a record the batch also stores (``staged``)
    is dropped and not counted: the contract keeps no reject beside a stored record."""
    con.register("_rejects", rejects)
    kept = "_rejects"
    if staged is not None:
        kept, stored = _drop_where(con, kept, f"record_key IN (SELECT feedback_id FROM {staged})", {}, "_rejects_unstored")
        counts.rejected -= stored
    if salt is not None:
        kept, suppressed = _drop_where(con, kept, suppressed_payload_sql(kept), {"salt": salt, "p": who["p"]}, "_rejects_kept")
        counts.suppressed += suppressed
        counts.rejected -= suppressed
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rej AS
        SELECT r.* FROM (SELECT * FROM {kept} QUALIFY row_number() OVER (PARTITION BY record_key, reason) = 1) r
        LEFT JOIN (SELECT * FROM feedback_rejects WHERE provider = $p AND account_id = $a) f
          ON f.record_key = r.record_key AND f.reason = r.reason
        WHERE f.record_key IS NULL OR f.payload::VARCHAR IS DISTINCT FROM r.payload OR f.feedback_id IS DISTINCT FROM r.feedback_id""",
        who,
    )
    con.unregister("_rejects")
    written = con.execute("SELECT count(*) FROM _rej").fetchone()[0]
    if written:
        con.execute(
            "DELETE FROM feedback_rejects WHERE provider = $p AND account_id = $a AND (record_key, reason) IN (SELECT record_key, reason FROM _rej)",
            who,
        )
        con.execute("INSERT INTO feedback_rejects BY NAME SELECT *, $now AS rejected_at FROM _rej", {"now": now})
    return written


def sweep(con: duckdb.DuckDBPyConnection, scope: Scope, progress: Progress) -> int:
    """Delete rows of the query's days that the finished full read did not return (kept in
    ``_swept`` for the change log)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _swept AS
        SELECT feedback_id, collected_date FROM feedback WHERE provider = $p AND account_id = $a
        AND collected_date BETWEEN $first AND $last
        AND feedback_id NOT IN (SELECT feedback_id FROM pipeline_refresh_keys
                                WHERE provider = $p AND account_id = $a AND query_key = $k)""",
        {"p": scope.provider, "a": scope.account_id, "k": progress.query_key, "first": progress.first_day, "last": progress.last_day},
    )
    return con.execute(
        "DELETE FROM feedback WHERE provider = $p AND account_id = $a AND feedback_id IN (SELECT feedback_id FROM _swept)",
        {"p": scope.provider, "a": scope.account_id},
    ).fetchone()[0]


def log(con: duckdb.DuckDBPyConnection, scope: Scope, counts: WriteCounts, written: str | None, now: datetime) -> None:
    """Bump the generation and log what this commit changed (see changes.py): the keys of the
    rows written (``written``, from ``classify``) with their ``ingested_at`` (``now``), the swept
    keys (or "everything" once the next publish copies everything: ``changes.key_log_state``), the
    account's rejects."""
    generation = changes.bump(con)
    written_keys = bool(written and (counts.inserted or counts.updated))
    if written_keys or counts.deleted:
        wanted, logged = changes.key_log_state(con)
        if not wanted:
            changes.mark_everything(con, generation)
        else:
            if written_keys:
                changes.log_keys(
                    con, generation, scope.provider, scope.account_id, f"SELECT feedback_id, collected_date, _previous_date AS previous_date FROM {written} s", ingested_at=now
                )
            if counts.deleted:
                changes.log_keys(
                    con, generation, scope.provider, scope.account_id, "SELECT feedback_id, NULL::DATE AS collected_date, collected_date AS previous_date FROM _swept"
                )
            if logged is not None:
                changes.collapse_if_large(con, generation, logged + counts.inserted + counts.updated + counts.deleted)
    if counts.rejects_written or counts.rejects_cleared:
        changes.log_rejects(con, generation, scope.provider, scope.account_id)


def _in_scope(rows: pa.Table, scope: Scope) -> pa.Table:
    """Rows whose collected date lies in the run's range: a run writes no row outside it."""
    if not rows.num_rows:
        return rows
    dates = rows.column("collected_date")
    bounds = pc.min_max(dates)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if dates.null_count == 0 and scope.first_day <= low and high <= scope.last_day:
        return rows  # the usual batch: filtering would copy every column for nothing
    mask = pc.and_(pc.greater_equal(dates, pa.scalar(scope.first_day)), pc.less_equal(dates, pa.scalar(scope.last_day)))
    return rows.filter(mask)


def _drop_where(con: duckdb.DuckDBPyConnection, relation: str, condition: str, params: dict[str, Any], into: str) -> tuple[str, int]:
    """``relation`` without its rows matching ``condition``: copied into temporary table ``into``
    only when some match (the usual batch matches none and is not copied). Returns the relation
    to go on with and how many rows were dropped."""
    dropped = con.execute(f"SELECT count(*) FROM {relation} WHERE {condition}", params).fetchall()[0][0]
    if not dropped:
        return relation, 0
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS SELECT * FROM {relation} WHERE NOT ({condition})", params)
    return into, dropped


def _json_typed(rows: pa.Table) -> pa.Table:
    """``attributes`` typed as Arrow's JSON extension, which DuckDB takes as its JSON type as it is.
    A plain string would be parsed again by DuckDB's VARCHAR-to-JSON cast (about a fifth of the insert's
    CPU), and the text is already valid JSON: ``jsonio.dumps_json`` wrote it. Zero-copy."""
    index = rows.schema.get_field_index("attributes")
    if index < 0 or isinstance(rows.schema.field(index).type, pa.JsonType):
        return rows
    column = rows.column(index)
    chunks = [pa.ExtensionArray.from_storage(pa.json_(), chunk) for chunk in column.chunks]
    return rows.set_column(index, pa.field("attributes", pa.json_()), pa.chunked_array(chunks, type=pa.json_()))


def _unregister(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("_stage", "_batch", "_rejects"):
        try:
            con.unregister(name)
        except Exception:  # noqa: BLE001 - not registered in this commit
            pass
