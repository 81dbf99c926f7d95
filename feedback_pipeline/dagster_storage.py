"""Dagster's SQLite event log, with the per-event overhead cut: the storage ``make ui``, the
``dagster`` CLI and the daemon use through ``dagster.yaml`` (``event_log_storage``).

Why: Dagster's ``SqliteEventLogStorage`` (1.13) builds and disposes a SQLAlchemy engine for every
connection, so each event pays an engine (and SQL compilation: the compiled-statement cache lives
on the engine) twice, once for the run's database and once for the cross-run index; it stores a
batch of events one by one; it asks SQLite for the schema (``has_table``, the asset table's
columns) on every asset event; and each commit syncs the WAL to disk. A 365-partition run of five
assets writes 1,825 materialization events, one per asset and partition, handed over in batches
(``DAGSTER_EVENT_BATCH_SIZE``, see :mod:`feedback_pipeline.dagster_env`).

This subclass keeps Dagster's files, schema and semantics and changes only how they are written:

* one engine and one pooled connection per database file, kept (a few recently used run files,
  the index always): closing a file's last connection checkpoints its WAL, a sync per event;
* SQLite's ``synchronous=NORMAL``: in WAL mode a commit survives a crash of any process; only an
  operating-system crash or power loss can drop the last events (SQLite's documented trade-off);
* a batch of asset events of one run (a range's materializations or planned events) in ONE
  transaction per file, and the asset's latest-event row written once per asset and event type
  (the last event of the batch: each write of that row replaces the previous one);
* the schema answers remembered once positive (tables and columns are only ever added);
* a new run's database copied from a template (an empty run database Dagster's own code created
  and stamped, kept beside the run files once per Dagster version) instead of created and stamped
  again: Dagster reads its migration scripts twice to create one (alembic's revision check, then
  the stamp), 44-54 ms of CPU in every run, against 1.3-1.6 ms with the copy.

Every other event (run, step, check events) is stored as Dagster stores it, through the kept engines.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as db
from dagster import Field, StringSource
from dagster import __version__ as DAGSTER_VERSION
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy.pool import NullPool, QueuePool

# Run databases whose engines are kept besides the index's: a run worker writes one, the
# webserver reads a few at a time; older ones are disposed (an engine holds no connection here).
KEPT_RUN_ENGINES = 16


def default_base_dir() -> str:
    """Where Dagster's default SQLite storage keeps event logs: ``$DAGSTER_HOME/history/runs``,
    so switching an existing instance to this class keeps its history."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise ValueError("FastSqliteEventLogStorage needs base_dir in its config or DAGSTER_HOME set")
    return os.path.join(os.path.abspath(os.path.expanduser(home)), "history", "runs")


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Dagster's storage switches its files to WAL mode when it creates them; NORMAL is SQLite's
    # recommended durability for WAL (no sync per commit, only at checkpoints).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class FastSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with kept engines, batched asset-event writes and cached schema
    answers (module docstring). Configured in ``dagster.yaml``::

        event_log_storage:
          module: feedback_pipeline.dagster_storage
          class: FastSqliteEventLogStorage
    """

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Any] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._known_tables: set[str] = set()
        self._asset_key_index_cols = False
        _STORAGES.add(self)
        super().__init__(base_dir or default_base_dir(), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> "FastSqliteEventLogStorage":  # type: ignore[override]
        return cls(inst_data=inst_data, **dict(config_value or {}))

    def _engine(self, shard: str) -> Any:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            # One pooled connection per file: closing a file's last connection checkpoints its WAL
            # (a sync), which Dagster's own storage pays on every event.
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=8,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            db.event.listen(engine, "connect", _set_pragmas)
            self._engines[shard] = engine
            runs = [k for k in self._engines if k != INDEX_SHARD_NAME]
            for old in runs[: max(0, len(runs) - KEPT_RUN_ENGINES)]:
                self._engines.pop(old).dispose()
            return engine

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._create_from_template(shard):
                    self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def template_path(self) -> str:
        """Where the empty run database of this Dagster version lives: beside the run files, under
        a name Dagster never takes for a run's (it lists ``*.db``)."""
        return os.path.join(self._base_dir, f".run-template-{DAGSTER_VERSION}.sqlite")

    def _create_from_template(self, shard: str) -> bool:
        """Create run database ``shard`` as a copy of the template; False when it was not (it
        already exists, made by another process, or the copy failed): Dagster's own ``_initdb``
        then checks or creates it, as for any file."""
        path = self.path_for_shard(shard)
        if os.path.exists(path):
            return False
        partial = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            shutil.copyfile(self._template(), partial)
            os.link(partial, path)  # never over a file another process created meanwhile
        except OSError:  # it exists now, or this file system has no hard links: Dagster's way
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        return True

    def _template(self) -> str:
        """The template, made once by Dagster's own ``_initdb`` (tables, WAL mode, alembic stamp)
        and published by an atomic rename, so a reader never sees half of one."""
        template = self.template_path()
        if not os.path.exists(template):
            os.makedirs(self._base_dir, exist_ok=True)
            partial = f"{template}.{uuid.uuid4().hex}.partial"
            engine = create_engine(f"sqlite:///{partial}", poolclass=NullPool)
            try:
                self._initdb(engine)
                with engine.connect() as conn:  # fold the WAL into the file: the copy is the file alone
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                # Every later run copies this file and skips Dagster's own check of the copy, so it
                # reaches the disk before it takes its name: a power loss never leaves a torn one.
                with open(partial, "rb") as written:
                    os.fsync(written.fileno())
                os.replace(partial, template)
                for stale in glob.glob(os.path.join(self._base_dir, ".run-template-*.sqlite")):  # other Dagster versions'
                    if stale != template:
                        with contextlib.suppress(OSError):
                            os.unlink(stale)
            finally:
                engine.dispose()
                for leftover in (partial, f"{partial}-wal", f"{partial}-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
        return template

    def has_table(self, table_name: str) -> bool:
        if table_name in self._known_tables:
            return True
        with self._engine(INDEX_SHARD_NAME).connect() as conn:
            found = bool(conn.dialect.has_table(conn, table_name))
        if found:
            self._known_tables.add(table_name)
        return found

    def _has_asset_key_index_cols_on_connection(self, conn: Any) -> bool:
        if not self._asset_key_index_cols:
            self._asset_key_index_cols = super()._has_asset_key_index_cols_on_connection(conn)
        return self._asset_key_index_cols

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of asset events of one run in one transaction per file; anything else one by one."""
        run_ids = {event.run_id for event in events}
        if len(events) < 2 or len(run_ids) != 1 or not all(_is_asset_event(event) for event in events):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            insert = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
            event_ids = [row[0] for row in conn.execute(insert, rows)]
            self._store_asset_event_tags(conn, events, event_ids)
            # The asset's row holds its latest event of each kind: only the batch's last one of
            # each (asset, event type) decides it, written in the batch's order.
            last: dict[tuple[Any, Any], int] = {}
            for i, event in enumerate(events):
                last[(event.dagster_event.asset_key, event.dagster_event_type)] = i  # type: ignore[union-attr]
            for i in sorted(last.values()):
                self._store_asset_event(conn, events[i], event_ids[i])

    def dispose(self) -> None:
        super().dispose()
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


# A forked child must not use its parent's pooled connections: it opens its own (SQLAlchemy's
# documented recipe: dispose without closing the parent's).
_STORAGES: "weakref.WeakSet[FastSqliteEventLogStorage]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for storage in list(_STORAGES):
        storage._engines_lock = threading.Lock()
        for engine in storage._engines.values():
            engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_asset_event(event: EventLogEntry) -> bool:
    return bool(event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS and event.dagster_event and event.dagster_event.asset_key)
