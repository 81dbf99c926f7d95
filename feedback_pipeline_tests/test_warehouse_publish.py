"""Publishing: two snapshot files used in turn, changes applied in place (or to a byte copy of the
live file), a full copy only when needed, an atomic switch, readers never disturbed."""

from __future__ import annotations

import multiprocessing
import os
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

import feedback_pipeline.warehouse.changes as changes
import feedback_pipeline.warehouse.publish as publish
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import STORAGE_VERSION, Scope, Warehouse
from feedback_pipeline.warehouse.transaction import transaction

from .conftest import WAREHOUSE_DAY as D1
from .conftest import batch_of, commit_batch, snapshot_rows, work_rows

TABLES = {
    "feedback": "SELECT * FROM feedback ORDER BY ALL",
    "feedback_rejects": "SELECT * FROM feedback_rejects ORDER BY ALL",
    "pipeline_sync_days": "SELECT * FROM pipeline_sync_days ORDER BY ALL",
    "pipeline_cursors": "SELECT * FROM pipeline_cursors ORDER BY ALL",
}


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def stats(wh: Warehouse) -> dict[str, tuple[int, int, int]]:
    """inode, mtime and size of every snapshot file (and what FEEDBACK_DB points at)."""
    out = {p.name: (s.st_ino, s.st_mtime_ns, s.st_size) for p in wh.files.snapshots if p.exists() for s in [os.stat(p)]}
    out["link"] = os.readlink(wh.path) if wh.path.is_symlink() else None
    return out


def test_the_snapshot_is_a_v1_4_file_readable_read_only_through_feedback_db(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "a"}))
    assert wh.publish_if_behind().mode == "full"
    assert wh.path.is_symlink() and os.readlink(wh.path) == "feedback.duckdb.a"
    con = duckdb.connect(str(wh.path), read_only=True)
    assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
    tags = con.execute("SELECT tags FROM duckdb_databases() WHERE NOT internal AND database_name = current_database()").fetchone()[0]
    assert tags["storage_version"].startswith(STORAGE_VERSION)
    con.close()
    assert not Path(f"{wh.files.snapshots[0]}.wal").exists()  # a reader through the symlink needs no WAL


def test_an_incremental_publish_equals_a_full_copy_row_for_row(wh: Warehouse, tmp_path: Path):
    """Inserts, updates, a sweep, rejects written and cleared, a reset of another provider: every
    publish after the first (a full copy into both files) applies changes in place, and the
    analysts' file then holds exactly what a full copy of the working database holds."""
    mintlify = FeedbackBatch("mintlify", "acct")
    mintlify.add({}, feedback_id="m1", collected_at="2026-03-01T00:00:00Z", body="m")
    commit_batch(wh, mintlify, scope=Scope("mintlify", "acct", D1, D1))
    commit_batch(wh, batch_of(*({"id": f"k{i}", "body": "v1"} for i in range(50))), resume={"after": 1})
    assert wh.publish_if_behind().mode == "full"  # file a: first publish; file b its byte copy
    modes = []
    bad = batch_of({"id": "k2", "body": "v3"}, {"id": "late", "created_at": "not a date"})
    bad.reject({"body": "no id"}, "missing_id")
    steps = [
        lambda: commit_batch(wh, batch_of({"id": "k1", "body": "v2"}, {"id": "new", "body": "v1"})),
        lambda: commit_batch(wh, bad),
        lambda: commit_batch(wh, batch_of({"id": "late", "body": "stored now"}, *({"id": f"k{i}", "body": "v1"} for i in range(40))), key="refresh:q", sweep=True),
        lambda: wh.reset("mintlify"),
        lambda: commit_batch(wh, batch_of({"id": "k3", "body": "v4", "created_at": "2026-03-02T00:00:00Z"})),
    ]
    for step in steps:
        step()
        result = wh.publish_if_behind()
        modes.append(result.mode if result else None)
    assert modes == ["incremental", "incremental", "incremental", None, "incremental"]
    full = Warehouse(tmp_path / "full" / "feedback.duckdb")
    full.path.parent.mkdir()
    with wh.session() as session, session.cursor() as cursor:  # a full copy of the same working database
        publish._full_copy(cursor.con, wh.files, full.files.snapshots[0], changes.generations(cursor.con)[0])
    for table, sql in TABLES.items():
        published = snapshot_rows(wh, sql)
        con = duckdb.connect(str(full.files.snapshots[0]), read_only=True)
        try:
            copied = con.execute(sql).fetchall()
        finally:
            con.close()
        assert published == copied, table
        assert published == work_rows(wh, sql), table
    assert ("mintlify",) not in snapshot_rows(wh, "SELECT DISTINCT provider FROM feedback")


