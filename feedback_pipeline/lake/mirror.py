"""Keep the Iceberg table ``feedback.feedback`` equal to the working database's ``feedback``.

Called once per run by the publish step, under the writer lock, with a connection to the working
database. Each call that finds changed rows commits ONE Iceberg snapshot (operation
``overwrite``) that removes the data files of the touched partitions and adds their rewritten
versions; its summary and the table's properties carry the working-database generation it
reflects (``feedback.generation``), which working database that generation counts in
(``feedback.source-database``) and the run id (``feedback.run-id``). The catalog commit is a
single atomic swap of the table's metadata pointer, so a kill at any moment leaves readers on the
previous snapshot, and the next call catches up from the generation the table records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import duckdb
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table, Transaction
from pyiceberg.table.update.snapshot import ExpireSnapshots

from . import changes, expiry
from .keys import KeyCache
from .rewrite import Partition, Rewrite, partition_files, rewrite
from .settings import LakeSettings
from .table import GENERATION_PROPERTY, PARTITION_SPEC, RUN_ID_PROPERTY, SCHEMA, SOURCE_PROPERTY, TABLE, TABLE_PROPERTIES, ensure_namespace, load_table, open_catalog


@dataclass(frozen=True)
class LakeCommit:
    """One committed snapshot (for run metadata and logs)."""

    snapshot_id: int
    generation: int
    run_id: str
    mode: str  # "incremental" | "full"
    keys_changed: int  # keys in the change log since the previous generation ("full": every row)
    partitions_rewritten: int
    rows_written: int  # rows in the added files (untouched rows of rewritten partitions included)
    files_removed: int
    files_added: int
    seconds: float


class LakeMirror:
    """The Iceberg copy described by ``settings`` (see the module docstring)."""

    def __init__(self, settings: LakeSettings):
        self.settings = settings
        self.catalog: SqlCatalog = open_catalog(settings)
        self.last_purge: expiry.Purge | None = None

    def table(self) -> Table | None:
        return load_table(self.catalog)

    def generation(self) -> int:
        """The working-database generation the table reflects; 0 when it does not exist yet."""
        table = self.table()
        return _generation(table) if table is not None else 0

    def apply(self, con: duckdb.DuckDBPyConnection, upto_generation: int, run_id: str) -> LakeCommit | None:
        """Bring the table to ``upto_generation`` (the working database's current generation:
        the caller holds the writer lock, so nothing commits meanwhile). Returns the snapshot it
        committed, or None when no row changed (then at most the recorded generation moves).
        After an erasure it also expires the older snapshots and deletes their files
        (expiry.py; what it did is in ``last_purge``)."""
        committed = self._apply(con, upto_generation, run_id)
        table = self.table()
        upto = expiry.pending(con, table) if table is not None else None
        if table is not None and upto is not None:
            self.last_purge = expiry.purge(table, upto)
        return committed

    def _apply(self, con: duckdb.DuckDBPyConnection, upto_generation: int, run_id: str) -> LakeCommit | None:
        started = time.monotonic()
        table = self.table()
        held = _generation(table) if table is not None else 0
        cur = con.cursor()  # its own connection: the temp tables below stay off the caller's
        try:
            marks = {GENERATION_PROPERTY: str(upto_generation), RUN_ID_PROPERTY: run_id, SOURCE_PROPERTY: changes.source_identity(cur)}
            # A table without the property predates it: its generation is trusted, and the next
            # commit records the source.
            same_source = table is None or table.properties.get(SOURCE_PROPERTY, marks[SOURCE_PROPERTY]) == marks[SOURCE_PROPERTY]
            if table is not None and same_source and upto_generation <= held:
                return None
            if not same_source or table is None or not changes.log_reaches(cur, held) or changes.needs_everything(cur, held, upto_generation):
                return self._rebuild(cur, table, marks, started)
            return self._incremental(cur, table, held, marks, started)
        finally:
            cur.close()

    # -- the two ways of committing ---------------------------------------------------------

    def _incremental(self, cur: duckdb.DuckDBPyConnection, table: Table, held: int, marks: dict[str, str], started: float) -> LakeCommit | None:
        keys = changes.stage_keys(cur, held, int(marks[GENERATION_PROPERTY]))
        if not keys.num_rows:
            _record_generation(table, marks)  # only rejects changed: nothing for the lake
            return None
        cache = KeyCache(self.settings.keys_path)
        try:
            snapshot = table.current_snapshot()
            if not cache.describes(str(table.metadata.table_uuid), snapshot.snapshot_id if snapshot else None):
                cache.replace(_key_columns(table), str(table.metadata.table_uuid), snapshot.snapshot_id if snapshot else None)
            locations = changes.current_locations(cur)
            new_sizes = _sizes(locations)
            touched = cache.partitions_of(keys) | set(new_sizes)
            old_files = partition_files(table, touched)
            result = rewrite(
                table.metadata, table.io, old_files, new_sizes,
                lambda group: changes.partition_rows(cur, group, changed_only=True),
                keys,
            )
            if not result.removed and not result.added:
                _record_generation(table, marks)  # keys added and removed again since `held`
                return None
            committed = _commit(table.transaction(), result, marks)
            cache.update(keys, locations, str(committed.metadata.table_uuid), committed.current_snapshot().snapshot_id)
        finally:
            cache.close()
        return _summary(committed, result, marks, "incremental", keys.num_rows, started)

    def _rebuild(self, cur: duckdb.DuckDBPyConnection, table: Table | None, marks: dict[str, str], started: float) -> LakeCommit | None:
        """Replace every data file with ``feedback`` as it is now, in one snapshot (first run,
        a change log that no longer reaches back to the table's generation, a reset, a table
        mirrored from another working database)."""
        plan = changes.all_partitions(cur)
        new_sizes = {(provider, day): rows for provider, day, rows in plan}
        if table is None:
            ensure_namespace(self.catalog)
            txn: Transaction = self.catalog.create_table_transaction(TABLE, SCHEMA, partition_spec=PARTITION_SPEC, properties=TABLE_PROPERTIES)
            io = txn._table.io  # the staged table's FileIO: the table is created by this commit
        else:
            txn, io = table.transaction(), table.io
        result = rewrite(
            txn.table_metadata, io, partition_files(table, None), new_sizes,
            lambda group: changes.partition_rows(cur, group, changed_only=False),
            None,
        )
        if not result.removed and not result.added:
            txn.set_properties(marks)
            txn.commit_transaction()  # an empty table (or an empty `feedback`): no snapshot
            return None
        committed = _commit(txn, result, marks)
        cache = KeyCache(self.settings.keys_path)
        try:
            cache.replace(
                cur.sql("SELECT provider, account_id, feedback_id, collected_date FROM feedback").to_arrow_reader(),
                str(committed.metadata.table_uuid),
                committed.current_snapshot().snapshot_id,
            )
        finally:
            cache.close()
        return _summary(committed, result, marks, "full", sum(new_sizes.values()), started)


def _commit(txn: Transaction, result: Rewrite, marks: dict[str, str]) -> Table:
    """ONE overwrite snapshot (removed and added files together) plus the table properties, in
    one catalog commit: readers see the previous snapshot or this one, never a part."""
    with txn.update_snapshot(snapshot_properties=marks).overwrite() as overwrite:
        for data_file in result.removed:
            overwrite.delete_data_file(data_file)
        for data_file in result.added:
            overwrite.append_data_file(data_file)
    txn.set_properties(marks)
    _expire_old_snapshots(txn)
    return txn.commit_transaction()


def _expire_old_snapshots(txn: Transaction) -> None:
    """Drop snapshots older than ``history.expire.max-snapshot-age-ms`` from the metadata in the
    same commit; otherwise every commit would copy the list of all runs ever. pyiceberg removes
    them from the metadata only: their unreferenced data files stay until an engine's
    ``remove_orphan_files`` (README). The current snapshot is a branch head, never expired."""
    age_ms = int(txn.table_metadata.properties.get("history.expire.max-snapshot-age-ms", TABLE_PROPERTIES["history.expire.max-snapshot-age-ms"]))
    cutoff = datetime.now(timezone.utc) - timedelta(milliseconds=age_ms)
    if any(s.timestamp_ms < cutoff.timestamp() * 1000 for s in txn.table_metadata.snapshots):
        ExpireSnapshots(txn).older_than(cutoff).commit()


def _record_generation(table: Table, marks: dict[str, str]) -> None:
    """Move the recorded generation without a snapshot (metadata only), so a later call does not
    replay a log that may have been pruned meanwhile."""
    with table.transaction() as txn:
        txn.set_properties(marks)


def _generation(table: Table) -> int:
    return int(table.properties.get(GENERATION_PROPERTY, "0"))


def _sizes(locations: pa.Table) -> dict[Partition, int]:
    sizes: dict[tuple[str, date], int] = {}
    for provider, day in zip(locations.column("provider").to_pylist(), locations.column("collected_date").to_pylist()):
        sizes[(provider, day)] = sizes.get((provider, day), 0) + 1
    return sizes


def _key_columns(table: Table) -> pa.RecordBatchReader:
    return table.scan(selected_fields=("provider", "account_id", "feedback_id", "collected_date")).to_arrow_batch_reader()


def _summary(table: Table, result: Rewrite, marks: dict[str, str], mode: str, keys: int, started: float) -> LakeCommit:
    return LakeCommit(
        snapshot_id=table.current_snapshot().snapshot_id,
        generation=int(marks[GENERATION_PROPERTY]),
        run_id=marks[RUN_ID_PROPERTY],
        mode=mode,
        keys_changed=keys,
        partitions_rewritten=result.partitions,
        rows_written=result.rows_written,
        files_removed=len(result.removed),
        files_added=len(result.added),
        seconds=round(time.monotonic() - started, 3),
    )
