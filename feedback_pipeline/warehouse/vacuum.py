"""When a checkpoint may merge row groups: in bulk, once the garbage is worth it, not every hour.

Why it exists: DuckDB's ``CHECKPOINT`` "vacuums" by default: wherever the live rows of up to three
consecutive row groups fit in fewer, it rewrites them as fewer, recompressing every column. An
hourly run deletes its updated rows from the row groups holding the last days and appends their
new versions as a new small row group (each checkpointed transaction starts one), so a checkpoint
of the working file or of a snapshot after an incremental publish often rewrote the last three
full row groups: ``CHECKPOINT snapshot`` of an incremental publish took 1.6-1.9 s for 210
changed keys in a 1M-row file, 8 ms without merging (the bench's 1%-changed run, DuckDB 2.0).

So the writer's connection checkpoints without merging (``max_vacuum_tasks = 0``, set when it
opens) and a checkpoint merges only once the small row groups have piled up (:func:`due`): more
than ``EXTRA_ROW_GROUPS`` row groups beyond what the table's rows fill. That one merge then pays
for about a day of hourly changes at once. Row groups whose rows are all deleted are dropped at
every checkpoint either way (DuckDB does that without vacuum tasks); deleted rows spread thinly
over full row groups are not reclaimed by DuckDB's vacuum either way (only a compaction is).

Counting the row groups (``pragma_storage_info``) lists every column segment of the table: 10-14
ms per checkpoint at 1M rows, and an hourly run checkpoints three times. So the working database
records, per file, the count at its last measurement and the generation then
(``pipeline_row_groups``), and a checkpoint counts again only when that count plus the
generations since could pass ``EXTRA_ROW_GROUPS`` (:func:`due_by_bound`). That sum bounds the
real number: every transaction that changes the table bumps the generation and leaves at most
one row group its rows do not fill (DuckDB's automatic checkpoints happen inside such
transactions), and a publish applies one transaction to a snapshot file for one or more
generations. Nothing is written between counts; an over-estimate only brings the next count
forward, and a merge or a compaction only lowers the real number.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from . import changes

# DuckDB's default ``row_group_size``: rows per full row group.
ROW_GROUP_ROWS = 122_880
# A checkpoint merges once a table holds this many row groups more than its live rows fill.
EXTRA_ROW_GROUPS = 24
# The table whose garbage decides: every other table is small or rewritten whole.
TABLE = "feedback"
# DuckDB's default ``max_vacuum_tasks``: what a merging checkpoint may schedule.
MERGE_TASKS = 100


def due(con: duckdb.DuckDBPyConnection, database: str | None = None) -> bool:
    """Whether the next checkpoint of ``database`` (the connection's own when None) should merge
    row groups (see the module docstring). Reads the table's storage metadata and its row count:
    milliseconds, no data pages. False for a database without the table (nothing to merge)."""
    extra = extra_row_groups(con, database)
    return extra is not None and extra > EXTRA_ROW_GROUPS


def extra_row_groups(con: duckdb.DuckDBPyConnection, database: str | None = None) -> int | None:
    """The table's row groups beyond what its live rows fill, counted in its storage metadata;
    None for a database without the table."""
    table = f"{database}.{TABLE}" if database else TABLE
    try:
        groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info(?)", [table]).fetchone()[0]
    except duckdb.CatalogException:
        return None
    live = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return groups - math.ceil(live / ROW_GROUP_ROWS)


# ``pipeline_row_groups.file`` of the working database (snapshot files use their own ids).
WORK = "work"


def due_by_bound(con: duckdb.DuckDBPyConnection, file: str, database: str | None = None) -> bool:
    """:func:`due` for the checkpoint of ``database`` (the working database when None, else an
    attached snapshot file), recorded as ``file`` in the working database's
    ``pipeline_row_groups``: counted, and recorded, only when the recorded count plus the
    generations since could pass the limit (module docstring)."""
    try:
        generation = changes.generations(con)[0]
        row = con.execute("SELECT extra, generation FROM pipeline_row_groups WHERE file = ?", [file]).fetchone()
    except (duckdb.CatalogException, duckdb.BinderException):
        return due(con, database)  # a schema before migration 11 (while an older one is migrated)
    if row is not None and row[0] + max(0, generation - row[1]) <= EXTRA_ROW_GROUPS:
        return False
    extra = extra_row_groups(con, database) or 0
    record(con, file, extra, generation)
    return extra > EXTRA_ROW_GROUPS


def record(con: duckdb.DuckDBPyConnection, file: str, extra: int, generation: int | None = None) -> None:
    """Store ``file``'s bound (at ``generation``, default the working database's current one)."""
    if generation is None:
        generation = changes.generations(con)[0]
    con.execute("INSERT OR REPLACE INTO pipeline_row_groups VALUES (?, ?, ?)", [file, extra, generation])


def forget(con: duckdb.DuckDBPyConnection, file: str) -> None:
    """Drop ``file``'s bound: its next checkpoint counts the row groups."""
    con.execute("DELETE FROM pipeline_row_groups WHERE file = ?", [file])


def copy_bound(con: duckdb.DuckDBPyConnection, source: str, target: str) -> None:
    """``target`` is now a byte copy of ``source``: it has the same row groups."""
    forget(con, target)
    con.execute("INSERT INTO pipeline_row_groups SELECT ?, extra, generation FROM pipeline_row_groups WHERE file = ?", [target, source])


@contextmanager
def merging(con: duckdb.DuckDBPyConnection, allowed: bool) -> Iterator[None]:
    """Let the checkpoints inside the block merge row groups when ``allowed`` (DuckDB's vacuum);
    the connection's database goes back to checkpoints without merging after it."""
    if not allowed:
        yield
        return
    con.execute(f"SET max_vacuum_tasks = {MERGE_TASKS}")
    try:
        yield
    finally:
        con.execute("SET max_vacuum_tasks = 0")
