"""Checkpoints merge row groups only once a table's garbage is worth a rewrite (warehouse/vacuum.py),
on the session's real connection and on an attached snapshot file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.warehouse import Warehouse, changes, vacuum
from feedback_pipeline.warehouse.transaction import checkpoint, transaction

from .conftest import batch_of, commit_batch

ROWS = 3 * vacuum.ROW_GROUP_ROWS + 10  # three full row groups and a small last one

FILL = """INSERT INTO {table} BY NAME
SELECT 'mapbox' AS provider, 'acct' AS account_id, i::VARCHAR AS feedback_id,
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_minutes(i) AS collected_at, DATE '2026-01-01' + (i // 1440)::INTEGER AS collected_date,
       repeat(md5(i::VARCHAR), 4) AS body, '{{}}' AS attributes, now() AS ingested_at
FROM range($first, $last) t(i)"""


def blocks(con: duckdb.DuckDBPyConnection, table: str = "feedback") -> dict[int, list[int]]:
    """The storage blocks of each row group's ``body`` column: a rewritten row group gets new ones."""
    rows = con.execute(
        "SELECT row_group_id, list(block_id ORDER BY segment_id) FROM pragma_storage_info(?) WHERE column_name = 'body' AND segment_type <> 'VALIDITY' GROUP BY 1 ORDER BY 1",
        [table],
    ).fetchall()
    return dict(rows)


def hourly_change(con: duckdb.DuckDBPyConnection, hour: int, table: str = "feedback") -> None:
    """What an hourly run does to the table: delete 300 rows spread over the last three full row
    groups (updated feedback of recent days) and append their new versions, in one transaction."""
    with transaction(con):
        first = vacuum.ROW_GROUP_ROWS + hour * 300
        con.execute(f"DELETE FROM {table} WHERE feedback_id::BIGINT % 1000 = 7 AND feedback_id::BIGINT BETWEEN $f AND $f + 299_999", {"f": first})
        con.execute(FILL.format(table=table), {"first": ROWS + hour * 300, "last": ROWS + (hour + 1) * 300})


@pytest.fixture
def session(tmp_path: Path):
    with Warehouse(tmp_path / "feedback.duckdb").session() as s:
        con = s._con
        with transaction(con):
            con.execute(FILL.format(table="feedback"), {"first": 0, "last": ROWS})
        checkpoint(con)
        yield s


def test_the_writer_checkpoints_an_hourly_change_without_rewriting_the_full_row_groups(session):
    con = session._con
    before = blocks(con)
    hourly_change(con, 0)
    assert not vacuum.due(con)
    checkpoint(con)
    after = blocks(con)
    assert [after[g] for g in range(3)] == [before[g] for g in range(3)]  # deleted from, not rewritten
    assert len(after) == len(before) + 1  # the change's rows: a small row group of their own
    # What DuckDB's default would have done to the same change: merge, rewriting full row groups.
    hourly_change(con, 1)
    with vacuum.merging(con, True):
        con.execute("CHECKPOINT")
    merged = blocks(con)
    assert any(merged.get(g) != after[g] for g in range(3))


def test_a_checkpoint_merges_once_the_small_row_groups_pile_up(session):
    con = session._con
    for hour in range(vacuum.EXTRA_ROW_GROUPS + 2):
        hourly_change(con, hour)
        if vacuum.due(con):
            break
        checkpoint(con)
    else:
        pytest.fail("the small row groups never made a merge due")
    assert hour == vacuum.EXTRA_ROW_GROUPS  # each checkpoint before left one small row group more
    piled, live = len(blocks(con)), con.execute("SELECT count(*), sum(hash(feedback_id, body)) FROM feedback").fetchone()
    checkpoint(con)  # due: this one merges
    assert len(blocks(con)) <= 5 < piled
    assert not vacuum.due(con)
    assert con.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()[0] == 0  # back to no merging
    assert con.execute("SELECT count(*), sum(hash(feedback_id, body)) FROM feedback").fetchone() == live  # the same rows


def test_an_attached_snapshots_checkpoint_follows_the_same_rule(session, tmp_path: Path):
    con = session._con
    con.execute("ATTACH $p AS snap", {"p": str(tmp_path / "other.duckdb")})
    try:
        con.execute("CREATE TABLE snap.feedback AS SELECT * FROM feedback")
        checkpoint(con, database="snap")
        before = blocks(con, "snap.feedback")
        hourly_change(con, 0, table="snap.feedback")
        checkpoint(con, database="snap")
        after = blocks(con, "snap.feedback")
        assert [after[g] for g in range(3)] == [before[g] for g in range(3)]
    finally:
        con.execute("DETACH snap")


def test_a_database_without_the_feedback_table_has_nothing_to_merge():
    con = duckdb.connect()
    assert not vacuum.due(con)
    assert checkpoint(con)


def _bound(con: duckdb.DuckDBPyConnection, file: str) -> tuple[int, int] | None:
    return con.execute("SELECT extra, generation FROM pipeline_row_groups WHERE file = ?", [file]).fetchone()


@pytest.fixture
def counted(monkeypatch):
    """Counts the storage-metadata counts (``vacuum.extra_row_groups``) made from now on."""
    calls: list[str | None] = []
    count = vacuum.extra_row_groups

    def spy(con, database=None):
        calls.append(database)
        return count(con, database)

    monkeypatch.setattr(vacuum, "extra_row_groups", spy)
    return calls


def test_the_working_file_counts_its_row_groups_only_once_its_bound_may_pass_the_limit(session, counted):
    """Each hourly change bumps the generation (as every write does); the recorded count plus the
    generations since bounds the row groups, so they are counted at the checkpoint where that
    could first pass the limit, which merges them, as the count at every checkpoint did (test
    above)."""
    con = session._con
    checkpoint(con, file=vacuum.WORK)  # no count recorded yet: counted once
    start = changes.generations(con)[0]
    assert counted == [None] and _bound(con, vacuum.WORK) == (0, start)
    for hour in range(vacuum.EXTRA_ROW_GROUPS + 1):
        hourly_change(con, hour)
        with transaction(con):
            changes.bump(con)
        piled = len(blocks(con))
        checkpoint(con, file=vacuum.WORK)
        checkpoint(con, file=vacuum.WORK)
        if hour < vacuum.EXTRA_ROW_GROUPS:
            assert len(counted) == 1 and _bound(con, vacuum.WORK) == (0, start)  # nothing written either
    # Counted when the bound reached EXTRA_ROW_GROUPS + 1, merged, and counted after the merge.
    assert len(counted) == 3 and len(blocks(con)) <= 5 < piled
    assert _bound(con, vacuum.WORK)[0] <= 2


def test_a_publish_counts_a_snapshot_files_row_groups_only_once_its_bound_may_pass_the_limit(tmp_path: Path, counted):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    commit_batch(wh, batch_of({"id": "a"}))
    assert wh.publish_if_behind().mode == "full"
    with wh.session() as s:
        full = {f: _bound(s._con, f) for f in ("a", "b")}
    assert full["a"] == full["b"] and full["a"][0] == 0  # counted in the new file, copied to the other
    counted.clear()
    for n in range(vacuum.EXTRA_ROW_GROUPS + 1):
        commit_batch(wh, batch_of({"id": f"n{n}"}))  # one generation each
        assert wh.publish_if_behind().mode == "incremental"
        if n < vacuum.EXTRA_ROW_GROUPS - 1:
            assert "snapshot" not in counted, n  # neither file's row groups counted
    # File "b" (applied at n = 0, 2, ...) reaches generation 25 past its count at n = 24.
    assert counted.count("snapshot") == 1
    with wh.session() as s:
        assert _bound(s._con, "b")[1] == full["b"][1] + vacuum.EXTRA_ROW_GROUPS + 1
