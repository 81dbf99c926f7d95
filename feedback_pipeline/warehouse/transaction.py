"""One explicit transaction on a DuckDB connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN``, then ``COMMIT`` when the block ends normally and ``ROLLBACK`` on any exception
    (KeyboardInterrupt included), so a write is all or nothing and no transaction stays open."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
