"""Publishing: bring the idle snapshot file up to the working database, then switch readers to it.

Two snapshot files are used in turn (files.py). A publish writes the idle file the cheapest of
three ways, each ending in a complete, checkpointed file (no WAL) that records the generation it
reached:

1. **incremental**: open the idle file read-write (``ATTACH`` from the working connection) and, in
   one transaction, apply the keys changed since that file's own generation (delete, then insert
   the current rows), replace the rejects of the accounts whose rejects changed and the small
   ``pipeline_*`` state tables;
2. **copied**: when the idle file cannot be updated in place (missing, an older schema, too old
   for the change log, held by a reader: DuckDB's file lock refuses the read-write ATTACH, and
   the reader keeps its inode; or behind by more than ``changes.FULL_COPY_SHARE`` of the table), copy the
   live file's bytes into a new file, apply the changes since the live file's generation to it the
   same way, and rename it over the idle name. The live file is complete and checkpointed, and
   only writers (under the lock) ever write it, so its bytes are a consistent database; a byte
   copy costs a sequential read of the file, far less than re-inserting the table (1M rows:
   ~0.2 s against ~6 s);
3. **full**: a compacted copy of the working database into a new file renamed over the idle name,
   when there is no live file to copy, the schema changed, or the live file itself is too far
   behind (a backfill).

Then it switches ``FEEDBACK_DB`` to the idle file (atomic symlink replace, directory fsync) and
only then records the generation as published and prunes the change log. After a full copy the
other file, now idle, is as far behind as the live file was (too far to apply changes to), so it
becomes a byte copy of the new live file at once: the backfill's publish pays that copy, and the
first hourly run after it publishes incrementally instead of copying the whole file.

A kill at any point leaves ``FEEDBACK_DB`` on a complete snapshot; the next publish redoes what
was not recorded (applying a key twice gives the same row).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import duckdb

from . import changes, vacuum
from .files import WarehouseFiles, fsync_dir, fsync_file
from .migrations import migrate, schema_version
from .model import PublishResult
from .transaction import checkpoint, transaction

log = logging.getLogger(__name__)

STORAGE_VERSION = "v1.4.0"  # readable by every DuckDB client from 1.4 on (CONTRACT.md section 4)
ALIAS = "snapshot"
# Small state tables every snapshot holds (operators read them there), each with its primary key,
# or () for a table copied whole. The erasure audit holds salted digests only; the salt and the
# suppression list stay in the working database.
STATE_TABLES: dict[str, tuple[str, ...]] = {
    "pipeline_sync_days": ("provider", "account_id", "day"),
    "pipeline_cursors": ("provider", "account_id", "query_key"),
    "pipeline_schema_version": (),
    "pipeline_erasures": (),
}


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
    target, live = files.idle(), files.live()
    mode, rows = "incremental", _apply_changes(con, target, generation, since)
    if rows is None and live is not None:
        mode, rows = "copied", _patched_copy(con, files, live, target, generation, since)
    if rows is None:
        return _publish_full(con, files, target, generation, started)
    files.switch(target)
    with transaction(con):
        changes.record_snapshot(con, _file_id(target), generation, live=True)
    return PublishResult(mode, rows, time.monotonic() - started)


def rebuild(con: duckdb.DuckDBPyConnection, files: WarehouseFiles) -> PublishResult:
    """Write BOTH snapshot files anew (``_publish_full``). Why: after an erasure neither file may
    keep the person's rows, not even in free blocks an in-place apply leaves; a freshly compacted
    file has none, so neither has its copy. A reader holding an old file keeps its inode until it
    closes; nobody can open it again."""
    started = time.monotonic()
    files.remove_litter()
    return _publish_full(con, files, files.idle(), changes.generations(con)[0], started)


def _publish_full(con: duckdb.DuckDBPyConnection, files: WarehouseFiles, target: Path, generation: int, started: float) -> PublishResult:
    """A full compacted copy into ``target``, readers switched to it, then a byte copy of it over
    the other snapshot file, both recorded at ``generation``: the other file was as far behind as
    the old live one, so the next publish applies only its own changes (module docstring)."""
    rows = _full_copy(con, files, target, generation)
    files.switch(target)
    other = next(s for s in files.snapshots if s != target)
    # Recorded together once both are written: if the copy fails, the publish is redone from the
    # other file's older generation, which is still what that file holds.
    _replace_with(files, other, _byte_copy(files, target))
    vacuum.copy_bound(con, _file_id(target), _file_id(other))
    with transaction(con):
        changes.record_snapshot(con, _file_id(other), generation, live=False)
        changes.record_snapshot(con, _file_id(target), generation, live=True)
    return PublishResult("full", rows, time.monotonic() - started)


def _file_id(snapshot: Path) -> str:
    """``a`` or ``b``: the snapshot file's row in ``pipeline_snapshot_files``."""
    return snapshot.name.rsplit(".", 1)[1]


