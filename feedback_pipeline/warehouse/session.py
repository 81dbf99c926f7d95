"""Opening the warehouse: the writer lock, ONE working-database connection per session, and the
per-thread cursors that sync, commit and read through it.

A session holds the OS file lock ``<FEEDBACK_DB>.lock`` from open to close, so writer processes
(a UI backfill, the schedule, a CLI reset) never overlap, and keeps one DuckDB connection to the
working database open for its whole life (opening it costs a checkpoint on close; a step opens it
once). Threads of the step each take ``session.cursor()`` (a DuckDB cursor: its own transactions
and temporary tables on the same database); a threading lock serializes their commit
transactions, which all bump the one publish generation. Work that is worth starting only when
the session will publish (the dashboard's warm child) waits for its first changing commit
(``Session.on_first_change``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import pyarrow as pa
from filelock import FileLock

from . import changes, maintenance, publish, state, stats, vacuum, writes
from .files import WarehouseFiles, fsync_dir
from .migrations import migrate
from .model import CursorRow, Progress, PublishResult, Scope, WriteCounts
from .transaction import checkpoint, transaction

if TYPE_CHECKING:
    from ..erasure import ErasureResult

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "64MB"
# DuckDB checkpoints automatically (inside a COMMIT) once the WAL holds this much. Each
# checkpoint recompresses the table's partly filled last row group: at DuckDB's default of 16MB
# a 1M-row backfill checkpoints ~40 times. The session also checkpoints before each publish and
# at its end (``Session.checkpoint``), so the WAL never outlives the session.
CHECKPOINT_THRESHOLD = "256MB"
# Rows committed since the last checkpoint sit in DuckDB's buffer pool (spilled to a temporary
# file past ``memory_limit``): at 1M rows up to ~40MB of the 64MB while the WAL nears the
# threshold. The checks' query runs on a checkpointed file instead when the WAL holds more than
# this (DuckDB's own default threshold), so it gets the buffer pool to itself.
CHECKS_WAL_BYTES = 16 * 1024 * 1024


class Warehouse:
    """The feedback warehouse at ``path`` (``FEEDBACK_DB``): files.py names its files."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 600.0, memory_limit: str = DEFAULT_MEMORY_LIMIT):
        self.files = WarehouseFiles(Path(path))
        self.lock_timeout = lock_timeout
        self.memory_limit = memory_limit

    @property
    def path(self) -> Path:
        return self.files.path

    @contextmanager
    def session(self, *, finish_erasure: bool = True) -> Iterator["Session"]:
        """Take the writer lock, open and migrate the working database; both held until exit.
        An erasure a killed process left unfinished is finished first, unless
        ``finish_erasure`` is False (a sensor's quick read leaves it to the next run)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.files.lock), timeout=self.lock_timeout):
            session = Session(self.files, self._connect(), connect=self._connect)
            try:
                migrate(session._con)
                if finish_erasure and self.files.erasing.exists():
                    session.finish_erasure()
                yield session
                session.checkpoint()
            finally:
                session._con.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(
            str(self.files.work),
            config={
                "storage_compatibility_version": publish.STORAGE_VERSION,
                "memory_limit": self.memory_limit,
                "threads": 2,
                "checkpoint_threshold": CHECKPOINT_THRESHOLD,
                # Checkpoints merge row groups only when vacuum.due says so (transaction.checkpoint).
                "max_vacuum_tasks": 0,
            },
        )
        con.execute("SET TimeZone = 'UTC'")
        return con

    def publish_if_behind(self) -> PublishResult | None:
        """Publish in a session of its own, when the snapshot is behind."""
        with self.session() as session:
            return session.publish_if_behind()

    def reset(self, provider: str, account_id: str | None = None) -> dict[str, int]:
        """Forget a provider or one account of it, then publish (maintenance.reset)."""
        with self.session() as session:
            return session.reset(provider, account_id)


class Session:
    """One open working database under the writer lock (see the module docstring)."""

    def __init__(self, files: WarehouseFiles, con: duckdb.DuckDBPyConnection, *, connect: Callable[[], duckdb.DuckDBPyConnection] | None = None):
        self.files = files
        self._con = con
        self._connect = connect  # reopens the working database after ``compact`` swapped it
        self._commits = threading.Lock()
        self._first_change = FirstChange()

    def cursor(self) -> AbstractContextManager["WarehouseCursor"]:
        """A cursor for one thread; closed on exit."""
        return _thread_cursor(self._con, self._commits, self.files.work_wal, self._first_change)

    def on_first_change(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, in the committing thread, right after the session's first commit
        that changes the warehouse (so the session will publish); at once if one already did."""
        self._first_change.add(callback)

    def check_stats(self, provider: str, account_id: str | None, first_day: date, last_day: date) -> stats.WindowStats:
        """The window-scoped numbers behind the asset checks (stats.check_stats)."""
        with self.cursor() as cur:
            return cur.check_stats(provider, account_id, first_day, last_day)

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        """Rows of a read on the working database (operators, tests)."""
        with self.cursor() as cur:
            return cur.query(sql, params)

    def behind(self) -> bool:
        """True when ``FEEDBACK_DB`` is missing or older than the working database."""
        with self._commits:
            return publish.behind(self._con, self.files)

    def checkpoint(self) -> None:
        """Write the WAL's changes into the working file (DuckDB's ``CHECKPOINT``), so a publish
        reads compressed row groups and the next session opens no WAL to replay."""
        with self._commits:
            checkpoint(self._con, file=vacuum.WORK)

    def publish_if_behind(self) -> PublishResult | None:
        """Publish once, when the snapshot is behind the working database; None when it is
        current (a run that changed nothing copies nothing). See publish.py."""
        with self._commits:
            if not publish.behind(self._con, self.files):
                return None
            checkpoint(self._con, file=vacuum.WORK)
            return publish.publish(self._con, self.files)

    def feed(self, apply: Callable[[duckdb.DuckDBPyConnection, int], T]) -> T:
        """Bring a copy that reads the change log (the Iceberg mirror: ``apply(connection,
        generation)``) up to the working database's generation, then keep the log back to that
        generation for it. Under the writer lock, outside any transaction, like a publish."""
        with self._commits:
            generation = changes.generations(self._con)[0]
            result = apply(self._con, generation)
            with transaction(self._con):
                changes.record_reader(self._con, changes.LAKE, generation)
        return result

    def publish(self) -> PublishResult:
        """Publish even when current (operators, tests)."""
        with self._commits:
            checkpoint(self._con, file=vacuum.WORK)
            return publish.publish(self._con, self.files)

    def reset(self, provider: str, account_id: str | None = None) -> dict[str, int]:
        """Forget a provider or one account of it, then publish."""
        with self._commits:
            removed = maintenance.reset(self._con, provider, account_id)
            checkpoint(self._con, file=vacuum.WORK)
            publish.publish_if_behind(self._con, self.files)
        return removed

    def erase(self, kind: str, value: str, provider: str | None) -> ErasureResult:
        """Erase one person (maintenance.erase: one transaction), then rebuild BOTH snapshot
        files as full compacted copies, so neither keeps the person's bytes in free blocks.
        Call ``compact`` after the last write of the session to clean the working file too.

        ``files.erasing`` is created (durably) before the transaction and removed by
        ``compact``: when the process dies in between, the next session rebuilds and compacts
        before anything else (``finish_erasure``), so the bytes never outlive a killed erase."""
        with self._commits:
            self.files.erasing.touch()
            fsync_dir(self.files.path.parent)
            result = maintenance.erase(self._con, kind, value, provider)
            checkpoint(self._con, file=vacuum.WORK)
            publish.rebuild(self._con, self.files)
        return result

    def finish_erasure(self) -> None:
        """What an erasure owes the files after its transaction (both snapshot files rebuilt,
        the working file compacted), for one a killed process left unfinished."""
        with self._commits:
            checkpoint(self._con, file=vacuum.WORK)
            publish.rebuild(self._con, self.files)
        self.compact()

    def compact(self) -> None:
        """Rewrite the working database into a new file and swap it in:
        deleted rows leave no bytes behind (maintenance.compact_copy, swap_in). No cursor of this
        session may be open."""
        if self._connect is None:
            raise RuntimeError("this session cannot reopen its working database")
        with self._commits:
            copy = maintenance.compact_copy(self._con, self.files)
            self._con.close()
            maintenance.swap_in(copy, self.files)
            self._con = self._connect()
            # The erasure (if any) is complete: no file keeps its person's bytes.
            self.files.erasing.unlink(missing_ok=True)


