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
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

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
    table = f"{database}.{TABLE}" if database else TABLE
    try:
        groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info(?)", [table]).fetchone()[0]
    except duckdb.CatalogException:
        return False
    live = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return groups - math.ceil(live / ROW_GROUP_ROWS) > EXTRA_ROW_GROUPS


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