def _apply_changes(con: duckdb.DuckDBPyConnection, target: Path, generation: int, since: int, bound_file: str | None = None) -> int | None:
    """Apply the changes after the target's generation in place; rows applied, or None when the
    target cannot serve as a base (see the module docstring). ``bound_file``: the snapshot file
    whose row-group bound (vacuum.py) the target's checkpoint keeps, when the target is a copy
    that will replace it."""
    if not os.path.exists(target):
        return None
    try:
        con.execute(f"ATTACH $path AS {ALIAS}", {"path": str(target)})
    except duckdb.Error as exc:
        # Most often a reader holds the file ("Could not set lock on file"); a damaged file is
        # rebuilt the same way.
        log.info("snapshot %s cannot be updated in place (%s)", target.name, str(exc).splitlines()[0])
        return None
    try:
        held = con.execute(f"SELECT generation FROM {ALIAS}.pipeline_publish").fetchone()[0]
        if schema_version(con, ALIAS) != schema_version(con) or held > generation or not _worth_applying(con, held, since):
            return None
        with transaction(con):
            rows = _apply(con, held, generation)
        checkpoint(con, database=ALIAS, file=bound_file or _file_id(target))
        return rows
    except duckdb.CatalogException:
        return None  # not a snapshot of this pipeline (no pipeline_publish)
    finally:
        con.execute(f"DETACH {ALIAS}")


def _patched_copy(
    con: duckdb.DuckDBPyConnection, files: WarehouseFiles, live: Path, target: Path, generation: int, since: int
) -> int | None:
    """Copy the live file's bytes into a new file, apply the changes since its generation there and
    rename it over ``target``; rows applied, or None when the live file is no base either (an
    older schema, a change that asks for everything, too many changes since it)."""
    recorded = con.execute("SELECT generation FROM pipeline_snapshot_files WHERE file = ?", [_file_id(live)]).fetchone()
    if recorded is not None and not _worth_applying(con, recorded[0], since):
        return None  # decided before copying: a backfill's publish goes straight to a full copy
    copy = _byte_copy(files, live)
    replaced = False
    try:
        vacuum.copy_bound(con, _file_id(live), _file_id(target))  # the copy's, once it replaces target
        rows = _apply_changes(con, copy, generation, since, bound_file=_file_id(target))
        if rows is not None:
            _replace_with(files, target, copy)
            replaced = True
        return rows
    finally:
        if not replaced:
            vacuum.forget(con, _file_id(target))  # target is as it was: its row groups get counted anew
        copy.unlink(missing_ok=True)


def _worth_applying(con: duckdb.DuckDBPyConnection, held: int, since: int) -> bool:
    """Can a file at generation ``held`` be brought up to date by applying the logged changes, and
    is that cheaper than a full copy? No when the log no longer reaches back to it, a change asks
    for everything, or more than ``changes.FULL_COPY_SHARE`` of the table changed since."""
    if held < since or changes.needs_everything(con, held):
        return False
    changed = con.execute("SELECT count(DISTINCT (provider, account_id, feedback_id)) FROM pipeline_changes WHERE generation > ?", [held]).fetchone()[0]
    return not changes.full_copy_cheaper(con, changed)


def _byte_copy(files: WarehouseFiles, source: Path) -> Path:
    """A byte copy of a complete snapshot file under a temporary name (the kernel copies it:
    ``copy_file_range``/``sendfile``, no pass through Python's memory)."""
    copy = files.temporary()
    shutil.copyfile(source, copy)
    return copy


def _replace_with(files: WarehouseFiles, target: Path, built: Path) -> None:
    """Make a file built under a temporary name durable, then rename it over ``target`` (a reader
    holding the old ``target`` keeps reading the inode it has)."""
    fsync_file(built)
    os.replace(built, target)
    fsync_dir(files.path.parent)