def test_a_run_that_changes_nothing_writes_no_file(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "a", "body": "x"}), resume={"after": "c1"})
    assert wh.publish_if_behind() is not None
    commit_batch(wh, batch_of({"id": "b"}))
    assert wh.publish_if_behind() is not None
    before = stats(wh)
    # Unchanged rows with a new cursor, a finished query marking days synced, a dropped cursor:
    # nothing analysts see changed.
    commit_batch(wh, batch_of({"id": "a", "body": "x"}), resume={"after": "c2"})
    commit_batch(wh, batch_of(), resume=None)
    with wh.session() as session:
        with session.cursor() as cursor:
            cursor.drop_cursor("mapbox", "acct", "window:q")
        assert session.publish_if_behind() is None
    assert stats(wh) == before
    # FEEDBACK_DB deleted by hand is behind.
    wh.path.unlink()
    assert wh.publish_if_behind() is not None and [r[0] for r in snapshot_rows(wh)] == ["a", "b"]


def test_an_incremental_publish_rewrites_only_the_state_rows_that_changed(wh: Warehouse):
    """pipeline_sync_days holds a row per provider, account and day of the whole history: a
    publish writes the rows of the days its run synced, and leaves every other row where it is."""
    days = [D1 + timedelta(days=n) for n in range(3)]
    commit_batch(wh, batch_of({"id": "a"}), scope=Scope("mapbox", "acct", days[0], days[2]))  # the query ends: 3 days synced
    commit_batch(wh, batch_of({"id": "b"}), scope=Scope("usersnap", "acct", days[0], days[0]), key="window:u")
    assert wh.publish_if_behind().mode == "full"
    idle = wh.files.idle()
    sql = "SELECT provider, day, rowid FROM pipeline_sync_days ORDER BY provider, day"
    con = duckdb.connect(str(idle), read_only=True)
    try:
        before = {(p, d): rowid for p, d, rowid in con.execute(sql).fetchall()}
    finally:
        con.close()
    later = batch_of({"id": "c", "created_at": f"{days[2]}T09:00:00Z"})
    commit_batch(wh, later, scope=Scope("mapbox", "acct", days[2], days[2]), key="window:later")  # a row, and day 3 synced again
    assert wh.publish_if_behind().mode == "incremental"
    assert os.path.realpath(wh.path) == str(idle)
    after = {(p, d): rowid for p, d, rowid in snapshot_rows(wh, sql)}
    assert after.keys() == before.keys() and len(after) == 4
    assert [k for k in after if after[k] != before[k]] == [("mapbox", days[2])]
    for table, key in publish.STATE_TABLES.items():
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert snapshot_rows(wh, query) == work_rows(wh, query), table


def test_the_change_log_is_pruned_below_both_files_generations(wh: Warehouse):
    for n in range(4):
        commit_batch(wh, batch_of({"id": f"r{n}", "body": str(n)}))
        wh.publish_if_behind()
    generation, published, since = work_rows(wh, "SELECT generation, published, changes_since FROM pipeline_publish")[0]
    files = dict(work_rows(wh, "SELECT file, generation FROM pipeline_snapshot_files"))
    assert published == generation and files["a"] != files["b"]
    assert since == min(files.values())
    assert work_rows(wh, "SELECT min(generation), count(*) FROM pipeline_changes") == [(generation, 1)]  # only what file a lacks


