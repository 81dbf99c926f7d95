"""DuckDB storage: schema migrations, transactional page commits with their cursors, publishing.

Two files, so analysts never block ingestion (a DuckDB 2.x reader's lock stops a writer process):

* the *working* database ``<FEEDBACK_DB>.work``: only pipeline processes open it, one at a time,
  under an OS file lock (``<FEEDBACK_DB>.lock``) held just for each short transaction, so the
  provider steps of a run fetch and normalize in parallel and only queue for the commit;
* ``FEEDBACK_DB`` itself: a consistent snapshot, replaced by an atomic ``rename`` whenever it is
  behind the working database (see ``publish_if_behind``). An analyst's open session keeps
  reading the file it opened; a new connection sees the last finished step. Written in DuckDB
  storage format v1.4.0 so any DuckDB client from 1.4 on can read it.

Every batch of rows is written as ``BEGIN; DELETE changed keys; INSERT ... BY NAME; rejects;
cursor; COMMIT``: rows and the cursor that covers them commit together or not at all. Every value
that reaches SQL is a bound parameter or an Arrow table scanned by name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas  # noqa: F401 - pyarrow imports it lazily on the first array; pay that at import time
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock

from .schema import CONTENT_COLUMNS, FEEDBACK_COLUMNS, REJECT_COLUMNS, ROW_COLUMNS

UTC = timezone.utc
STORAGE_VERSION = "v1.4.0"  # readable by every DuckDB client from 1.4 on (CONTRACT.md section 4)
SCHEMA_VERSION = 1
DEFAULT_MEMORY_LIMIT = "64MB"


def _ddl_columns(columns: tuple[tuple[str, str, Any], ...]) -> str:
    return ",\n    ".join(f"{name} {sqltype}" for name, sqltype, _ in columns)


# Migrations: index i brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE TABLE feedback (\n    {_ddl_columns(FEEDBACK_COLUMNS)}\n)",
        f"CREATE TABLE feedback_rejects (\n    {_ddl_columns(REJECT_COLUMNS)}\n)",
        # Per provider account and collected day: when the day was last read completely and up
        # to which instant every change of it is known (the watermark of change queries).
        """CREATE TABLE pipeline_sync_days (
            provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL, day DATE NOT NULL,
            synced_at TIMESTAMPTZ NOT NULL, watermark TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (provider, account_id, day))""",
        # In-flight queries: the resume value of the last committed page of an unfinished query.
        """CREATE TABLE pipeline_cursors (
            provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL, query_key VARCHAR NOT NULL,
            first_day DATE NOT NULL, last_day DATE NOT NULL, changes_since TIMESTAMPTZ,
            started_at TIMESTAMPTZ NOT NULL, resume JSON NOT NULL, pages INTEGER NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (provider, account_id, query_key))""",
        # Keys seen by an unfinished full refresh (rows of the window not seen get deleted at its end).
        """CREATE TABLE pipeline_refresh_keys (
            provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL, query_key VARCHAR NOT NULL,
            feedback_id VARCHAR NOT NULL)""",
    ),
    # 2: analyst views (README "Querying"); views, so they are always as fresh as the table.
    (
        """CREATE OR REPLACE VIEW feedback_daily_counts AS
        SELECT collected_date, provider, coalesce(status, 'none') AS status, count(*) AS feedback
        FROM feedback GROUP BY ALL""",
        # Of the feedback that has a unified status: how much got triaged, worked on, resolved.
        """CREATE OR REPLACE VIEW feedback_status_funnel AS
        WITH s AS (SELECT provider, status FROM feedback WHERE status IS NOT NULL),
        stages AS (
            SELECT provider, 1 AS stage_order, 'received' AS stage, count(*) AS feedback FROM s GROUP BY provider
            UNION ALL SELECT provider, 2, 'triaged', count(*) FILTER (WHERE status <> 'open') FROM s GROUP BY provider
            UNION ALL SELECT provider, 3, 'in_progress_or_resolved', count(*) FILTER (WHERE status IN ('in_progress', 'resolved')) FROM s GROUP BY provider
            UNION ALL SELECT provider, 4, 'resolved', count(*) FILTER (WHERE status = 'resolved') FROM s GROUP BY provider
        )
        SELECT provider, stage_order, stage, feedback,
               round(feedback / first_value(feedback) OVER (PARTITION BY provider ORDER BY stage_order), 4) AS share_of_received
        FROM stages""",
        # NPS per collected day: Formbricks records of field type nps, and Usersnap answers whose
        # label mentions NPS (the first such ordered_inputs entry by `order`). Promoters 9-10,
        # detractors 0-6; scores outside 0..10 are ignored.
        """CREATE OR REPLACE VIEW nps_daily AS
        WITH usersnap AS (
            SELECT f.collected_date, try_cast(e ->> 'value' AS DOUBLE) AS score
            FROM feedback f, unnest(CAST(f.attributes -> '$.ordered_inputs' AS JSON[])) AS t(e)
            WHERE f.provider = 'usersnap' AND lower(e ->> 'label') LIKE '%nps%'
            QUALIFY row_number() OVER (PARTITION BY f.account_id, f.feedback_id ORDER BY try_cast(e ->> 'order' AS INTEGER)) = 1
        ),
        answers AS (
            SELECT collected_date, rating AS score FROM feedback WHERE provider = 'formbricks' AND category = 'nps'
            UNION ALL SELECT collected_date, score FROM usersnap
        )
        SELECT collected_date,
               count(*) AS responses,
               count(*) FILTER (WHERE score >= 9) AS promoters,
               count(*) FILTER (WHERE score >= 7 AND score < 9) AS passives,
               count(*) FILTER (WHERE score <= 6) AS detractors,
               round(100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)) / count(*), 1) AS nps
        FROM answers WHERE score BETWEEN 0 AND 10
        GROUP BY collected_date""",
        """CREATE OR REPLACE VIEW mintlify_page_helpfulness AS
        SELECT page_url,
               count(*) AS votes,
               count(*) FILTER (WHERE try_cast(attributes ->> '$.helpful' AS BOOLEAN)) AS helpful,
               count(*) FILTER (WHERE NOT try_cast(attributes ->> '$.helpful' AS BOOLEAN)) AS not_helpful,
               round(count(*) FILTER (WHERE try_cast(attributes ->> '$.helpful' AS BOOLEAN)) / count(*), 4) AS helpful_share
        FROM feedback
        WHERE provider = 'mintlify' AND try_cast(attributes ->> '$.helpful' AS BOOLEAN) IS NOT NULL
        GROUP BY page_url""",
    ),
    # 3: the publish generation (Warehouse.publish_if_behind). `generation` counts the committed
    # transactions that changed what analysts see (bumped inside them); `published` is the
    # generation FEEDBACK_DB was last copied at. Starting at (0, 0), this migration's own bump
    # leaves an upgraded database behind, so its first run publishes once.
    (
        "CREATE TABLE pipeline_publish (generation BIGINT NOT NULL, published BIGINT NOT NULL)",
        "INSERT INTO pipeline_publish VALUES (0, 0)",
    ),
)
# The first schema version that has ``pipeline_publish``: migrations from then on bump it.
GENERATION_SINCE = 3


@dataclass
class WriteCounts:
    """What one commit did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    out_of_window: int = 0
    rejected: int = 0
    deleted: int = 0
    rejects_written: int = 0
    rejects_cleared: int = 0

    def add(self, other: "WriteCounts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted + self.rejects_written + self.rejects_cleared


@dataclass(frozen=True)
class CursorRow:
    """A stored in-flight query (see ``pipeline_cursors``)."""

    query_key: str
    first_day: date
    last_day: date
    changes_since: datetime | None
    started_at: datetime
    resume: Mapping[str, Any]
    pages: int


@dataclass(frozen=True)
class Scope:
    """Whose rows a write touches, and which collected days it may write."""

    provider: str
    account_id: str
    first_day: date
    last_day: date


class Warehouse:
    """The feedback warehouse at ``path`` (``FEEDBACK_DB``); see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 600.0, memory_limit: str = DEFAULT_MEMORY_LIMIT):
        self.path = Path(path)
        self.work_path = self.path.with_name(self.path.name + ".work")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout
        self.memory_limit = memory_limit
        self._lock: FileLock | None = None
        self._con: duckdb.DuckDBPyConnection | None = None

    # -- connections --------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writer lock (re-entrant within this process)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        with self._lock:
            yield

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The working database, migrated, under the writer lock; closed on exit."""
        with self.locked():
            con = duckdb.connect(
                str(self.work_path),
                config={
                    "storage_compatibility_version": STORAGE_VERSION,
                    "memory_limit": self.memory_limit,
                    "threads": 2,
                },
            )
            try:
                con.execute("SET TimeZone = 'UTC'")
                self._migrate(con)
                self._con = con
                yield con
            finally:
                self._con = None
                con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """``BEGIN ... COMMIT`` on the working database; any exception rolls everything back."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS pipeline_schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
        current = con.execute("SELECT coalesce(max(version), 0) FROM pipeline_schema_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.work_path} has schema version {current}, newer than this pipeline knows ({len(MIGRATIONS)}); upgrade the pipeline."
            )
        for version in range(current, len(MIGRATIONS)):
            con.execute("BEGIN TRANSACTION")
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            if version + 1 >= GENERATION_SINCE:  # new tables or views: the snapshot must get them
                self._bump_generation(con)
            con.execute("INSERT INTO pipeline_schema_version VALUES (?, ?)", [version + 1, datetime.now(UTC)])
            con.execute("COMMIT")

    @staticmethod
    def _bump_generation(con: duckdb.DuckDBPyConnection) -> None:
        """Mark the snapshot behind; call inside the transaction that changes what analysts see,
        so the change and the mark commit together (a kill after the COMMIT but before the publish
        leaves the mark, and the next run publishes)."""
        con.execute("UPDATE pipeline_publish SET generation = generation + 1")

    def initialize(self) -> bool:
        """Create or migrate the schema, and publish if the snapshot is missing or behind (a
        process killed between its last commit and its publish). True when it published."""
        return self.publish_if_behind()

    # -- state ---------------------------------------------------------------------------

    def sync_days(self, provider: str, account_id: str, first_day: date, last_day: date) -> dict[date, tuple[datetime, datetime]]:
        """``{day: (synced_at, watermark)}`` for the days of the range that were ever read whole."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT day, synced_at, watermark FROM pipeline_sync_days "
                "WHERE provider = ? AND account_id = ? AND day BETWEEN ? AND ?",
                [provider, account_id, first_day, last_day],
            ).fetchall()
        return {day: (_utc(synced), _utc(watermark)) for day, synced, watermark in rows}

    def cursor(self, provider: str, account_id: str, query_key: str) -> CursorRow | None:
        """The stored resume point of an unfinished query, if any."""
        with self.connect() as con:
            row = con.execute(
                "SELECT query_key, first_day, last_day, changes_since, started_at, resume, pages "
                "FROM pipeline_cursors WHERE provider = ? AND account_id = ? AND query_key = ?",
                [provider, account_id, query_key],
            ).fetchone()
        if row is None:
            return None
        return CursorRow(row[0], row[1], row[2], _utc(row[3]) if row[3] else None, _utc(row[4]), orjson.loads(row[5]), row[6])

    def drop_cursor(self, provider: str, account_id: str, query_key: str) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM pipeline_cursors WHERE provider = ? AND account_id = ? AND query_key = ?", [provider, account_id, query_key])
            con.execute("DELETE FROM pipeline_refresh_keys WHERE provider = ? AND account_id = ? AND query_key = ?", [provider, account_id, query_key])

    # -- writes --------------------------------------------------------------------------

    def commit(
        self,
        scope: Scope,
        rows: pa.Table,
        rejects: pa.Table,
        *,
        query_key: str,
        query_days: tuple[date, date],
        changes_since: datetime | None,
        started_at: datetime,
        resume: Mapping[str, Any] | None,
        pages: int,
        track_keys: bool = False,
        sweep: bool = False,
        fail_before_commit: bool = False,
    ) -> WriteCounts:
        """Write one batch and the cursor that covers it in ONE transaction.

        ``resume`` None means the query finished: its days are marked synced with watermark
        ``started_at``, its cursor is removed, and with ``sweep`` the rows of its days that the
        query did not return are deleted (full refresh / complete snapshot). ``track_keys``
        records returned keys for such a sweep when the query spans several commits.
        ``fail_before_commit`` exists for the failure-injection test only.
        """
        now = datetime.now(UTC)
        counts = WriteCounts(rejected=rejects.num_rows)
        with self.transaction() as con:
            params = {"p": scope.provider, "a": scope.account_id}
            in_window = _in_scope(rows, scope)
            counts.out_of_window = rows.num_rows - in_window.num_rows
            if in_window.num_rows:
                if pc.count_distinct(in_window.column("feedback_id")).as_py() == in_window.num_rows:
                    # The Arrow batch itself is the stage: DuckDB scans it in place (no copy).
                    con.register("_stage", in_window)
                else:
                    # The same id twice: keep the latest updated_at, else the last received.
                    batch = in_window.append_column("_seq", pa.array(range(in_window.num_rows), type=pa.int64()))
                    con.register("_batch", batch)
                    con.execute(
                        """CREATE OR REPLACE TEMP TABLE _deduped AS
                        SELECT * EXCLUDE (_seq) FROM _batch
                        QUALIFY row_number() OVER (PARTITION BY feedback_id ORDER BY updated_at DESC NULLS LAST, _seq DESC) = 1"""
                    )
                    con.unregister("_batch")
                    con.execute("CREATE OR REPLACE TEMP VIEW _stage AS SELECT * FROM _deduped")
                # Only stored rows whose key is in the batch are read (a semi join built on the
                # batch), so the cost and memory of a commit follow the batch, not the table.
                con.execute(
                    """CREATE OR REPLACE TEMP TABLE _existing AS
                    SELECT * FROM feedback
                    WHERE provider = $p AND account_id = $a AND feedback_id IN (SELECT feedback_id FROM _stage)""",
                    params,
                )
                distinct = " OR ".join(f"f.{c} IS DISTINCT FROM s.{c}" for c in CONTENT_COLUMNS)
                con.execute(
                    f"""CREATE OR REPLACE TEMP TABLE _actions AS
                    SELECT s.feedback_id,
                        CASE WHEN f.feedback_id IS NULL THEN 'insert'
                             WHEN f.updated_at IS NOT NULL AND s.updated_at IS NOT NULL AND s.updated_at < f.updated_at THEN 'stale'
                             WHEN {distinct} THEN 'update'
                             ELSE 'same' END AS action
                    FROM _stage s LEFT JOIN _existing f USING (feedback_id)"""
                )
                tally = dict(con.execute("SELECT action, count(*) FROM _actions GROUP BY action").fetchall())
                counts.inserted = tally.get("insert", 0)
                counts.updated = tally.get("update", 0)
                counts.unchanged = tally.get("same", 0) + tally.get("stale", 0)
                if counts.updated:
                    con.execute(
                        "DELETE FROM feedback WHERE provider = $p AND account_id = $a AND feedback_id IN "
                        "(SELECT feedback_id FROM _actions WHERE action = 'update')",
                        params,
                    )
                if counts.inserted or counts.updated:
                    columns = ", ".join(f"s.{c}" for c in ROW_COLUMNS)
                    con.execute(
                        f"""INSERT INTO feedback BY NAME
                        SELECT {columns}, $now AS ingested_at
                        FROM _stage s JOIN _actions a USING (feedback_id)
                        WHERE a.action IN ('insert', 'update')""",
                        {"now": now},
                    )
                # A record stored at last clears the rejects it had earlier.
                counts.rejects_cleared = con.execute(
                    "DELETE FROM feedback_rejects WHERE provider = $p AND account_id = $a AND record_key IN (SELECT feedback_id FROM _stage)",
                    params,
                ).fetchone()[0]
                if track_keys or sweep:
                    con.execute(
                        "INSERT INTO pipeline_refresh_keys SELECT $p, $a, $k, feedback_id FROM _stage",
                        {**params, "k": query_key},
                    )
            if rejects.num_rows:
                counts.rejects_written = self._write_rejects(con, params, rejects, now)
            self._write_cursor(con, scope, query_key, query_days, changes_since, started_at, resume, pages, now)
            if resume is None:
                if sweep:
                    counts.deleted = self._sweep(con, scope, query_key, query_days)
                self._finish(con, scope, query_key, query_days, started_at, now)
            if counts.changed:
                # Only changes of feedback/feedback_rejects count: cursor and sync-day updates
                # alone (every no-change run makes them) do not make the snapshot worth a copy.
                self._bump_generation(con)
            if fail_before_commit:
                raise RuntimeError("injected failure before COMMIT")
        return counts

    @staticmethod
    def _write_rejects(con: duckdb.DuckDBPyConnection, params: dict[str, Any], rejects: pa.Table, now: datetime) -> int:
        """Upsert rejects by (record_key, reason); an identical reject is left as it is (its
        ``rejected_at`` included), so a rerun over the same bad record changes nothing."""
        con.register("_rejects", rejects)
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _rej AS
            SELECT r.* FROM (SELECT * FROM _rejects QUALIFY row_number() OVER (PARTITION BY record_key, reason) = 1) r
            LEFT JOIN (SELECT * FROM feedback_rejects WHERE provider = $p AND account_id = $a) f
              ON f.record_key = r.record_key AND f.reason = r.reason
            WHERE f.record_key IS NULL OR f.payload::VARCHAR IS DISTINCT FROM r.payload OR f.feedback_id IS DISTINCT FROM r.feedback_id""",
            params,
        )
        con.unregister("_rejects")
        written = con.execute("SELECT count(*) FROM _rej").fetchone()[0]
        if written:
            con.execute(
                "DELETE FROM feedback_rejects WHERE provider = $p AND account_id = $a AND (record_key, reason) IN (SELECT record_key, reason FROM _rej)",
                params,
            )
            con.execute("INSERT INTO feedback_rejects BY NAME SELECT *, $now AS rejected_at FROM _rej", {"now": now})
        return written

    def _write_cursor(self, con: duckdb.DuckDBPyConnection, scope: Scope, query_key: str, days: tuple[date, date], changes_since: datetime | None, started_at: datetime, resume: Mapping[str, Any] | None, pages: int, now: datetime) -> None:
        con.execute("DELETE FROM pipeline_cursors WHERE provider = ? AND account_id = ? AND query_key = ?", [scope.provider, scope.account_id, query_key])
        if resume is not None:
            con.execute(
                "INSERT INTO pipeline_cursors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [scope.provider, scope.account_id, query_key, days[0], days[1], changes_since, started_at, orjson.dumps(resume).decode(), pages, now],
            )

    def _sweep(self, con: duckdb.DuckDBPyConnection, scope: Scope, query_key: str, days: tuple[date, date]) -> int:
        """Delete rows of the query's days that the finished full read did not return."""
        args = {"p": scope.provider, "a": scope.account_id, "k": query_key, "first": days[0], "last": days[1]}
        return con.execute(
            """DELETE FROM feedback WHERE provider = $p AND account_id = $a
            AND collected_date BETWEEN $first AND $last
            AND feedback_id NOT IN (SELECT feedback_id FROM pipeline_refresh_keys
                                    WHERE provider = $p AND account_id = $a AND query_key = $k)""",
            args,
        ).fetchone()[0]

    def _finish(self, con: duckdb.DuckDBPyConnection, scope: Scope, query_key: str, days: tuple[date, date], started_at: datetime, now: datetime) -> None:
        who = {"p": scope.provider, "a": scope.account_id}
        span = {**who, "first": days[0], "last": days[1]}
        con.execute("DELETE FROM pipeline_refresh_keys WHERE provider = $p AND account_id = $a AND query_key = $k", {**who, "k": query_key})
        # Cursors of queries wholly inside the finished one are moot now.
        con.execute(
            "DELETE FROM pipeline_cursors WHERE provider = $p AND account_id = $a AND first_day >= $first AND last_day <= $last",
            span,
        )
        con.execute(
            """INSERT INTO pipeline_sync_days
            SELECT $p, $a, d::DATE, $now, $started
            FROM range($first::TIMESTAMP, $last::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) t(d)
            ON CONFLICT (provider, account_id, day) DO UPDATE
            SET synced_at = excluded.synced_at, watermark = greatest(pipeline_sync_days.watermark, excluded.watermark)""",
            {**span, "now": now, "started": started_at},
        )

    def reset(self, provider: str, account_id: str | None = None) -> dict[str, int]:
        """Forget a provider (or one of its accounts): rows, rejects, sync state and cursors, in one
        transaction, then publish. The next run reads its windows from scratch."""
        where = "provider = $p" + (" AND account_id = $a" if account_id is not None else "")
        args = {"p": provider, **({"a": account_id} if account_id is not None else {})}
        removed = {}
        with self.transaction() as con:
            for table in ("feedback", "feedback_rejects", "pipeline_sync_days", "pipeline_cursors", "pipeline_refresh_keys"):
                removed[table] = con.execute(f"DELETE FROM {table} WHERE {where}", args).fetchone()[0]
            self._bump_generation(con)
        self.publish()
        return removed

    # -- reads for checks and metadata ---------------------------------------------------------

    def checks(self, provider: str, account_id: str, first_day: date, last_day: date) -> dict[str, Any]:
        """Numbers behind the asset checks and ``dagster/row_count``."""
        with self.connect() as con:
            args = {"p": provider, "a": account_id, "first": first_day, "last": last_day}
            duplicates = con.execute(
                "SELECT count(*) FROM (SELECT feedback_id FROM feedback WHERE provider = $p AND account_id = $a "
                "GROUP BY feedback_id HAVING count(*) > 1)",
                {"p": provider, "a": account_id},
            ).fetchone()[0]
            bad_dates = con.execute(
                "SELECT count(*) FROM feedback WHERE provider = $p AND account_id = $a AND "
                "(collected_at IS NULL OR collected_date IS DISTINCT FROM CAST(timezone('UTC', collected_at) AS DATE))",
                {"p": provider, "a": account_id},
            ).fetchone()[0]
            rows_in_range = con.execute(
                "SELECT count(*) FROM feedback WHERE provider = $p AND account_id = $a AND collected_date BETWEEN $first AND $last",
                args,
            ).fetchone()[0]
            total_rows = con.execute("SELECT count(*) FROM feedback WHERE provider = $p AND account_id = $a", {"p": provider, "a": account_id}).fetchone()[0]
            total_rejects = con.execute("SELECT count(*) FROM feedback_rejects WHERE provider = $p AND account_id = $a", {"p": provider, "a": account_id}).fetchone()[0]
            newest = con.execute(
                "SELECT day, synced_at FROM pipeline_sync_days WHERE provider = $p AND account_id = $a ORDER BY day DESC LIMIT 1",
                {"p": provider, "a": account_id},
            ).fetchone()
        return {
            "duplicate_keys": duplicates,
            "bad_collected": bad_dates,
            "rows_in_range": rows_in_range,
            "total_rows": total_rows,
            "total_rejects": total_rejects,
            "newest_synced_day": newest[0] if newest else None,
            "newest_synced_at": _utc(newest[1]) if newest else None,
        }

    # -- publishing -------------------------------------------------------------------------

    def publish_if_behind(self) -> bool:
        """Publish when ``FEEDBACK_DB`` is missing or older than the working database; True if it did.

        "Behind" is decided in the working database alone (``pipeline_publish``: generation vs
        published), never by opening ``FEEDBACK_DB``, whose readers hold locks. So a run publishes
        what an earlier, killed run committed even when it changes nothing itself, while a run
        that changes nothing over a current snapshot does not copy the whole file again. Check and
        publish happen under one hold of the writer lock: of concurrent steps, one publishes.
        """
        with self.locked():
            behind = self.snapshot_behind()
            if behind:
                self.publish()
            return behind

    def snapshot_behind(self) -> bool:
        """True when ``FEEDBACK_DB`` is missing or older than the working database. Cheap inside
        an open connection (a second connection in this process shares the open database)."""
        with self.connect() as con:
            generation, published = con.execute("SELECT generation, published FROM pipeline_publish").fetchone()
        return generation != published or not self.path.exists()

    def publish(self) -> None:
        """Replace ``FEEDBACK_DB`` with a consistent copy of the working database, atomically.

        The copy is taken under the writer lock after a CHECKPOINT (so the file holds every
        committed transaction and no WAL is needed), then renamed over the target: readers that
        have the old file open keep reading it undisturbed. Only after the rename (and its
        directory fsync) is the copied generation recorded as published: a kill in between costs
        one redundant publish by the next run, never a missed one.
        """
        if self._con is not None:
            # DuckDB 2.0 refuses a CHECKPOINT on a connection that has run write transactions
            # ("other write transactions active"), so publishing always uses a fresh one.
            raise RuntimeError("publish() needs the working database closed in this process")
        with self.connect() as con:
            # Under the writer lock nothing commits until we are done: this is the copy's generation.
            generation = con.execute("SELECT generation FROM pipeline_publish").fetchone()[0]
            con.execute("CHECKPOINT")
            # A writer killed mid-copy leaves its temporary file behind; only writers create them,
            # and they hold this lock, so any found now is litter.
            for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
            try:
                shutil.copyfile(self.work_path, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            _fsync_dir(self.path.parent)
            con.execute("UPDATE pipeline_publish SET published = ?", [generation])


def _in_scope(rows: pa.Table, scope: Scope) -> pa.Table:
    """Rows whose collected date lies in the run's range: a run writes no row outside it."""
    if not rows.num_rows:
        return rows
    dates = rows.column("collected_date")
    mask = pc.and_(pc.greater_equal(dates, pa.scalar(scope.first_day)), pc.less_equal(dates, pa.scalar(scope.last_day)))
    return rows.filter(mask)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