class FirstChange:
    """Callbacks run once, by the first commit of a session that changes the warehouse. A failing
    callback is logged, never raised: the commit is already done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._fired = False

    def add(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._fired:
                self._callbacks.append(callback)
                return
        self._run(callback)

    def fire(self) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._run(callback)

    @staticmethod
    def _run(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - work started early is an optimisation
            log.warning("work started on the session's first change failed (%s: %s)", type(exc).__name__, exc)


class WarehouseCursor:
    """What the sync engine needs from the warehouse, on one thread's DuckDB cursor."""

    def __init__(self, con: duckdb.DuckDBPyConnection, commits: threading.Lock, wal: Path | None = None, first_change: FirstChange | None = None):
        self.con = con
        self._commits = commits
        self._wal = wal  # the working database's WAL file
        self._first_change = first_change

    def sibling(self) -> AbstractContextManager["WarehouseCursor"]:
        """Another cursor of the same session, for another thread (a DuckDB cursor serves one
        thread at a time); closed on exit. Its commits take turns with this one's."""
        return _thread_cursor(self.con, self._commits, self._wal, self._first_change)

    def sync_days(self, provider: str, account_id: str, first_day: date, last_day: date) -> dict[date, tuple[datetime, datetime]]:
        return state.sync_days(self.con, provider, account_id, first_day, last_day)

    def stored_cursor(self, provider: str, account_id: str, query_key: str) -> CursorRow | None:
        return state.stored_cursor(self.con, provider, account_id, query_key)

    def stored_cursors(self, provider: str, account_id: str) -> list[CursorRow]:
        return state.stored_cursors(self.con, provider, account_id)

    def drop_cursor(self, provider: str, account_id: str, query_key: str) -> None:
        with self._commits, transaction(self.con):
            state.drop_cursor(self.con, provider, account_id, query_key)

    def commit(self, scope: Scope, rows: pa.Table, rejects: pa.Table, progress: Progress) -> WriteCounts:
        """Write one batch with the cursor that covers it, in one transaction (writes.commit)."""
        with self._commits:
            counts = writes.commit(self.con, scope, rows, rejects, progress)
        if counts.changed and self._first_change is not None:
            self._first_change.fire()  # outside the lock: the other threads' commits go on
        return counts

    def check_stats(self, provider: str, account_id: str | None, first_day: date, last_day: date) -> stats.WindowStats:
        """The checks' numbers (stats.check_stats), on a checkpointed file when the WAL holds more
        than ``CHECKS_WAL_BYTES`` (see there)."""
        if self._wal is not None and _size(self._wal) > CHECKS_WAL_BYTES:
            with self._commits:
                checkpoint(self.con, file=vacuum.WORK)
        return stats.check_stats(self.con, provider, account_id, first_day, last_day)

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()


@contextmanager
def _thread_cursor(con: duckdb.DuckDBPyConnection, commits: threading.Lock, wal: Path | None, first_change: FirstChange | None) -> Iterator[WarehouseCursor]:
    """A new DuckDB cursor of ``con``'s database in UTC, as a :class:`WarehouseCursor` whose
    commits take ``commits``; closed on exit."""
    cur = con.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")
        yield WarehouseCursor(cur, commits, wal, first_change)
    finally:
        cur.close()


def _size(path: Path) -> int:
    """Bytes of ``path``; 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
