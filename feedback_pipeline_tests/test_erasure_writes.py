"""Suppression in the commit stages: after an erasure, a batch that still carries the person's
records stores the others only, counts the person's as suppressed (rows and would-be rejects),
never as rejects; without any erasure the filter does not run at all. Also the erasure's change
log, and the compacted working file."""

from __future__ import annotations

from pathlib import Path

import pytest

import feedback_pipeline.warehouse.writes as writes
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Warehouse

from .conftest import commit_batch, work_rows

PERSON = "Ada.Lovelace@Example.com"


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def batch(*records: dict) -> FeedbackBatch:
    """Mapbox-like records with a user id or an e-mail; ``bad`` ones are rejected with their payload."""
    out = FeedbackBatch("mapbox", "acct")
    for r in records:
        if r.get("bad"):
            out.reject(r, "missing_collected_at", feedback_id=r["id"])
        else:
            out.add(r, feedback_id=r["id"], collected_at="2026-03-01T10:00:00Z", user_id=r.get("user"), user_email=r.get("email"), body=r.get("body"))
    return out


def erase(wh: Warehouse, **who: str):
    kind, value = next(iter(who.items()))
    with wh.session() as session:
        return session.erase(kind, value, None)


def test_a_batch_after_an_erasure_stores_everyone_but_the_person(wh: Warehouse):
    erase(wh, email=PERSON.upper())
    erase(wh, user_id="user-42")
    counts = commit_batch(
        wh,
        batch(
            {"id": "a", "email": PERSON.lower()},
            {"id": "b", "email": "bob@example.com"},
            {"id": "c", "user": "user-42"},
            {"id": "d", "user": "user-421"},
            {"id": "e", "bad": True, "contact": {"mail": PERSON}},
            {"id": "f", "bad": True, "contact": {"mail": "eve@example.com"}},
        ),
    )
    assert [r[0] for r in work_rows(wh)] == ["b", "d"]
    assert [r[0] for r in work_rows(wh, "SELECT record_key FROM feedback_rejects")] == ["f"]
    assert (counts.suppressed, counts.inserted, counts.rejected, counts.rejects_written) == (3, 2, 1, 1)


def test_a_batch_of_only_the_persons_records_changes_nothing(wh: Warehouse):
    erase(wh, user_id="user-42")
    generation = work_rows(wh, "SELECT generation FROM pipeline_publish")[0][0]
    counts = commit_batch(wh, batch({"id": "a", "user": "user-42"}))
    assert counts.suppressed == 1 and counts.changed == 0
    assert work_rows(wh, "SELECT count(*) FROM feedback") == [(0,)]
    assert work_rows(wh, "SELECT generation FROM pipeline_publish")[0][0] == generation


def test_without_an_erasure_the_suppression_filter_never_runs(wh: Warehouse, monkeypatch):
    def fail(*_a, **_k):
        raise AssertionError("the suppression filter ran without any erasure in force")

    monkeypatch.setattr(writes, "suppress", fail)
    monkeypatch.setattr(writes, "suppressed_payload_sql", fail)
    counts = commit_batch(wh, batch({"id": "a", "email": PERSON}, {"id": "e", "bad": True, "mail": PERSON}))
    assert (counts.inserted, counts.rejects_written, counts.suppressed) == (1, 1, 0)


def test_an_erasure_logs_the_removed_keys_and_the_rejects_for_publishing(wh: Warehouse):
    commit_batch(wh, batch({"id": "a", "email": PERSON}, {"id": "b", "email": "bob@example.com"}, {"id": "e", "bad": True, "mail": PERSON}))
    result = erase(wh, email=PERSON)
    assert (result.rows_removed, result.rejects_removed) == (1, 1)
    generation = work_rows(wh, "SELECT generation FROM pipeline_publish")[0][0]
    logged = work_rows(wh, "SELECT provider, account_id, feedback_id, collected_date FROM pipeline_changes WHERE generation = ? ORDER BY ALL", [generation])
    # Both snapshot files were rebuilt at this generation, so the log may already be pruned;
    # what is left of it must be exactly the erasure's entries.
    assert logged in ([], [("mapbox", "acct", None, None), ("mapbox", "acct", "a", None)])
    assert work_rows(wh, "SELECT generation, published FROM pipeline_publish") == [(generation, generation)]
    assert sorted(work_rows(wh, "SELECT file, generation FROM pipeline_snapshot_files")) == [("a", generation), ("b", generation)]


def test_compacting_leaves_no_bytes_of_deleted_rows_and_the_session_keeps_working(wh: Warehouse):
    commit_batch(wh, batch({"id": "a", "email": PERSON, "body": "remember me"}, {"id": "b", "email": "bob@example.com"}))
    assert PERSON.encode() in wh.files.work.read_bytes()
    with wh.session() as session:
        session.erase("email", PERSON, None)
        assert PERSON.encode() in wh.files.work.read_bytes() + (Path(f"{wh.files.work}.wal").read_bytes() if Path(f"{wh.files.work}.wal").exists() else b"")
        session.compact()
        assert session.query("SELECT feedback_id FROM feedback") == [("b",)]
        assert session.query("SELECT count(*) FROM pipeline_erasures") == [(1,)]
    assert PERSON.encode() not in wh.files.work.read_bytes()
    assert not Path(f"{wh.files.work}.wal").exists()
    commit_batch(wh, batch({"id": "c", "email": "carol@example.com"}))
    assert [r[0] for r in work_rows(wh)] == ["b", "c"]


@pytest.mark.parametrize("killed_in", ["rebuild", "compact"])
def test_an_erasure_killed_after_its_commit_is_finished_by_the_next_session(wh: Warehouse, monkeypatch, killed_in: str):
    import feedback_pipeline.warehouse.maintenance as maintenance
    import feedback_pipeline.warehouse.publish as publish

    commit_batch(wh, batch({"id": "a", "email": PERSON, "body": "remember me"}, {"id": "b", "email": "bob@example.com"}))
    wh.publish_if_behind()
    wh.publish_if_behind()  # both snapshot files hold the person

    def killed(*args, **kwargs):  # a kill, or a full disk, after the erasure's transaction committed
        raise KeyboardInterrupt

    monkeypatch.setattr(*((publish, "rebuild") if killed_in == "rebuild" else (maintenance, "compact_copy")), killed)
    with pytest.raises(KeyboardInterrupt), wh.session() as session:
        session.erase("email", PERSON, None)
        session.compact()
    monkeypatch.undo()
    assert wh.files.erasing.exists()
    commit_batch(wh, batch({"id": "c", "email": "carol@example.com"}))  # the next run's session
    assert not wh.files.erasing.exists()
    files = [wh.files.work, *wh.files.snapshots]
    assert [p.name for p in files if PERSON.encode() in p.read_bytes()] == []
    assert [r[0] for r in work_rows(wh)] == ["b", "c"]


def test_a_finished_erasure_leaves_no_marker_and_sessions_after_it_do_no_extra_work(wh: Warehouse, monkeypatch):
    import feedback_pipeline.warehouse.publish as publish

    commit_batch(wh, batch({"id": "a", "email": PERSON}))
    with wh.session() as session:
        session.erase("email", PERSON, None)
        session.compact()
    assert not wh.files.erasing.exists()
    monkeypatch.setattr(publish, "rebuild", lambda *a, **k: pytest.fail("no erasure is owed"))
    commit_batch(wh, batch({"id": "b", "email": "bob@example.com"}))
