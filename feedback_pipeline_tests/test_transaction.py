"""``warehouse.transaction``: a ``with`` block is one transaction, committed when the block ends
normally, rolled back when anything escapes it, and never left open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.warehouse import transaction
from feedback_pipeline.warehouse.transaction import checkpoint


class Interrupted(BaseException):
    """Escapes ``except Exception`` like ``KeyboardInterrupt`` does."""


@pytest.fixture
def con(tmp_path: Path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    yield con
    con.close()


def _rows(con: duckdb.DuckDBPyConnection) -> list[int]:
    return [a for (a,) in con.execute("SELECT a FROM t ORDER BY a").fetchall()]


def _in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` has an explicit transaction open: BEGIN fails inside one."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        return True
    con.execute("ROLLBACK")
    return False


def test_a_block_that_ends_normally_is_committed_and_visible_to_other_connections(con):
    with transaction(con) as tx:
        tx.execute("INSERT INTO t VALUES (1), (2)")
        assert con.cursor().execute("SELECT count(*) FROM t").fetchone()[0] == 0  # not before the end
    assert con.cursor().execute("SELECT count(*) FROM t").fetchone()[0] == 2
    assert not _in_transaction(con)


def test_an_exception_rolls_the_whole_block_back_and_is_re_raised(con):
    con.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ValueError, match="boom"):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (2)")
            con.execute("DELETE FROM t WHERE a = 1")
            raise ValueError("boom")
    assert _rows(con) == [1]
    assert not _in_transaction(con)


def test_an_interrupt_that_is_no_exception_rolls_back_too(con):
    with pytest.raises(Interrupted):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (3)")
            raise Interrupted()
    with pytest.raises(KeyboardInterrupt):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (4)")
            raise KeyboardInterrupt()
    assert _rows(con) == []
    assert not _in_transaction(con)


def test_a_failed_statement_rolls_back_and_the_connection_takes_the_next_transaction(con):
    with pytest.raises(duckdb.ConstraintException):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (5)")
            con.execute("INSERT INTO t VALUES (5)")
    with transaction(con):
        con.execute("INSERT INTO t VALUES (6)")
    assert _rows(con) == [6]


def test_a_commit_that_fails_raises_and_leaves_no_transaction_open(con):
    other = con.cursor()
    with pytest.raises(duckdb.TransactionException):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (7)")
            other.execute("INSERT INTO t VALUES (7)")  # commits first: this block's COMMIT conflicts
    assert _rows(con) == [7]
    assert not _in_transaction(con)


def test_a_failed_rollback_is_noted_on_the_blocks_exception(con):
    with pytest.raises(ValueError) as raised:
        with transaction(con):
            con.execute("ROLLBACK")  # the block ended the transaction itself
            raise ValueError("boom")
    assert any("ROLLBACK failed" in note for note in raised.value.__notes__)
    assert not _in_transaction(con)


@contextmanager
def write_transaction_held(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Another thread's short write transaction (as the request ledger's), on its own cursor,
    open for ``seconds`` from when the block starts; the thread is joined when the block ends. An
    UPDATE is one kind of write DuckDB refuses to checkpoint beside."""
    opened = threading.Event()

    def hold() -> None:
        cur = con.cursor()
        with transaction(cur):
            cur.execute("UPDATE t SET a = 99 WHERE a = 1")
            opened.set()
            time.sleep(seconds)
        cur.close()

    holder = threading.Thread(target=hold)
    holder.start()
    opened.wait(5)
    try:
        yield
    finally:
        holder.join()


def test_a_checkpoint_waits_for_another_threads_write_transaction_instead_of_failing(con):
    con.execute("INSERT INTO t VALUES (1)")
    with write_transaction_held(con, 0.3):
        with pytest.raises(duckdb.TransactionException, match="other write transactions"):
            con.execute("CHECKPOINT")  # DuckDB's own statement refuses while the other is open
        assert checkpoint(con) is True
    assert _rows(con) == [99]


def test_a_checkpoint_still_refused_after_the_wait_raises(con):
    con.execute("INSERT INTO t VALUES (1)")
    with write_transaction_held(con, 1.0):
        with pytest.raises(duckdb.TransactionException, match="other write transactions"):
            checkpoint(con, wait=0.05)