def test_a_file_older_than_the_change_log_is_rebuilt_from_the_live_file(wh: Warehouse):
    for n in range(3):
        commit_batch(wh, batch_of({"id": f"r{n}"}))
        wh.publish_if_behind()
    with wh.session() as session, session.cursor() as cursor:
        cursor.con.execute("UPDATE pipeline_publish SET changes_since = generation")  # as if pruned past file b
    commit_batch(wh, batch_of({"id": "r9"}))
    assert wh.publish_if_behind().mode == "copied"
    assert [r[0] for r in snapshot_rows(wh)] == ["r0", "r1", "r2", "r9"]


def test_a_file_older_than_the_change_log_with_no_live_base_is_rebuilt_in_full(wh: Warehouse):
    for n in range(3):
        commit_batch(wh, batch_of({"id": f"r{n}"}))
        wh.publish_if_behind()
    with wh.session() as session, session.cursor() as cursor:
        cursor.con.execute("UPDATE pipeline_publish SET changes_since = generation + 1")  # pruned past both files
    commit_batch(wh, batch_of({"id": "r9"}))
    assert wh.publish_if_behind().mode == "full"
    assert [r[0] for r in snapshot_rows(wh)] == ["r0", "r1", "r2", "r9"]


def test_a_working_database_created_again_beside_old_snapshots_is_published_in_full(wh: Warehouse, tmp_path: Path):
    """An operator who deletes the working database to start over keeps the two snapshot files:
    their generations count in the old database, so the new one's changes since such a generation
    are not the difference between the two, whatever the numbers say."""
    commit_batch(wh, batch_of({"id": "old"}))
    wh.publish_if_behind()
    reader = duckdb.connect(str(wh.files.snapshots[0]), read_only=True)
    old_generation = reader.execute("SELECT generation FROM pipeline_publish").fetchone()[0]
    reader.close()
    wh.files.work.unlink()

    fresh = Warehouse(tmp_path / "feedback.duckdb")
    commit_batch(fresh, batch_of(*({"id": f"bulk{n:03}"} for n in range(100))))
    small = 0
    while True:  # a few small commits take the new generations past the old files' one
        commit_batch(fresh, batch_of({"id": f"new{small}"}))
        small += 1
        with fresh.session() as session, session.cursor() as cursor:
            if cursor.con.execute("SELECT generation FROM pipeline_publish").fetchone()[0] > old_generation + 2:
                break
    assert fresh.publish_if_behind().mode == "full"
    assert [r[0] for r in snapshot_rows(fresh)] == sorted([f"bulk{n:03}" for n in range(100)] + [f"new{n}" for n in range(small)])


def _hold_reader(path: str, ready, release, result) -> None:
    con = duckdb.connect(path, read_only=True)
    before = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    ready.set()
    release.wait(60)
    after = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    result.put((before, after))
    con.close()


def test_a_reader_holding_the_idle_file_gets_a_patched_copy_of_the_live_file_and_is_never_disturbed(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "a"}))
    wh.publish_if_behind()  # file a
    commit_batch(wh, batch_of({"id": "b"}))
    wh.publish_if_behind()  # file b
    commit_batch(wh, batch_of({"id": "c"}))
    assert wh.publish_if_behind().mode == "incremental"  # file a again, nobody held it
    ctx = multiprocessing.get_context("spawn")
    ready, release, result = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_hold_reader, args=(str(wh.path), ready, release, result))  # holds file a
    reader.start()
    try:
        assert ready.wait(60)
        commit_batch(wh, batch_of({"id": "d"}))
        assert wh.publish_if_behind().mode == "incremental"  # file b: free
        commit_batch(wh, batch_of({"id": "e"}))
        assert wh.publish_if_behind().mode == "copied"  # file a is held: b's bytes + the change take its name
        assert [r[0] for r in snapshot_rows(wh)] == ["a", "b", "c", "d", "e"]  # a new connection sees it all
    finally:
        release.set()
        reader.join(60)
    assert result.get(timeout=5) == (3, 3)  # the held session kept its consistent view


