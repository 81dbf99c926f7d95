"""What the working database changed since the lake's generation (reads only; no pyiceberg).

The working database logs, in the transaction of each commit that changes ``feedback``, the keys
it changed in ``pipeline_changes(generation, provider, account_id, feedback_id)``:

* ``(g, p, a, id)``: that key's row was inserted, updated or deleted at generation ``g``;
* ``(g, p, a, NULL)``: only that account's rejects changed (nothing for the lake);
* ``(g, NULL, NULL, NULL)``: anything may have changed (migration, reset): rebuild.

``pipeline_publish.changes_since`` is the generation after which the log is complete (older
entries get pruned once both snapshot files are past them).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa

from ..schema import FEEDBACK_COLUMNS

KEYS = "_lake_keys"
PARTS = "_lake_parts"
# The contract's columns as the Iceberg table stores them: JSON as its text.
_SELECT = ", ".join(f"f.{name}::VARCHAR AS {name}" if sqltype == "JSON" else f"f.{name}" for name, sqltype, _ in FEEDBACK_COLUMNS)


def source_identity(con: duckdb.DuckDBPyConnection) -> str:
    """Which working database this is: the instant its schema was first created. It survives
    compaction (``COPY FROM DATABASE`` copies ``pipeline_schema_version`` as it is) and changes
    when the database is deleted and created again, whose generations restart from zero."""
    # Microseconds since the epoch: the same text whatever time zone the connection reads in.
    created = con.execute("SELECT epoch_us(min(applied_at)) FROM pipeline_schema_version").fetchone()[0]
    return str(created) if created is not None else ""


def log_reaches(con: duckdb.DuckDBPyConnection, generation: int) -> bool:
    """True when the log holds every change after ``generation`` (so applying it is exact)."""
    floor = con.execute("SELECT coalesce(changes_since, generation) FROM pipeline_publish").fetchone()[0]
    return generation >= floor


def needs_everything(con: duckdb.DuckDBPyConnection, since: int, upto: int) -> bool:
    return con.execute(
        "SELECT count(*) > 0 FROM pipeline_changes WHERE generation > ? AND generation <= ? AND provider IS NULL",
        [since, upto],
    ).fetchone()[0]


def stage_keys(con: duckdb.DuckDBPyConnection, since: int, upto: int) -> pa.Table:
    """The distinct keys changed in ``(since, upto]``, kept as temp table ``_lake_keys`` on
    ``con`` for the joins below, and returned (their size follows the change)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {KEYS} AS
        SELECT DISTINCT provider, account_id, feedback_id FROM pipeline_changes
        WHERE generation > $since AND generation <= $upto AND feedback_id IS NOT NULL""",
        {"since": since, "upto": upto},
    )
    return con.sql(f"SELECT * FROM {KEYS}").to_arrow_table()


def current_locations(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """``(provider, account_id, feedback_id, collected_date)`` of the staged keys whose row exists
    now; a staged key missing here was deleted."""
    return con.sql(
        f"SELECT f.provider, f.account_id, f.feedback_id, f.collected_date FROM feedback f SEMI JOIN {KEYS} k USING (provider, account_id, feedback_id)"
    ).to_arrow_table()


def all_partitions(con: duckdb.DuckDBPyConnection) -> list[tuple[str, date, int]]:
    """Every ``(provider, collected_date, rows)`` of ``feedback``: the plan of a full rebuild."""
    return con.execute("SELECT provider, collected_date, count(*) FROM feedback GROUP BY ALL ORDER BY ALL").fetchall()


def partition_rows(con: duckdb.DuckDBPyConnection, parts: list[tuple[str, date]], *, changed_only: bool) -> pa.Table:
    """The current rows of ``parts`` (all of them, or only the staged keys' with ``changed_only``),
    in the contract's columns, sorted so each data file's key bounds are tight."""
    wanted = pa.table({"provider": pa.array([p for p, _ in parts], pa.string()), "collected_date": pa.array([d for _, d in parts], pa.date32())})
    con.register("_lake_parts_in", wanted)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {PARTS} AS SELECT * FROM _lake_parts_in")
    con.unregister("_lake_parts_in")
    semi = f"SEMI JOIN {KEYS} k USING (provider, account_id, feedback_id)" if changed_only else ""
    return con.sql(
        f"""SELECT {_SELECT} FROM feedback f {semi}
        SEMI JOIN {PARTS} p USING (provider, collected_date)
        ORDER BY f.provider, f.collected_date, f.account_id, f.feedback_id"""
    ).to_arrow_table()
