"""One explicit DuckDB transaction as a ``with`` block: the block's statements change the
database together or not at all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from . import vacuum


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


# Another thread's short write transaction on the same database (the request ledger's, about
# 2-5 ms) makes an explicit CHECKPOINT fail instead of wait (DuckDB: "Cannot CHECKPOINT: there
# are other write transactions active"; FORCE CHECKPOINT would abort them instead).
_BUSY = "other write transactions active"
CHECKPOINT_WAIT_SECONDS = 10.0


def checkpoint(
    con: duckdb.DuckDBPyConnection, *, database: str | None = None, file: str | None = None, wait: float = CHECKPOINT_WAIT_SECONDS
) -> bool:
    """``CHECKPOINT`` (of ``database``, an attached file, when given) once no other write
    transaction is active, retrying for up to ``wait`` seconds; row groups are merged only when
    :func:`vacuum.due` says the table's garbage is worth it, or, for a ``file`` the working
    database keeps a bound for, :func:`vacuum.due_by_bound` (the row groups are then counted
    anew after a merge). The caller holds the session's commit lock, so only the ledger's short
    transactions can be in the way. True when it checkpointed; after ``wait`` the last refusal
    is raised."""
    statement = f"CHECKPOINT {database}" if database else "CHECKPOINT"
    deadline = time.monotonic() + wait
    merge = vacuum.due(con, database) if file is None else vacuum.due_by_bound(con, file, database)
    with vacuum.merging(con, merge):
        while True:
            try:
                con.execute(statement)
                break
            except duckdb.TransactionException as exc:
                if _BUSY not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.002)
    if merge and file is not None:  # what the merge left (rare: about once a day of hourly runs)
        vacuum.record(con, file, vacuum.extra_row_groups(con, database) or 0)
    return True