def test_a_regular_file_left_by_an_older_version_is_replaced_by_the_symlink(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "a"}))
    wh.publish_if_behind()
    wh.path.unlink()
    wh.path.write_bytes(b"an old snapshot copy")
    assert wh.publish_if_behind() is not None  # behind: FEEDBACK_DB is not one of the snapshot files
    assert wh.path.is_symlink() and [r[0] for r in snapshot_rows(wh)] == ["a"]


@pytest.mark.parametrize("failing", ["_apply", "fsync_file"], ids=["in-place apply", "full copy"])
def test_a_failed_publish_changes_nothing_analysts_see_and_is_redone(wh: Warehouse, monkeypatch, failing: str):
    monkeypatch.setattr(changes, "FULL_COPY_MIN_KEYS", 0)
    commit_batch(wh, batch_of(*({"id": f"a{i}"} for i in range(10))))
    wh.publish_if_behind()
    # One new key of 11 is applied in place; 20 new keys of 30 ask for a full copy.
    commit_batch(wh, batch_of(*({"id": f"b{i}"} for i in range(1 if failing == "_apply" else 20))))

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    before = snapshot_rows(wh)
    with monkeypatch.context() as failure:
        failure.setattr(publish, failing, disk_full)
        with pytest.raises(OSError, match="disk full"):
            wh.publish_if_behind()
    assert snapshot_rows(wh) == before
    assert wh.publish_if_behind() is not None and snapshot_rows(wh) == work_rows(wh)
    assert len(before) == 10 and wh.publish_if_behind() is None


def test_reset_forgets_one_provider_only_and_publishes(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "a"}), resume={"after": "x"})
    other = FeedbackBatch("mintlify", "acct")
    other.add({}, feedback_id="m", collected_at="2026-03-01T00:00:00Z")
    commit_batch(wh, other, scope=Scope("mintlify", "acct", D1, D1 + timedelta(days=1)))
    removed = wh.reset("mapbox")
    assert removed["feedback"] == 1 and removed["pipeline_cursors"] == 1
    assert work_rows(wh, "SELECT provider FROM feedback") == [("mintlify",)]
    assert snapshot_rows(wh, "SELECT provider FROM feedback") == [("mintlify",)]


def test_the_reset_command_uses_feedback_db(tmp_path: Path, monkeypatch, capsys):
    from feedback_pipeline.cli import main

    wh = Warehouse(tmp_path / "x.duckdb")
    commit_batch(wh, batch_of({"id": "a"}))
    monkeypatch.setenv("FEEDBACK_DB", str(wh.path))
    assert main(["reset", "mapbox"]) == 0
    assert "removed 1 from feedback" in capsys.readouterr().out
    assert work_rows(wh, "SELECT count(*) FROM feedback") == [(0,)]


def test_a_file_behind_by_a_large_share_of_the_table_is_rebuilt_in_full(wh: Warehouse, monkeypatch):
    monkeypatch.setattr(changes, "FULL_COPY_MIN_KEYS", 0)
    commit_batch(wh, batch_of(*({"id": f"r{i}"} for i in range(20))))
    wh.publish_if_behind()
    with wh.session() as session:
        session.publish()  # both files exist and are current
    commit_batch(wh, batch_of({"id": "r0", "body": "changed"}))
    assert wh.publish_if_behind().mode == "incremental"  # 1 of 20 keys
    commit_batch(wh, batch_of(*({"id": f"r{i}", "body": "changed"} for i in range(1, 4))))
    assert wh.publish_if_behind().mode == "full"  # this file lacks 4 of 20 keys


