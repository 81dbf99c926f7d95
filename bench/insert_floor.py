"""What DuckDB alone costs to store a backfill's rows: the floor under the pipeline's commits.

``python -m bench.commits --floor`` runs this on the working database its backfill wrote. It
reads the stored rows back in batches of ``sync.COMMIT_ROWS`` (already normalized, as Arrow) and
inserts them into a fresh warehouse opened as the pipeline opens it (``Warehouse.session``: the
same DuckDB settings, schema and compression), one bare ``INSERT`` and ``COMMIT`` per batch,
then closes the session (its final checkpoint); then the same with more room (a memory limit of
2GB) and as one transaction, to show whether the pipeline's settings are what makes it cost. No
classify, rejects, cursor or change log: only what any writer of these rows into this file pays.
The reading is timed alone first and taken off.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from feedback_pipeline.sync import COMMIT_ROWS
from feedback_pipeline.warehouse import Warehouse, writes
from feedback_pipeline.warehouse.session import DEFAULT_MEMORY_LIMIT


def _batches(source: Path, rows: int) -> Iterator[pa.RecordBatch]:
    con = duckdb.connect(str(source), read_only=True)
    try:
        yield from con.sql("SELECT * EXCLUDE (ingested_at) FROM feedback").fetch_record_batch(rows)
    finally:
        con.close()


def measure(source: Path, rows: int = COMMIT_ROWS, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> dict[str, float]:
    """CPU seconds (this process, DuckDB's threads included) of storing ``source``'s feedback
    rows anew, ``rows`` per transaction, with DuckDB's ``memory_limit``: ``insert`` and
    ``COMMIT`` statements, the closing ``checkpoint``, their ``total``, ``read`` (taken off
    ``insert``: the same batches read alone first) and ``rows`` (counted in the new table)."""
    started = time.process_time()
    for batch in _batches(source, rows):
        writes._json_typed(pa.Table.from_batches([batch]))
    read = time.process_time() - started
    insert = commit = 0.0
    with tempfile.TemporaryDirectory(prefix="feedback-bench-floor-") as workdir:
        opened = Warehouse(Path(workdir) / "feedback.duckdb", memory_limit=memory_limit).session()
        session = opened.__enter__()
        try:
            with session.cursor() as cursor:
                con = cursor.con
                started = time.process_time()
                for batch in _batches(source, rows):
                    batch = writes._json_typed(pa.Table.from_batches([batch]))  # as the pipeline stages it
                    con.execute("BEGIN TRANSACTION")
                    con.execute("INSERT INTO feedback BY NAME SELECT *, now() AS ingested_at FROM batch")
                    before = time.process_time()
                    con.execute("COMMIT")
                    commit += time.process_time() - before
                insert = time.process_time() - started - commit - read
                stored = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
        finally:
            started = time.process_time()
            opened.__exit__(None, None, None)
            checkpoint = time.process_time() - started
    return {"rows": stored, "read": read, "insert": insert, "commit": commit, "checkpoint": checkpoint, "total": insert + commit + checkpoint}


VARIANTS: tuple[tuple[str, int | None, str], ...] = (
    ("the pipeline's settings", COMMIT_ROWS, DEFAULT_MEMORY_LIMIT),
    ("memory_limit 2GB", COMMIT_ROWS, "2GB"),
    ("one transaction, memory_limit 2GB", None, "2GB"),
)


def measure_variants(source: Path) -> list[tuple[str, dict[str, float]]]:
    """``measure`` under each of ``VARIANTS`` (None rows: every row in one batch)."""
    return [(name, measure(source, rows or 1 << 62, limit)) for name, rows, limit in VARIANTS]
