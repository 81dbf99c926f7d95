"""The warehouse: migrations, one-transaction commits with cursors, upsert rules, publishing."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import MIGRATIONS, STORAGE_VERSION, Scope, Warehouse

UTC = timezone.utc
D1 = date(2026, 3, 1)
SCOPE = Scope("mapbox", "acct", D1, D1 + timedelta(days=2))


def batch_of(*records: dict) -> FeedbackBatch:
    batch = FeedbackBatch("mapbox", "acct")
    for r in records:
        batch.add(
            r,
            feedback_id=r["id"],
            collected_at=r.get("created_at", "2026-03-01T10:00:00Z"),
            updated_at=r.get("updated_at"),
            provider_status=r.get("status"),
            body=r.get("body"),
            attributes=r.get("attributes"),
        )
    return batch


def commit(wh: Warehouse, batch: FeedbackBatch, *, resume=None, key="window:q", scope=SCOPE, **kw):
    return wh.commit(
        scope,
        batch.rows(),
        batch.rejects(),
        query_key=key,
        query_days=(scope.first_day, scope.last_day),
        changes_since=None,
        started_at=datetime(2026, 3, 4, tzinfo=UTC),
        resume=resume,
        pages=1,
        **kw,
    )


def rows(wh: Warehouse, sql: str = "SELECT feedback_id, body, ingested_at FROM feedback ORDER BY feedback_id"):
    with wh.connect() as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def test_migrations_create_the_contract_tables_once(wh: Warehouse):
    wh.initialize()
    wh.initialize()
    with wh.connect() as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        versions = con.execute("SELECT version FROM pipeline_schema_version").fetchall()
    assert {"feedback", "feedback_rejects", "pipeline_sync_days", "pipeline_cursors"} <= tables
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_an_older_database_is_migrated_forward_keeping_its_rows(wh: Warehouse, monkeypatch):
    import feedback_pipeline.warehouse as module

    monkeypatch.setattr(module, "MIGRATIONS", MIGRATIONS[:1])
    monkeypatch.setattr(Warehouse, "_bump_generation", staticmethod(lambda con: None))  # no pipeline_publish yet
    commit(wh, batch_of({"id": "a", "body": "kept"}))
    monkeypatch.undo()
    assert [r[:2] for r in rows(wh)] == [("a", "kept")]
    assert rows(wh, "SELECT max(version) FROM pipeline_schema_version") == [(len(MIGRATIONS),)]
    assert rows(wh, "SELECT count(*) FROM feedback_daily_counts") == [(1,)]
    # The upgrade leaves the snapshot behind: its new tables and views reach the analysts with
    # the next run's publish (an older pipeline may also have died before publishing).
    assert rows(wh, "SELECT generation, published FROM pipeline_publish") == [(1, 0)]


def test_rows_and_cursor_commit_together(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "x"}), resume={"after": "c1"})
    assert [r[:2] for r in rows(wh)] == [("a", "x")]
    assert wh.cursor("mapbox", "acct", "window:q").resume == {"after": "c1"}


def test_failure_before_commit_keeps_previous_rows_and_cursor(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "old"}), resume={"after": "c1"})
    with pytest.raises(RuntimeError, match="injected"):
        commit(wh, batch_of({"id": "a", "body": "new"}, {"id": "b", "body": "b"}), resume={"after": "c2"}, fail_before_commit=True)
    assert [r[:2] for r in rows(wh)] == [("a", "old")]
    assert wh.cursor("mapbox", "acct", "window:q").resume == {"after": "c1"}


def test_unchanged_rows_are_not_rewritten_and_keep_ingested_at(wh: Warehouse):
    record = {"id": "a", "body": "same", "updated_at": "2026-03-01T11:00:00Z", "attributes": {"k": [1, 2]}}
    first = commit(wh, batch_of(record))
    before = rows(wh)
    second = commit(wh, batch_of(record))
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (1, 0, 0, 1)
    assert rows(wh) == before
    assert second.changed == 0


def test_changed_rows_are_replaced_once(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "v1", "updated_at": "2026-03-01T11:00:00Z"}))
    counts = commit(wh, batch_of({"id": "a", "body": "v2", "updated_at": "2026-03-02T11:00:00Z"}))
    assert counts.updated == 1
    assert [r[:2] for r in rows(wh)] == [("a", "v2")]


def test_same_id_twice_keeps_latest_updated_at_else_last_received(wh: Warehouse):
    commit(
        wh,
        batch_of(
            {"id": "a", "body": "newest", "updated_at": "2026-03-02T00:00:00Z"},
            {"id": "a", "body": "older", "updated_at": "2026-03-01T00:00:00Z"},
            {"id": "b", "body": "first"},
            {"id": "b", "body": "last"},
        ),
    )
    assert [r[:2] for r in rows(wh)] == [("a", "newest"), ("b", "last")]


def test_batches_with_and_without_repeated_ids_alternate_on_one_open_connection(wh: Warehouse):
    """A batch of distinct ids is staged in place (the Arrow table itself), one with a repeated id
    through a deduplicated temp table; both are named _stage, one after the other."""
    with wh.connect():  # one connection for all three commits, as a held connection is
        commit(wh, batch_of({"id": "a", "body": "1"}, {"id": "a", "body": "2"}), resume={"n": 1})
        commit(wh, batch_of({"id": "b", "body": "3"}, {"id": "c", "body": "4"}), resume={"n": 2})
        commit(wh, batch_of({"id": "c", "body": "5"}, {"id": "c", "body": "6"}, {"id": "d", "body": "7"}))
    assert [r[:2] for r in rows(wh)] == [("a", "2"), ("b", "3"), ("c", "6"), ("d", "7")]


def test_an_older_copy_never_overwrites_a_newer_row(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "new", "updated_at": "2026-03-02T00:00:00Z"}))
    counts = commit(wh, batch_of({"id": "a", "body": "stale", "updated_at": "2026-03-01T00:00:00Z"}))
    assert counts.updated == 0
    assert [r[:2] for r in rows(wh)] == [("a", "new")]


def test_rows_outside_the_run_range_are_not_written(wh: Warehouse):
    counts = commit(wh, batch_of({"id": "in", "created_at": "2026-03-03T23:59:59.999999Z"}, {"id": "out", "created_at": "2026-03-04T00:00:00Z"}))
    assert counts.out_of_window == 1
    assert [r[0] for r in rows(wh)] == ["in"]


def test_rejects_are_upserted_and_cleared_when_the_record_is_stored(wh: Warehouse):
    bad = {"id": "a", "created_at": "not a date"}
    noid = {"body": "no id"}
    batch = batch_of(bad)
    batch.reject(noid, "missing_id")
    first = commit(wh, batch)
    again = batch_of(bad)
    again.reject(noid, "missing_id")
    second = commit(wh, again)
    stored = rows(wh, "SELECT feedback_id, record_key, reason, rejected_at FROM feedback_rejects ORDER BY reason")
    assert (first.rejects_written, second.rejects_written) == (2, 0)
    assert [(r[0], r[2]) for r in stored] == [(None, "missing_id"), ("a", "unparseable_collected_at")]
    assert stored[0][1].startswith("sha256:")
    commit(wh, batch_of({"id": "a"}))
    assert rows(wh, "SELECT reason FROM feedback_rejects") == [("missing_id",)]


def test_finishing_a_query_marks_its_days_synced_and_drops_its_cursor(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}), resume={"after": "x"})
    commit(wh, batch_of(), resume=None)
    assert wh.cursor("mapbox", "acct", "window:q") is None
    assert sorted(wh.sync_days("mapbox", "acct", D1, D1 + timedelta(days=5))) == [D1, D1 + timedelta(days=1), D1 + timedelta(days=2)]


def test_sweep_deletes_only_unseen_rows_of_the_query_days(wh: Warehouse):
    commit(wh, batch_of({"id": "keep"}, {"id": "gone"}, {"id": "other-day", "created_at": "2026-03-05T00:00:00Z"}), scope=Scope("mapbox", "acct", D1, D1 + timedelta(days=9)))
    commit(wh, batch_of({"id": "keep"}), key="refresh:q", resume={"c": 1}, track_keys=True)
    counts = commit(wh, batch_of(), key="refresh:q", resume=None, sweep=True)
    assert counts.deleted == 1
    assert sorted(r[0] for r in rows(wh)) == ["keep", "other-day"]


def test_sql_looking_text_and_ids_are_stored_verbatim(wh: Warehouse):
    nasty = "Robert'); DROP TABLE feedback;--"
    commit(wh, batch_of({"id": "x' OR '1'='1", "body": nasty}))
    assert [r[:2] for r in rows(wh)] == [("x' OR '1'='1", nasty)]


def test_publish_writes_a_v1_4_snapshot_readable_read_only(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}))
    wh.publish()
    con = duckdb.connect(str(wh.path), read_only=True)
    assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
    tags = con.execute("SELECT tags FROM duckdb_databases() WHERE NOT internal AND database_name = current_database()").fetchone()[0]
    assert tags["storage_version"].startswith(STORAGE_VERSION)
    con.close()


def _hold_reader(path: str, ready, release, result) -> None:
    con = duckdb.connect(path, read_only=True)
    before = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    ready.set()
    release.wait(60)
    after = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    result.put((before, after))
    con.close()


def test_an_analyst_holding_the_database_open_never_blocks_a_write_or_publish(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}))
    wh.publish()
    ctx = multiprocessing.get_context("spawn")
    ready, release, result = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_hold_reader, args=(str(wh.path), ready, release, result))
    reader.start()
    try:
        assert ready.wait(60)
        commit(wh, batch_of({"id": "b"}))
        wh.publish()  # must neither fail nor wait for the reader
        fresh = duckdb.connect(str(wh.path), read_only=True)
        assert fresh.execute("SELECT count(*) FROM feedback").fetchone()[0] == 2
        fresh.close()
    finally:
        release.set()
        reader.join(60)
    assert result.get(timeout=5) == (1, 1)  # the analyst's session kept its consistent view


def test_reset_forgets_one_provider_only_and_publishes(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}), resume={"after": "x"})
    other = FeedbackBatch("mintlify", "acct")
    other.add({}, feedback_id="m", collected_at="2026-03-01T00:00:00Z")
    commit(wh, other, scope=Scope("mintlify", "acct", D1, D1))
    removed = wh.reset("mapbox")
    assert removed["feedback"] == 1 and removed["pipeline_cursors"] == 1
    assert rows(wh, "SELECT provider FROM feedback") == [("mintlify",)]
    con = duckdb.connect(str(wh.path), read_only=True)
    assert con.execute("SELECT provider FROM feedback").fetchall() == [("mintlify",)]
    con.close()


def test_the_reset_command_uses_feedback_db(tmp_path: Path, monkeypatch, capsys):
    from feedback_pipeline.cli import main

    wh = Warehouse(tmp_path / "x.duckdb")
    commit(wh, batch_of({"id": "a"}))
    monkeypatch.setenv("FEEDBACK_DB", str(wh.path))
    assert main(["reset", "mapbox"]) == 0
    assert "removed 1 from feedback" in capsys.readouterr().out
    assert rows(wh, "SELECT count(*) FROM feedback") == [(0,)]


def snapshot_stat(wh: Warehouse) -> tuple[int, int, int]:
    stat = os.stat(wh.path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def published_ids(wh: Warehouse) -> list[str]:
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT feedback_id FROM feedback ORDER BY feedback_id").fetchall()]
    finally:
        con.close()


def test_the_snapshot_is_copied_only_when_it_is_behind_the_working_database(wh: Warehouse):
    assert wh.initialize() is True  # no snapshot yet
    assert wh.initialize() is False
    commit(wh, batch_of({"id": "a", "body": "x"}), resume={"after": "c1"})
    assert wh.publish_if_behind() is True
    assert published_ids(wh) == ["a"]
    before = snapshot_stat(wh)
    # Unchanged rows with a new cursor, a finished query marking days synced, a dropped cursor:
    # nothing analysts see changed, so the whole file is not copied again.
    commit(wh, batch_of({"id": "a", "body": "x"}), resume={"after": "c2"})
    commit(wh, batch_of(), resume=None)
    wh.drop_cursor("mapbox", "acct", "window:q")
    assert wh.publish_if_behind() is False
    assert wh.initialize() is False
    assert snapshot_stat(wh) == before
    # A snapshot deleted by hand is behind too.
    wh.path.unlink()
    assert wh.publish_if_behind() is True and published_ids(wh) == ["a"]


def test_a_commit_left_unpublished_is_published_by_the_next_check(wh: Warehouse):
    wh.initialize()
    commit(wh, batch_of({"id": "a"}))  # ... and the process dies before publishing
    assert published_ids(wh) == []
    assert Warehouse(wh.path).initialize() is True  # the next run, before it fetches anything
    assert published_ids(wh) == ["a"]
    assert wh.publish_if_behind() is False


def test_a_publish_that_fails_before_or_after_its_rename_is_redone_never_missed(wh: Warehouse, monkeypatch):
    import feedback_pipeline.warehouse as module

    wh.initialize()
    commit(wh, batch_of({"id": "a"}))

    def broken_copy(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        wh.publish_if_behind()
    monkeypatch.undo()
    assert published_ids(wh) == []

    def died_after_rename(path):
        raise KeyboardInterrupt("killed between the rename and recording it")

    monkeypatch.setattr(module, "_fsync_dir", died_after_rename)
    with pytest.raises(KeyboardInterrupt):
        wh.publish_if_behind()
    monkeypatch.undo()
    assert published_ids(wh) == ["a"]  # renamed, but not recorded as published ...
    assert wh.publish_if_behind() is True  # ... so published once more, redundantly
    assert wh.publish_if_behind() is False


def test_reset_and_migrations_mark_the_snapshot_behind(wh: Warehouse):
    wh.initialize()
    commit(wh, batch_of({"id": "a"}))
    wh.publish()
    assert rows(wh, "SELECT generation = published FROM pipeline_publish") == [(True,)]
    with wh.transaction() as con:
        before = con.execute("SELECT generation FROM pipeline_publish").fetchone()[0]
    wh.reset("mapbox")  # bumps and publishes
    assert rows(wh, "SELECT generation, published FROM pipeline_publish") == [(before + 1, before + 1)]
    assert published_ids(wh) == []
