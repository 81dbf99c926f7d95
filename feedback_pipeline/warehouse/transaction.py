"""One explicit DuckDB transaction as a ``with`` block: the block's statements change the
database together or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN TRANSACTION`` on ``con``; ``COMMIT`` when the block ends normally, ``ROLLBACK``
    when anything escapes it (``KeyboardInterrupt`` too), which is then re-raised. Why: an
    interrupted write must never leave a transaction open on a connection the session reuses.

    A failed ``COMMIT`` raises with the transaction already ended by DuckDB (nothing to roll
    back). When the ``ROLLBACK`` itself fails, the block's exception is raised, with that failure
    noted on it."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error as failed:
            exc.add_note(f"ROLLBACK failed too: {failed}")
        raise
    con.execute("COMMIT")