def test_a_publish_after_a_large_change_writes_a_full_copy_then_copies_it_over_the_other_file(wh: Warehouse, monkeypatch):
    """The live file is not copied first (it is too far behind to patch); the new file is, over the
    other name, so the next publish applies one run's changes instead of copying the file."""
    monkeypatch.setattr(changes, "FULL_COPY_MIN_KEYS", 0)
    commit_batch(wh, batch_of(*({"id": f"r{i}"} for i in range(4))))
    wh.publish_if_behind()
    copies = []
    original = publish._byte_copy
    monkeypatch.setattr(publish, "_byte_copy", lambda files, source: copies.append(source) or original(files, source))
    commit_batch(wh, batch_of(*({"id": f"s{i}"} for i in range(20))))  # 20 new of 24 keys: a backfill
    assert wh.publish_if_behind().mode == "full"
    assert copies == [wh.files.snapshots[1]]  # the new file b, copied over file a after the switch
    generation = work_rows(wh, "SELECT generation FROM pipeline_publish")[0][0]
    assert dict(work_rows(wh, "SELECT file, generation FROM pipeline_snapshot_files")) == {"a": generation, "b": generation}
    commit_batch(wh, batch_of({"id": "r0", "body": "changed"}))
    assert wh.publish_if_behind().mode == "incremental"  # file a lacks only this change
    assert len(copies) == 1
    assert snapshot_rows(wh, "SELECT count(*), count(body) FROM feedback") == [(24, 1)]
    con = duckdb.connect(str(wh.files.snapshots[1]), read_only=True)  # file b: the full copy, untouched since
    try:
        assert con.execute("SELECT count(*), count(body) FROM feedback").fetchall() == [(24, 0)]
    finally:
        con.close()


def test_a_commit_logs_its_keys_with_the_instant_it_stamped_on_their_rows(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "z"}))
    wh.publish_if_behind()  # before the first publish no key is logged: it copies everything
    commit_batch(wh, batch_of({"id": "a"}, {"id": "b"}))
    commit_batch(wh, batch_of({"id": "b", "body": "changed"}, {"id": "c"}))
    logged = work_rows(wh, "SELECT feedback_id, ingested_at FROM pipeline_changes WHERE feedback_id IS NOT NULL ORDER BY generation, feedback_id")
    stamped = dict(work_rows(wh, "SELECT feedback_id, ingested_at FROM feedback"))
    assert [k for k, _ in logged] == ["a", "b", "b", "c"]
    assert logged[2:] == [("b", stamped["b"]), ("c", stamped["c"])]  # the latest write of each key
    assert logged[0] == ("a", stamped["a"]) and logged[1][1] < stamped["b"]
    with wh.session() as session, session.cursor() as cursor:
        first_generation = cursor.query("SELECT min(generation) FROM pipeline_changes WHERE feedback_id IS NOT NULL")[0][0]
        assert changes.written_since(cursor.con, first_generation - 1) == stamped["a"]
        assert changes.written_since(cursor.con, first_generation) == stamped["c"]


def test_keys_logged_without_an_instant_are_published_without_the_bound(wh: Warehouse):
    """Entries logged before migration 9 have no ``ingested_at``: the publish then reads the
    changed dates without the ``ingested_at`` bound, and still applies every change."""
    commit_batch(wh, batch_of(*({"id": f"k{i}"} for i in range(5))))
    wh.publish_if_behind()
    commit_batch(wh, batch_of({"id": "k1", "body": "v2"}))
    commit_batch(wh, batch_of({"id": "k2", "body": "v2"}))
    with wh.session() as session, session.cursor() as cursor:
        held = cursor.query("SELECT generation FROM pipeline_snapshot_files WHERE file = 'b'")[0][0]
        cursor.con.execute("UPDATE pipeline_changes SET ingested_at = NULL WHERE feedback_id = 'k2'")
        assert changes.written_since(cursor.con, held) is None
    assert wh.publish_if_behind().mode == "incremental"
    assert snapshot_rows(wh) == work_rows(wh)
    assert [r[1] for r in snapshot_rows(wh)] == [None, "v2", "v2", None, None]