def _apply(con: duckdb.DuckDBPyConnection, held: int, generation: int) -> int:
    """The statements of an in-place apply, inside the caller's transaction."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _changed_keys AS
        SELECT DISTINCT provider, account_id, feedback_id FROM pipeline_changes
        WHERE generation > $held AND feedback_id IS NOT NULL""",
        {"held": held},
    )
    # The current rows of the changed keys, looked up within the dates they now have and among
    # the rows written since this file's generation: zone maps on both prune row groups.
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
        # The file's copies of the changed keys sit on the dates the log located them on: DuckDB
        # then reads the key columns only of rows on those dates (an hourly run's: a week of the
        # table), not every key of the file (210 keys in a 1M-row file: 10.5 ms against 22.6 ms).
        located = changes.located_dates(con, held)
        on_dates = " AND f.collected_date BETWEEN $old_first AND $old_last" if located else ""
        con.execute(
            f"""DELETE FROM {ALIAS}.feedback AS f USING _changed_keys AS k
            WHERE f.provider = k.provider AND f.account_id = k.account_id AND f.feedback_id = k.feedback_id{on_dates}""",
            {"old_first": located[0], "old_last": located[1]} if located else {},
        )
        first, last = con.execute("SELECT min(collected_date), max(collected_date) FROM _changed_rows").fetchone()
        if first is not None:
            since = changes.written_since(con, held)
            con.execute(
                f"""INSERT INTO {ALIAS}.feedback BY NAME
                SELECT f.* FROM feedback f SEMI JOIN _changed_rows k USING (provider, account_id, feedback_id, collected_date)
                WHERE f.collected_date BETWEEN $first AND $last{" AND f.ingested_at >= $since" if since is not None else ""}""",
                {"first": first, "last": last, **({"since": since} if since is not None else {})},
            )
    rejects = 0
    if con.execute("SELECT count(*) FROM _changed_rejects").fetchone()[0]:
        con.execute(f"DELETE FROM {ALIAS}.feedback_rejects AS r USING _changed_rejects AS c WHERE r.provider = c.provider AND r.account_id = c.account_id")
        rejects = con.execute(
            f"INSERT INTO {ALIAS}.feedback_rejects BY NAME SELECT r.* FROM feedback_rejects r SEMI JOIN _changed_rejects c USING (provider, account_id)"
        ).fetchone()[0]
    for table, key in STATE_TABLES.items():
        _apply_state(con, table, key)
    con.execute(f"UPDATE {ALIAS}.pipeline_publish SET generation = $g, published = $g, changes_since = $g", {"g": generation})
    return keys + rejects


def _apply_state(con: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...]) -> None:
    """Make the snapshot's ``table`` equal the working database's. A keyed table gets only the
    rows that differ: ``pipeline_sync_days`` holds a row per provider, account and day of the
    history (9,125 at five years), and rewriting it whole made every incremental publish's
    transaction and checkpoint grow with the history, not with the run. Rows whose key is gone
    or whose values changed are deleted, then their new versions inserted."""
    if not key:
        con.execute(f"DELETE FROM {ALIAS}.{table}")
        con.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM {table}")
        return
    columns = ", ".join(key)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _state_changed AS SELECT * FROM {table} EXCEPT SELECT * FROM {ALIAS}.{table}")
    con.execute(
        f"""DELETE FROM {ALIAS}.{table} WHERE ({columns}) NOT IN (SELECT {columns} FROM {table})
        OR ({columns}) IN (SELECT {columns} FROM _state_changed)"""
    )
    con.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM _state_changed")


def _full_copy(con: duckdb.DuckDBPyConnection, files: WarehouseFiles, target: Path, generation: int) -> int:
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
        copier = con.cursor()  # its own connection, so the setting below stays on it
        try:
            # Nothing analysts read depends on the rows' physical order; without keeping the
            # insertion order, DuckDB writes the copy's row groups on both threads (the bench's
            # 1M working file: 6.2 -> 4.1 s).
            copier.execute("SET SESSION preserve_insertion_order = false")
            with transaction(copier):
                rows = 0
                for table in ("feedback", "feedback_rejects"):
                    rows += copier.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM {table}").fetchone()[0]
                for table in STATE_TABLES:  # the migrations filled the new file's schema version
                    copier.execute(f"DELETE FROM {ALIAS}.{table}")
                    copier.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM {table}")
                copier.execute(f"UPDATE {ALIAS}.pipeline_publish SET generation = $g, published = $g, changes_since = $g", {"g": generation})
        finally:
            copier.close()
        con.execute(f"CHECKPOINT {ALIAS}")
        vacuum.record(con, _file_id(target), vacuum.extra_row_groups(con, ALIAS) or 0, generation)
    finally:
        con.execute(f"DETACH {ALIAS}")
    _replace_with(files, target, tmp)
    return rows
