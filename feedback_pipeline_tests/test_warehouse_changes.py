"""The change log (warehouse/changes.py): keys are logged while a reader will read them, and every
change is logged at its generation in some form, so no reader is ever left stale."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import feedback_pipeline.warehouse.changes as changes
import feedback_pipeline.warehouse.publish as publish
from feedback_pipeline.warehouse import Warehouse
from feedback_pipeline.warehouse.transaction import transaction

from .conftest import batch_of, commit_batch, feed_lake, lake_warehouse, snapshot_rows, work_rows

EVERYTHING = "SELECT count(*) FROM pipeline_changes WHERE provider IS NULL"


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def logged_keys(wh: Warehouse) -> int:
    return work_rows(wh, "SELECT count(*) FROM pipeline_changes WHERE feedback_id IS NOT NULL")[0][0]


def logged_everything(wh: Warehouse) -> int:
    return work_rows(wh, EVERYTHING)[0][0]


def test_no_key_is_logged_while_every_snapshot_file_is_due_for_a_full_copy(wh: Warehouse):
    commit_batch(wh, batch_of(*({"id": f"k{i}"} for i in range(5))))  # a fresh warehouse: its first publish copies everything
    generation = work_rows(wh, "SELECT generation FROM pipeline_publish")[0][0]
    assert logged_keys(wh) == 0
    assert work_rows(wh, f"{EVERYTHING} AND generation = ?", [generation]) == [(1,)]  # the commit's change, as "everything"
    assert wh.publish_if_behind().mode == "full" and snapshot_rows(wh) == work_rows(wh)
    commit_batch(wh, batch_of({"id": "k1", "body": "changed"}))
    assert logged_keys(wh) == 1 and wh.publish_if_behind().mode == "incremental"
    assert snapshot_rows(wh) == work_rows(wh)


def test_a_change_past_the_full_copy_share_logs_everything_then_no_keys(wh: Warehouse, monkeypatch):
    monkeypatch.setattr(changes, "FULL_COPY_MIN_KEYS", 0)
    commit_batch(wh, batch_of(*({"id": f"r{i}"} for i in range(20))))
    wh.publish_if_behind()
    commit_batch(wh, batch_of(*({"id": f"r{i}", "body": "one"} for i in range(2))))  # 2 of 20: patched in place
    assert logged_keys(wh) == 2 and logged_everything(wh) == 0
    commit_batch(wh, batch_of(*({"id": f"s{i}"} for i in range(5))))  # 7 of 25 keys: a full copy is cheaper
    assert logged_keys(wh) == 7 and logged_everything(wh) == 1
    commit_batch(wh, batch_of(*({"id": f"t{i}"} for i in range(5))))
    assert logged_keys(wh) == 7 and logged_everything(wh) == 2  # the next publish copies everything anyway
    assert wh.publish_if_behind().mode == "full"
    assert snapshot_rows(wh) == work_rows(wh) and len(work_rows(wh)) == 30
    assert logged_keys(wh) == 0 and logged_everything(wh) == 0  # pruned with the publish
    commit_batch(wh, batch_of({"id": "t0", "body": "two"}))
    assert logged_keys(wh) == 1 and wh.publish_if_behind().mode == "incremental"
    assert snapshot_rows(wh) == work_rows(wh)


def test_keys_stay_logged_for_the_iceberg_copy_past_the_full_copy_share(wh: Warehouse, monkeypatch):
    monkeypatch.setattr(changes, "FULL_COPY_MIN_KEYS", 0)
    commit_batch(wh, batch_of({"id": "a"}))
    wh.publish_if_behind()
    with wh.session() as session, session.cursor() as cursor, transaction(cursor.con):
        changes.record_reader(cursor.con, changes.LAKE, cursor.query("SELECT generation FROM pipeline_publish")[0][0])
    commit_batch(wh, batch_of(*({"id": f"s{i}"} for i in range(10))))
    commit_batch(wh, batch_of(*({"id": f"t{i}"} for i in range(10))))
    assert logged_keys(wh) == 20 and logged_everything(wh) == 0


def test_a_first_publish_that_failed_after_the_switch_is_rebuilt_by_the_next(wh: Warehouse, monkeypatch):
    """The new live file exists, but nothing recorded it: the next run's commits log no keys, and
    the "everything" they log instead keeps its publish from patching that file with nothing."""
    commit_batch(wh, batch_of(*({"id": f"k{i}"} for i in range(5))))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as failure:
        failure.setattr(publish, "_byte_copy", disk_full)  # after files.switch, before anything is recorded
        with pytest.raises(OSError):
            wh.publish_if_behind()
    assert len(snapshot_rows(wh)) == 5
    commit_batch(wh, batch_of({"id": "k1", "body": "changed"}, {"id": "new"}))
    wh.publish_if_behind()
    assert snapshot_rows(wh) == work_rows(wh)


def test_an_iceberg_copy_whose_first_feed_was_not_recorded_is_rebuilt_by_the_next(tmp_path: Path, monkeypatch):
    """The feed committed its Iceberg snapshot, then died before the working database recorded
    the reader: commits log no keys for a reader they do not know of, and the "everything" they
    log instead rebuilds the table at the next feed."""
    pytest.importorskip("pyiceberg")
    from feedback_pipeline.lake.table import TABLE, open_catalog

    wh, settings = lake_warehouse(tmp_path)
    commit_batch(wh, batch_of(*({"id": f"k{i}"} for i in range(3))))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed after the Iceberg commit")

    with monkeypatch.context() as failure:
        failure.setattr(changes, "record_reader", killed)
        with pytest.raises(KeyboardInterrupt):
            feed_lake(wh, settings, "run-1")
    commit_batch(wh, batch_of({"id": "k1", "body": "changed"}, {"id": "new"}))
    assert logged_keys(wh) == 0
    feed_lake(wh, settings, "run-2")
    lake = open_catalog(settings).load_table(TABLE).scan().to_arrow()
    assert sorted(zip(lake.column("feedback_id").to_pylist(), lake.column("body").to_pylist())) == [
        (fid, body) for fid, body, _ in work_rows(wh)
    ]