def test_a_full_copy_of_several_row_groups_holds_every_row_once_in_both_files(wh: Warehouse):
    """The full copy inserts on both threads, without keeping the insertion order: a table of
    three row groups (DuckDB's are 122,880 rows) still arrives whole, each row once."""
    with wh.session() as session, session.cursor() as cursor:
        con = cursor.con
        with transaction(con):
            con.execute(
                """INSERT INTO feedback (provider, account_id, feedback_id, collected_at, collected_date, body, attributes, ingested_at)
                SELECT 'mapbox', 'acct', 'k' || i, TIMESTAMPTZ '2026-03-01 00:00:00+00' + to_seconds(i), (TIMESTAMPTZ '2026-03-01 00:00:00+00' + to_seconds(i))::DATE,
                       'body ' || i, '{}', TIMESTAMPTZ '2026-03-05 00:00:00+00'
                FROM range(300000) t(i)"""
            )
            changes.log_everything(con, changes.bump(con))
    assert wh.publish_if_behind().mode == "full"
    digest = "SELECT count(*), count(DISTINCT feedback_id), sum(hash(feedback_id, body, collected_at)) FROM feedback"
    expected = work_rows(wh, digest)
    assert expected[0][:2] == (300000, 300000)
    for snapshot in wh.files.snapshots:
        con = duckdb.connect(str(snapshot), read_only=True)
        try:
            assert con.execute(digest).fetchall() == expected, snapshot.name
        finally:
            con.close()


def _located(wh: Warehouse) -> tuple | None:
    """``changes.located_dates`` from the idle file's generation: what the next publish applies."""
    with wh.session() as session, session.cursor() as cursor:
        idle = publish._file_id(wh.files.idle())
        held = cursor.con.execute("SELECT generation FROM pipeline_snapshot_files WHERE file = ?", [idle]).fetchone()[0]
        return changes.located_dates(cursor.con, held)


def test_publish_deletes_old_copies_of_moved_and_swept_keys_on_the_dates_the_log_located(wh: Warehouse):
    """The publish deletes a snapshot's old copies only on the dates the log located them on: a
    key whose collected date moved is located by the date its stored row had (previous_date)."""
    day3 = "2026-03-03T10:00:00Z"
    commit_batch(wh, batch_of({"id": "moves", "body": "v1"}, {"id": "swept"}, {"id": "stays", "created_at": day3}))
    assert wh.publish_if_behind().mode == "full"  # both files at this generation
    # Only the moved key changed since: the range must still reach back to its old date.
    commit_batch(wh, batch_of({"id": "moves", "body": "v2", "created_at": day3}))
    assert _located(wh) == (D1, D1 + timedelta(days=2))
    assert wh.publish_if_behind().mode == "incremental"
    assert snapshot_rows(wh, "SELECT feedback_id, collected_date FROM feedback ORDER BY ALL") == work_rows(
        wh, "SELECT feedback_id, collected_date FROM feedback ORDER BY ALL"
    ) == [("moves", D1 + timedelta(days=2)), ("stays", D1 + timedelta(days=2)), ("swept", D1)]
    # A sweep logs where the deleted row was.
    commit_batch(wh, batch_of({"id": "moves", "body": "v2", "created_at": day3}, {"id": "stays", "created_at": day3}), key="refresh:q", resume=None, sweep=True)
    assert _located(wh) == (D1, D1 + timedelta(days=2))
    assert wh.publish_if_behind().mode == "incremental"
    assert [r[0] for r in snapshot_rows(wh)] == [r[0] for r in work_rows(wh)] == ["moves", "stays"]


def test_a_delete_that_does_not_say_where_its_row_was_makes_the_publish_look_everywhere(wh: Warehouse):
    commit_batch(wh, batch_of({"id": "a", "body": "x"}, {"id": "b"}))
    wh.publish_if_behind()
    with wh.session() as session, session.cursor() as cursor, transaction(cursor.con):
        generation = changes.bump(cursor.con)
        cursor.con.execute("DELETE FROM feedback WHERE feedback_id = 'a'")
        cursor.con.execute(f"INSERT INTO pipeline_changes ({changes.LOG_COLUMNS}) VALUES (?, 'mapbox', 'acct', 'a', NULL)", [generation])
    assert _located(wh) is None
    assert wh.publish_if_behind().mode == "incremental"
    assert [r[0] for r in snapshot_rows(wh)] == ["b"]
