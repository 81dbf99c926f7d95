"""Publishing: bring the idle snapshot file up to the working database, then switch readers to it.

Two snapshot files are used in turn (files.py). A publish

1. opens the idle file read-write (``ATTACH`` from the working connection) and, in one
   transaction, applies the keys changed since that file's own generation (delete, then insert
   the current rows), replaces the rejects of the accounts whose rejects changed and the small
   ``pipeline_*`` state tables, and stores the generation it reached; then CHECKPOINTs it, so it
   needs no WAL;
2. falls back to a full, compacted copy into a new file renamed over the idle name when the idle
   file cannot be updated in place: missing, an older schema, too old for the change log, held
   by a reader (DuckDB's file lock refuses the read-write ATTACH; the reader keeps its inode), or
   behind by more than ``FULL_COPY_SHARE`` of the table (a backfill);
3. switches ``FEEDBACK_DB`` to the idle file (atomic symlink replace, directory fsync) and only
   then records the generation as published and prunes the change log.

A kill at any point leaves ``FEEDBACK_DB`` on a complete snapshot; the next publish redoes what
was not recorded (applying a key twice gives the same row).
"""

from __future__ import annotations

import logging
import os
import time

import duckdb

from . import changes
from .files import WarehouseFiles, fsync_dir, fsync_file
from .migrations import migrate, schema_version
from .model import PublishResult

log = logging.getLogger(__name__)

STORAGE_VERSION = "v1.4.0"  # readable by every DuckDB client from 1.4 on (CONTRACT.md section 4)
ALIAS = "snapshot"
# Small state tables copied whole on every publish (operators read them in the snapshot). The
# erasure audit holds salted digests only; the salt and the suppression list stay in the
# working database.
STATE_TABLES = ("pipeline_sync_days", "pipeline_cursors", "pipeline_schema_version", "pipeline_erasures")
# Past this share of the table changed (and this many keys), a compacted full copy costs less
# than deleting and re-inserting the keys (measured: 40,000 keys applied to a 200,000-row file
# took as long as a full copy of it), and leaves no deleted rows behind.
FULL_COPY_SHARE = 0.10
FULL_COPY_MIN_KEYS = 10_000


def behind(con: duckdb.DuckDBPyConnection, files: WarehouseFiles) -> bool:
    """True when ``FEEDBACK_DB`` is missing or older than the working database. Decided in the
    working database alone, never by opening a snapshot (readers hold locks on those)."""
    generation, published, _ = changes.generations(con)
    return generation != published or files.live() is None


def publish_if_behind(con: duckdb.DuckDBPyConnection, files: WarehouseFiles) -> PublishResult | None:
    """Publish when behind (see ``behind``); None when the snapshot is already current, so a run
    that changed nothing copies nothing."""
    return publish(con, files) if behind(con, files) else None


def publish(con: duckdb.DuckDBPyConnection, files: WarehouseFiles) -> PublishResult:
    """Bring the idle snapshot to the working database's generation and switch readers to it
    (see the module docstring). The caller holds the writer lock, so nothing commits meanwhile."""
    started = time.monotonic()
    files.remove_litter()
    generation, _, since = changes.generations(con)
    target = files.idle()
    rows = _apply_changes(con, target, generation, since)
    mode = "incremental"
    if rows is None:
        rows, mode = _full_copy(con, files, target, generation), "full"
    files.switch(target)
    con.execute("BEGIN TRANSACTION")
    changes.record_snapshot(con, target.name.rsplit(".", 1)[1], generation, live=True)
    con.execute("COMMIT")
    return PublishResult(mode, rows, time.monotonic() - started)


def rebuild(con: duckdb.DuckDBPyConnection, files: WarehouseFiles) -> PublishResult:
    """Write BOTH snapshot files anew as full compacted copies (the idle one first, then switch
    readers to it, then the other). Why: after an erasure neither file may keep the person's rows,
    not even in free blocks an in-place apply leaves. A reader holding the old file keeps its
    inode until it closes; nobody can open it again."""
    started = time.monotonic()
    files.remove_litter()
    generation = changes.generations(con)[0]
    first = files.idle()
    second = next(s for s in files.snapshots if s != first)
    rows = _full_copy(con, files, first, generation)
    files.switch(first)
    con.execute("BEGIN TRANSACTION")
    changes.record_snapshot(con, first.name.rsplit(".", 1)[1], generation, live=True)
    con.execute("COMMIT")
    _full_copy(con, files, second, generation)
    con.execute("BEGIN TRANSACTION")
    changes.record_snapshot(con, second.name.rsplit(".", 1)[1], generation, live=False)
    con.execute("COMMIT")
    return PublishResult("full", rows, time.monotonic() - started)


