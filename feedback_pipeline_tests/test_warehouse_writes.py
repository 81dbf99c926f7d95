"""The batch commit: rows and cursor in one transaction, upsert rules, rejects, sweeps, change log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

import feedback_pipeline.warehouse.state as state
import feedback_pipeline.warehouse.writes as writes
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Progress, Scope, Warehouse, WriteCounts

from .conftest import WAREHOUSE_DAY as D1
from .conftest import batch_of, commit_batch, snapshot_rows, work_rows

commit = commit_batch
rows = work_rows


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def stored_cursor(wh: Warehouse, key: str = "window:q"):
    with wh.session() as session, session.cursor() as cursor:
        return cursor.stored_cursor("mapbox", "acct", key)


def test_rows_and_cursor_commit_together(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "x"}), resume={"after": "c1"})
    assert [r[:2] for r in rows(wh)] == [("a", "x")]
    assert stored_cursor(wh).resume == {"after": "c1"}


def test_failure_before_commit_keeps_previous_rows_and_cursor(wh: Warehouse, monkeypatch):
    wh.publish_if_behind()  # a snapshot to keep current: keys are logged for it (changes.key_log_state)
    commit(wh, batch_of({"id": "a", "body": "old"}), resume={"after": "c1"})
    original = state.write_cursor

    def write_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("injected failure before COMMIT")

    monkeypatch.setattr(state, "write_cursor", write_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        commit(wh, batch_of({"id": "a", "body": "new"}, {"id": "b", "body": "b"}), resume={"after": "c2"})
    monkeypatch.undo()
    assert [r[:2] for r in rows(wh)] == [("a", "old")]
    assert stored_cursor(wh).resume == {"after": "c1"}
    assert rows(wh, "SELECT generation FROM pipeline_publish") == rows(wh, "SELECT max(generation) FROM pipeline_changes")


def test_unchanged_rows_are_not_rewritten_and_keep_ingested_at(wh: Warehouse):
    record = {"id": "a", "body": "same", "updated_at": "2026-03-01T11:00:00Z", "attributes": {"k": [1, 2]}}
    first = commit(wh, batch_of(record))
    before = rows(wh)
    generation = rows(wh, "SELECT generation FROM pipeline_publish")
    second = commit(wh, batch_of(record))
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (1, 0, 0, 1)
    assert rows(wh) == before
    assert second.changed == 0
    assert rows(wh, "SELECT generation FROM pipeline_publish") == generation  # nothing to publish


def test_changed_rows_are_replaced_once(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "v1", "updated_at": "2026-03-01T11:00:00Z"}))
    counts = commit(wh, batch_of({"id": "a", "body": "v2", "updated_at": "2026-03-02T11:00:00Z"}))
    assert counts.updated == 1
    assert [r[:2] for r in rows(wh)] == [("a", "v2")]


def test_a_re_read_window_whose_rows_lie_scattered_is_rewritten_side_by_side_unlogged(wh: Warehouse):
    # 60 days of 300 records stored in an order that mixes the days, as FeedbackKit's vote order
    # does: each day's rows lie one in 60 over 18,000 rows (nine 2,048-row vectors).
    days = 60
    records = [{"id": f"d{d:02d}-{i:03d}", "created_at": f"{D1 + timedelta(days=d)}T10:00:00Z", "body": f"b{d}-{i}"} for i in range(300) for d in range(days)]
    commit(wh, batch_of(*records), scope=Scope("mapbox", "acct", D1, D1 + timedelta(days=days - 1)))
    wh.publish_if_behind()
    day = Scope("mapbox", "acct", D1 + timedelta(days=5), D1 + timedelta(days=5))
    window = [dict(r) for r in records if r["id"].startswith("d05-")]
    for r in window[:10]:
        r["body"] += " edited"
    of_day = "SELECT rowid, feedback_id, body, ingested_at FROM feedback WHERE feedback_id LIKE 'd05-%' ORDER BY feedback_id"
    before = rows(wh, of_day)
    assert len({r[0] >> 11 for r in before}) == 9

    counts = commit(wh, batch_of(*window), scope=day)
    assert (counts.updated, counts.unchanged, counts.relocated) == (10, 290, 290)
    after = rows(wh, of_day)
    assert [r[1:] for r in after[10:]] == [r[1:] for r in before[10:]], "the unchanged rows kept their content and ingested_at"
    assert [r[2] for r in after[:10]] == [r["body"] for r in window[:10]]
    assert max(r[0] for r in after) - min(r[0] for r in after) == 299, "the day's 300 rows now lie side by side"
    assert rows(wh, "SELECT count(*), count(DISTINCT feedback_id) FROM feedback") == [(18_000, 18_000)]
    # Only the 10 updated keys were logged: the next publish applies them and nothing else, and
    # the snapshot equals the working database row for row.
    assert wh.publish_if_behind().rows_applied == 10
    everything = "SELECT feedback_id, body, ingested_at FROM feedback ORDER BY feedback_id"
    assert snapshot_rows(wh, everything) == rows(wh, everything)

    again = commit(wh, batch_of(*window), scope=day)
    assert (again.unchanged, again.relocated) == (300, 0), "rows side by side stay where they are"
    assert wh.publish_if_behind() is None


def test_rows_interleaved_as_several_accounts_hourly_appends_are_left_where_they_are(wh: Warehouse):
    # One account's 2,100 rows of a day, one in eight over 16,800 rows (as eight accounts' hourly
    # appends interleave): 9 vectors where side by side they would fill 2, too little to rewrite.
    records = [{"id": f"{p}-{i:04d}", "created_at": f"{D1}T10:00:00Z", "body": "b"} for i in range(2_100) for p in "abcdefgh"]
    commit(wh, batch_of(*records))
    of_a = "SELECT rowid FROM feedback WHERE feedback_id LIKE 'a-%' ORDER BY rowid"
    before = rows(wh, of_a)
    assert len({r[0] >> 11 for r in before}) == 9
    counts = commit(wh, batch_of(*[r for r in records if r["id"].startswith("a-")]))
    assert (counts.unchanged, counts.relocated) == (2_100, 0)
    assert rows(wh, of_a) == before


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


def test_batches_with_and_without_repeated_ids_alternate_on_one_cursor(wh: Warehouse):
    """A batch of distinct ids is staged in place (the Arrow table itself), one with a repeated id
    through a deduplicated temp table; both are named _stage, one after the other."""
    scope = Scope("mapbox", "acct", D1, D1 + timedelta(days=2))

    def progress(resume):
        return Progress("window:q", scope.first_day, scope.last_day, None, datetime(2026, 3, 4, tzinfo=timezone.utc), 1, resume)

    with wh.session() as session, session.cursor() as cursor:
        for batch, resume in (
            (batch_of({"id": "a", "body": "1"}, {"id": "a", "body": "2"}), {"n": 1}),
            (batch_of({"id": "b", "body": "3"}, {"id": "c", "body": "4"}), {"n": 2}),
            (batch_of({"id": "c", "body": "5"}, {"id": "c", "body": "6"}, {"id": "d", "body": "7"}), None),
        ):
            cursor.commit(scope, batch.rows(), batch.rejects(), progress(resume))
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


def test_a_batch_wholly_inside_the_run_range_is_staged_without_a_copy():
    batch = batch_of({"id": "a"}, {"id": "b", "created_at": "2026-03-03T23:59:59Z"}).rows()
    inside = Scope("mapbox", "acct", D1, D1 + timedelta(days=2))
    assert writes._in_scope(batch, inside) is batch
    assert writes._in_scope(batch, Scope("mapbox", "acct", D1 + timedelta(days=1), D1 + timedelta(days=2))).num_rows == 1


def test_attributes_are_staged_as_json_so_the_insert_parses_no_text(wh: Warehouse):
    con = duckdb.connect()
    batch = batch_of({"id": "a", "attributes": {"k": [1, 2], "s": "é"}})
    staged = writes.stage(con, Scope("mapbox", "acct", D1, D1), batch.rows(), WriteCounts())
    assert con.execute(f"SELECT typeof(attributes), attributes::VARCHAR FROM {staged}").fetchall() == [("JSON", '{"k":[1,2],"s":"é"}')]
    commit(wh, batch)
    assert rows(wh, "SELECT typeof(attributes), attributes->>'$.s', json_array_length(attributes->'$.k') FROM feedback") == [("JSON", "é", 2)]


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


def test_a_record_both_rejected_and_stored_in_one_batch_keeps_no_reject(wh: Warehouse):
    """A page can hold a record twice (a provider re-sends it while paging), once unreadable and
    once whole: the whole copy is stored and no reject of it stays beside the row, whichever came first."""
    unreadable_first = ({"id": "a", "created_at": "not a date"}, {"id": "a", "body": "ok"})
    whole_first = ({"id": "b", "body": "ok"}, {"id": "b", "created_at": "not a date"})
    written = []
    for records in (unreadable_first, whole_first):
        batch = batch_of(*records)
        batch.reject({"body": "no id"}, "missing_id")
        counts = commit(wh, batch)
        assert counts.rejected == 1  # only the record without an id
        written.append(counts.rejects_written)
    assert written == [1, 0]  # the second batch's missing_id reject is the same as the first's
    assert sorted(r[0] for r in rows(wh)) == ["a", "b"]
    assert rows(wh, "SELECT reason FROM feedback_rejects") == [("missing_id",)]


def test_sweep_deletes_only_unseen_rows_of_the_query_days(wh: Warehouse):
    commit(wh, batch_of({"id": "keep"}, {"id": "gone"}, {"id": "other-day", "created_at": "2026-03-05T00:00:00Z"}), scope=Scope("mapbox", "acct", D1, D1 + timedelta(days=9)))
    commit(wh, batch_of({"id": "keep"}), key="refresh:q", resume={"c": 1}, sweep=True)
    counts = commit(wh, batch_of(), key="refresh:q", resume=None, sweep=True)
    assert counts.deleted == 1
    assert sorted(r[0] for r in rows(wh)) == ["keep", "other-day"]


def test_each_change_is_logged_at_the_generation_of_its_commit(wh: Warehouse):
    """The change log names exactly the keys a commit inserted, updated or deleted, and the
    accounts whose rejects changed; unchanged rows are not logged."""
    wh.publish_if_behind()  # a snapshot to keep current: keys are logged for it (changes.key_log_state)
    commit(wh, batch_of({"id": "a", "body": "1"}, {"id": "b", "body": "1"}))
    commit(wh, batch_of({"id": "a", "body": "1"}, {"id": "b", "body": "2"}))  # b updated, a same
    sweep = batch_of({"id": "b", "body": "2"})
    sweep.reject({"body": "no id"}, "missing_id")
    commit(wh, sweep, key="refresh:q", sweep=True)  # a deleted, a reject written
    logged = rows(wh, "SELECT generation, provider, account_id, feedback_id FROM pipeline_changes WHERE provider IS NOT NULL ORDER BY ALL")
    g = logged[0][0]
    assert logged == [
        (g, "mapbox", "acct", "a"), (g, "mapbox", "acct", "b"),
        (g + 1, "mapbox", "acct", "b"),
        (g + 2, "mapbox", "acct", "a"), (g + 2, "mapbox", "acct", None),
    ]
    assert rows(wh, "SELECT generation FROM pipeline_publish") == [(g + 2,)]


def test_sql_looking_text_and_ids_are_stored_verbatim(wh: Warehouse):
    nasty = "Robert'); DROP TABLE feedback;--"
    commit(wh, batch_of({"id": "x' OR '1'='1", "body": nasty}))
    assert [r[:2] for r in rows(wh)] == [("x' OR '1'='1", nasty)]


def test_finishing_a_query_marks_its_days_synced_and_drops_its_cursor(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}), resume={"after": "x"})
    commit(wh, batch_of(), resume=None)
    assert stored_cursor(wh) is None
    with wh.session() as session, session.cursor() as cursor:
        days = cursor.sync_days("mapbox", "acct", D1, D1 + timedelta(days=5))
    assert sorted(days) == [D1, D1 + timedelta(days=1), D1 + timedelta(days=2)]


def test_a_dropped_cursor_is_forgotten_with_its_refresh_keys(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}), key="refresh:q", resume={"after": "x"}, sweep=True)
    with wh.session() as session, session.cursor() as cursor:
        cursor.drop_cursor("mapbox", "acct", "refresh:q")
    assert stored_cursor(wh, "refresh:q") is None
    assert rows(wh, "SELECT count(*) FROM pipeline_refresh_keys") == [(0,)]


def test_a_read_that_sweeps_nothing_leaves_an_unfinished_refresh_of_its_days_to_resume(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}, {"id": "b"}), key="refresh:q", resume={"after": "x"}, sweep=True, first=True)
    commit(wh, batch_of({"id": "a"}, {"id": "b"}))  # an ordinary read of the same days finishes
    assert stored_cursor(wh, "refresh:q") is not None, "feedback_resume must still find the refresh"
    assert rows(wh, "SELECT feedback_id FROM pipeline_refresh_keys ORDER BY 1") == [("a",), ("b",)]


def test_a_finished_sweep_drops_the_unfinished_queries_it_covers_with_the_keys_they_saw(wh: Warehouse):
    one_day = Scope("mapbox", "acct", D1, D1)
    commit(wh, batch_of({"id": "a"}), key="refresh:day", scope=one_day, resume={"after": "x"}, sweep=True, first=True)
    commit(wh, batch_of({"id": "a"}), key="window:day", scope=one_day, resume={"after": "y"})
    commit(wh, batch_of({"id": "a"}), key="refresh:q", sweep=True, first=True)  # covers both days, finishes
    assert rows(wh, "SELECT query_key FROM pipeline_cursors") == []
    assert rows(wh, "SELECT count(*) FROM pipeline_refresh_keys") == [(0,)]


def test_keys_of_a_query_whose_cursor_is_gone_never_spare_a_row_from_a_later_sweep(wh: Warehouse):
    commit(wh, batch_of({"id": "a"}, {"id": "b"}))
    commit(wh, batch_of({"id": "a"}, {"id": "b"}), key="refresh:q", resume={"after": "x"}, sweep=True, first=True)
    # Its cursor disappears but its keys stay (what an older version of finish_query left).
    with wh.session() as session, session.cursor() as cursor:
        cursor.con.execute("DELETE FROM pipeline_cursors")
    # The provider deleted b; a refresh under the same key starts afresh and sees only a.
    counts = commit(wh, batch_of({"id": "a"}), key="refresh:q", sweep=True, first=True)
    assert counts.deleted == 1 and [r[0] for r in rows(wh)] == ["a"]
    # And a finishing query clears such leftovers of its account.
    commit(wh, batch_of({"id": "a"}), key="refresh:q", resume={"after": "x"}, sweep=True, first=True)
    with wh.session() as session, session.cursor() as cursor:
        cursor.con.execute("DELETE FROM pipeline_cursors")
    commit(wh, batch_of({"id": "a"}))
    assert rows(wh, "SELECT count(*) FROM pipeline_refresh_keys") == [(0,)]


def test_other_providers_rows_are_untouched(wh: Warehouse):
    other = FeedbackBatch("mintlify", "acct")
    other.add({}, feedback_id="a", collected_at="2026-03-01T00:00:00Z", body="mintlify's")
    commit(wh, other, scope=Scope("mintlify", "acct", D1, D1))
    commit(wh, batch_of({"id": "a", "body": "mapbox's"}), key="refresh:q", sweep=True)
    assert rows(wh, "SELECT provider, body FROM feedback ORDER BY provider") == [("mapbox", "mapbox's"), ("mintlify", "mintlify's")]


def test_a_record_whose_collected_day_moved_replaces_its_stored_row(wh: Warehouse):
    commit(wh, batch_of({"id": "a", "body": "v1", "created_at": "2026-03-01T10:00:00Z", "updated_at": "2026-03-01T11:00:00Z"}))
    counts = commit(wh, batch_of({"id": "a", "body": "v2", "created_at": "2026-03-03T10:00:00Z", "updated_at": "2026-03-03T11:00:00Z"}))
    assert (counts.inserted, counts.updated) == (0, 1)
    assert rows(wh, "SELECT feedback_id, body, collected_date FROM feedback") == [("a", "v2", D1 + timedelta(days=2))]


def test_a_batch_of_new_keys_around_stored_ones_inserts_only_the_new(wh: Warehouse):
    wh.publish_if_behind()  # a snapshot to keep current: keys are logged for it (changes.key_log_state)
    commit(wh, batch_of({"id": "m", "body": "m", "updated_at": "2026-03-01T11:00:00Z"}))
    counts = commit(
        wh,
        batch_of(
            {"id": "a", "body": "a"}, {"id": "m", "body": "m", "updated_at": "2026-03-01T11:00:00Z"}, {"id": "z", "body": "z"},
        ),
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 1)
    assert [r[:2] for r in rows(wh)] == [("a", "a"), ("m", "m"), ("z", "z")]
    assert rows(wh, "SELECT feedback_id FROM pipeline_changes WHERE generation = (SELECT max(generation) FROM pipeline_changes) ORDER BY 1") == [("a",), ("z",)]
