"""Sessions: the writer lock held for a session's life, one connection shared by thread cursors,
commits serialized, check numbers scoped to the window."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import filelock
import pytest

from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Progress, Scope, Warehouse

from .conftest import WAREHOUSE_DAY as D1
from .conftest import batch_of, commit_batch, work_rows


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def test_a_session_holds_the_writer_lock_until_it_closes(wh: Warehouse):
    other = Warehouse(wh.path, lock_timeout=0.2)
    with wh.session():
        with pytest.raises(filelock.Timeout):
            with other.session():
                pass
    with other.session():  # released on exit
        pass


def test_threads_commit_through_their_own_cursors_one_transaction_at_a_time(wh: Warehouse):
    providers = ("mintlify", "usersnap", "formbricks", "mapbox")
    errors: list[BaseException] = []

    def work(session, provider: str) -> None:
        try:
            with session.cursor() as cursor:
                for n in range(5):
                    batch = FeedbackBatch(provider, "acct")
                    for i in range(20):
                        batch.add({}, feedback_id=f"{n}-{i}", collected_at="2026-03-01T10:00:00Z", body=provider)
                    progress = Progress("window:q", D1, D1, None, datetime.now(timezone.utc), n + 1, {"n": n} if n < 4 else None)
                    cursor.commit(Scope(provider, "acct", D1, D1), batch.rows(), batch.rejects(), progress)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    wh.publish_if_behind()  # a snapshot to keep current: keys are logged for it (changes.key_log_state)
    with wh.session() as session:
        threads = [threading.Thread(target=work, args=(session, p)) for p in providers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    assert work_rows(wh, "SELECT provider, count(*) FROM feedback GROUP BY ALL ORDER BY ALL") == [(p, 100) for p in sorted(providers)]
    assert work_rows(wh, "SELECT count(DISTINCT generation) FROM pipeline_changes WHERE provider IS NOT NULL") == [(20,)]


def test_check_stats_count_only_the_window(wh: Warehouse):
    scope = Scope("mapbox", "acct", D1, D1 + timedelta(days=9))
    commit_batch(wh, batch_of({"id": "in1"}, {"id": "in2", "created_at": "2026-03-02T00:00:00Z"}, {"id": "out", "created_at": "2026-03-08T00:00:00Z"}), scope=scope)
    with wh.session() as session:
        with session.cursor() as cursor:  # damage the window on purpose: a key twice, a wrong date
            cursor.con.execute("INSERT INTO feedback SELECT * REPLACE ('dup' AS feedback_id) FROM feedback WHERE feedback_id = 'in1'")
            cursor.con.execute("INSERT INTO feedback SELECT * REPLACE ('dup' AS feedback_id) FROM feedback WHERE feedback_id = 'in1'")
            cursor.con.execute("UPDATE feedback SET collected_date = DATE '2026-03-03' WHERE feedback_id = 'in2'")
        stats = session.check_stats("mapbox", "acct", D1, D1 + timedelta(days=2))
    assert (stats.rows_in_window, stats.duplicate_keys, stats.bad_collected) == (4, 1, 1)


def test_check_stats_without_an_account_cover_every_account_and_a_key_shared_by_two_is_no_duplicate(wh: Warehouse):
    scope = Scope("mapbox", "acct", D1, D1 + timedelta(days=9))
    commit_batch(wh, batch_of({"id": "in1"}, {"id": "in2"}), scope=scope)
    with wh.session() as session:
        with session.cursor() as cursor:  # another account holding the same feedback id
            cursor.con.execute("INSERT INTO feedback SELECT * REPLACE ('other' AS account_id) FROM feedback WHERE feedback_id = 'in1'")
        every = session.check_stats("mapbox", None, D1, D1 + timedelta(days=2))
        one = session.check_stats("mapbox", "acct", D1, D1 + timedelta(days=2))
    assert (every.rows_in_window, every.duplicate_keys, every.bad_collected) == (3, 0, 0)
    assert (one.rows_in_window, one.duplicate_keys) == (2, 0)


def _wal_bytes(wh: Warehouse) -> int:
    wal = wh.files.work.with_name(wh.files.work.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def test_commits_stay_in_the_wal_until_a_publish_checkpoints_them(wh: Warehouse):
    with wh.session() as session:
        with session.cursor() as cursor:
            scope = Scope("mapbox", "acct", D1, D1)
            progress = Progress("window:q", D1, D1, None, datetime(2026, 3, 2, tzinfo=timezone.utc), 1, {"after": "c1"})
            batch = batch_of(*({"id": f"r{i}", "body": "x" * 1000} for i in range(2000)))
            cursor.commit(scope, batch.rows(), batch.rejects(), progress)
        rows_wal = _wal_bytes(wh)
        assert rows_wal > 2_000_000  # the rows: no automatic checkpoint after a small commit
        assert session.publish_if_behind() is not None
        # The rows were checkpointed; only the publish's own records are left (the snapshot
        # files' generations and the change log's pruning: the 2,000 logged keys deleted).
        assert _wal_bytes(wh) < rows_wal / 50
        assert session.query("SELECT count(*) FROM feedback") == [(2000,)]


def test_the_working_connection_checkpoints_automatically_only_past_the_session_threshold(wh: Warehouse):
    with wh.session() as session:
        assert session.query("SELECT current_setting('checkpoint_threshold')") == [("244.1 MiB",)]  # 256MB


def test_the_checks_query_runs_on_a_checkpointed_file_when_the_wal_is_large(wh: Warehouse, monkeypatch):
    import feedback_pipeline.warehouse.session as session_module

    with wh.session() as session, session.cursor() as cursor:
        scope = Scope("mapbox", "acct", D1, D1)
        progress = Progress("window:q", D1, D1, None, datetime(2026, 3, 2, tzinfo=timezone.utc), 1, {"after": "c1"})
        batch = batch_of(*({"id": f"r{i}", "body": "x" * 50} for i in range(2000)))
        cursor.commit(scope, batch.rows(), batch.rejects(), progress)
        cursor.check_stats("mapbox", "acct", D1, D1)
        assert _wal_bytes(wh) > 100_000  # under the limit: no checkpoint
        monkeypatch.setattr(session_module, "CHECKS_WAL_BYTES", 100_000)
        stats = cursor.check_stats("mapbox", "acct", D1, D1)
        assert _wal_bytes(wh) < 4096
        assert stats.rows_in_window == 2000


def test_work_waiting_for_the_first_change_runs_once_after_the_first_commit_that_changes_rows(wh: Warehouse):
    def commit(session, body: str, sibling: bool = False) -> None:
        batch = FeedbackBatch("mapbox", "acct")
        batch.add({}, feedback_id="1", collected_at="2026-03-01T10:00:00Z", body=body)
        progress = Progress("window:q", D1, D1, None, datetime.now(timezone.utc), 1, None)
        with session.cursor() as cursor:
            if sibling:
                with cursor.sibling() as other:
                    other.commit(Scope("mapbox", "acct", D1, D1), batch.rows(), batch.rejects(), progress)
            else:
                cursor.commit(Scope("mapbox", "acct", D1, D1), batch.rows(), batch.rejects(), progress)

    with wh.session() as session:
        commit(session, "first")  # stored before anyone waits
    calls: list[str] = []
    with wh.session() as session:
        session.on_first_change(lambda: calls.append("a"))
        session.on_first_change(lambda: 1 / 0)  # a failing callback is logged, not raised
        session.on_first_change(lambda: calls.append("b"))
        commit(session, "first")  # the same row again: nothing changes
        assert calls == []
        commit(session, "second", sibling=True)  # an update, through another thread's cursor
        assert calls == ["a", "b"]
        commit(session, "third")
        session.on_first_change(lambda: calls.append("late"))  # the change already happened: at once
        assert calls == ["a", "b", "late"]