def _apply_changes(con: duckdb.DuckDBPyConnection, target: os.PathLike[str], generation: int, since: int) -> int | None:
    """Apply the changes after the target's generation in place; rows applied, or None when the
    target must be rebuilt instead (see the module docstring)."""
    if not os.path.exists(target):
        return None
    try:
        con.execute(f"ATTACH $path AS {ALIAS}", {"path": str(target)})
    except duckdb.Error as exc:
        # Most often a reader holds the file ("Could not set lock on file"); a damaged file is
        # rebuilt the same way.
        log.info("snapshot %s cannot be updated in place (%s); writing a full copy", os.path.basename(target), str(exc).splitlines()[0])
        return None
    try:
        held = con.execute(f"SELECT generation FROM {ALIAS}.pipeline_publish").fetchone()[0]
        if schema_version(con, ALIAS) != schema_version(con) or held < since or held > generation or changes.needs_everything(con, held):
            return None
        changed = con.execute("SELECT count(DISTINCT (provider, account_id, feedback_id)) FROM pipeline_changes WHERE generation > ?", [held]).fetchone()[0]
        if changed > max(FULL_COPY_MIN_KEYS, FULL_COPY_SHARE * con.execute("SELECT count(*) FROM feedback").fetchone()[0]):
            return None
        con.execute("BEGIN TRANSACTION")
        try:
            rows = _apply(con, held, generation)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        con.execute(f"CHECKPOINT {ALIAS}")
        return rows
    except duckdb.CatalogException:
        return None  # not a snapshot of this pipeline (no pipeline_publish)
    finally:
        con.execute(f"DETACH {ALIAS}")


def _apply(con: duckdb.DuckDBPyConnection, held: int, generation: int) -> int:
    """The statements of an in-place apply, inside the caller's transaction."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _changed_keys AS
        SELECT DISTINCT provider, account_id, feedback_id FROM pipeline_changes
        WHERE generation > $held AND feedback_id IS NOT NULL""",
        {"held": held},
    )
    # The current rows of the changed keys, looked up within the dates they now have: the date
    # range prunes row groups by their zone maps (an hourly run's changes sit in its last days).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _changed_rows AS
        SELECT DISTINCT provider, account_id, feedback_id, collected_date FROM pipeline_changes
        WHERE generation > $held AND collected_date IS NOT NULL""",
        {"held": held},
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _changed_rejects AS
        SELECT DISTINCT provider, account_id FROM pipeline_changes
        WHERE generation > $held AND provider IS NOT NULL AND feedback_id IS NULL""",
        {"held": held},
    )
    keys = con.execute("SELECT count(*) FROM _changed_keys").fetchone()[0]
    if keys:
        con.execute(
            f"""DELETE FROM {ALIAS}.feedback AS f USING _changed_keys AS k
            WHERE f.provider = k.provider AND f.account_id = k.account_id AND f.feedback_id = k.feedback_id"""
        )
        first, last = con.execute("SELECT min(collected_date), max(collected_date) FROM _changed_rows").fetchone()
        if first is not None:
            con.execute(
                f"""INSERT INTO {ALIAS}.feedback BY NAME
                SELECT f.* FROM feedback f SEMI JOIN _changed_rows k USING (provider, account_id, feedback_id, collected_date)
                WHERE f.collected_date BETWEEN $first AND $last""",
                {"first": first, "last": last},
            )
    rejects = 0
    if con.execute("SELECT count(*) FROM _changed_rejects").fetchone()[0]:
        con.execute(f"DELETE FROM {ALIAS}.feedback_rejects AS r USING _changed_rejects AS c WHERE r.provider = c.provider AND r.account_id = c.account_id")
        rejects = con.execute(
            f"INSERT INTO {ALIAS}.feedback_rejects BY NAME SELECT r.* FROM feedback_rejects r SEMI JOIN _changed_rejects c USING (provider, account_id)"
        ).fetchone()[0]
    for table in STATE_TABLES:
        con.execute(f"DELETE FROM {ALIAS}.{table}")
        con.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM {table}")
    con.execute(f"UPDATE {ALIAS}.pipeline_publish SET generation = $g, published = $g, changes_since = $g", {"g": generation})
    return keys + rejects


def _full_copy(con: duckdb.DuckDBPyConnection, files: WarehouseFiles, target: os.PathLike[str], generation: int) -> int:
    """A compacted copy of what analysts see, built in a new file and renamed over ``target``
    (a reader holding the old ``target`` keeps reading the inode it has); rows copied."""
    tmp = files.temporary()
    con.execute(f"ATTACH $path AS {ALIAS} (STORAGE_VERSION '{STORAGE_VERSION}')", {"path": str(tmp)})
    try:
        schema = con.cursor()  # its own connection, so USE does not move the caller's
        try:
            schema.execute(f"USE {ALIAS}")
            migrate(schema, snapshot=True)
        finally:
            schema.close()
        con.execute("BEGIN TRANSACTION")
        try:
            rows = 0
            for table in ("feedback", "feedback_rejects"):
                rows += con.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM {table}").fetchone()[0]
            for table in STATE_TABLES:  # the migrations filled the new file's schema version
                con.execute(f"DELETE FROM {ALIAS}.{table}")
                con.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM {table}")
            con.execute(f"UPDATE {ALIAS}.pipeline_publish SET generation = $g, published = $g, changes_since = $g", {"g": generation})
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        con.execute(f"CHECKPOINT {ALIAS}")
    finally:
        con.execute(f"DETACH {ALIAS}")
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_dir(files.path.parent)
    return rows
