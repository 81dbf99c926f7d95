"""The Iceberg copy after an erasure: the first apply after it (here: a later run's, the erase
itself having skipped the lake) expires every older snapshot and deletes the files no remaining
snapshot references; later applies do not purge again."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Warehouse

from .conftest import commit_batch, feed_lake, lake_warehouse

pytest.importorskip("pyiceberg")

from feedback_pipeline.lake import LakeMirror  # noqa: E402
from feedback_pipeline.lake.table import TABLE, open_catalog  # noqa: E402

PERSON = "ada@example.com"


def batch(*records: tuple[str, str, str]) -> FeedbackBatch:
    out = FeedbackBatch("mapbox", "acct")
    for fid, email, body in records:
        out.add({"id": fid}, feedback_id=fid, collected_at="2026-03-01T10:00:00Z", user_email=email, body=body)
    return out


def parquet_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*.parquet") if pc.any(pc.equal(pq.read_table(p).column("user_email"), text)).as_py()]


def test_the_next_apply_after_an_erasure_expires_older_snapshots_and_deletes_their_files(tmp_path: Path):
    wh, settings = lake_warehouse(tmp_path)
    feed = partial(feed_lake, wh, settings)

    commit_batch(wh, batch(("a", PERSON, "first"), ("b", "bob@example.com", "first")))
    feed("run-1")
    commit_batch(wh, batch(("a", PERSON, "edited"), ("b", "bob@example.com", "edited")))
    feed("run-2")
    assert len(parquet_holding(tmp_path / "lake", PERSON)) == 2  # both versions of the row
    with wh.session() as session:  # the erase, without the lake (as when its commit failed)
        session.erase("email", PERSON, None)

    purged = feed("run-3").last_purge
    table = open_catalog(settings).load_table(TABLE)
    assert purged is not None and purged.snapshots_expired == 2 and purged.files_deleted >= 2
    assert len(table.snapshots()) == 1
    assert parquet_holding(tmp_path / "lake", PERSON) == []
    assert table.scan().to_arrow().column("feedback_id").to_pylist() == ["b"]

    commit_batch(wh, batch(("c", "carol@example.com", "new")))
    assert feed("run-4").last_purge is None  # purged once per erasure
    assert len(open_catalog(settings).load_table(TABLE).snapshots()) == 2


def test_a_purge_that_fails_while_deleting_files_is_repeated_by_the_next_apply(tmp_path: Path, monkeypatch):
    import feedback_pipeline.lake.expiry as expiry

    wh, settings = lake_warehouse(tmp_path)
    feed = partial(feed_lake, wh, settings)

    commit_batch(wh, batch(("a", PERSON, "first"), ("b", "bob@example.com", "first")))
    feed("run-1")
    with wh.session() as session:
        session.erase("email", PERSON, None)
    real = expiry._delete_unreferenced

    def storage_error(table):  # an object store's 500, or a kill, while the files are deleted
        raise OSError("storage unavailable")

    monkeypatch.setattr(expiry, "_delete_unreferenced", storage_error)
    with pytest.raises(OSError):
        feed("erase")
    assert parquet_holding(tmp_path / "lake", PERSON) != []
    monkeypatch.setattr(expiry, "_delete_unreferenced", real)
    assert feed("run-2").last_purge is not None, "the purge is still owed"
    assert parquet_holding(tmp_path / "lake", PERSON) == []
    assert feed("run-3").last_purge is None


@pytest.mark.parametrize("folder", ["lake#1", "lake?v=1"])
def test_the_purge_keeps_the_current_snapshots_files_whatever_the_lakes_folder_is_called(tmp_path: Path, folder: str):
    # A '#' or '?' in the path is part of it: read as a URL's fragment or query it cut every
    # referenced path short, and the purge deleted the whole table.
    wh, settings = lake_warehouse(tmp_path, folder)
    commit_batch(wh, batch(("a", PERSON, "first"), ("b", "bob@example.com", "first")))
    feed_lake(wh, settings, "run-1")
    with wh.session() as session:
        session.erase("email", PERSON, None)
    assert feed_lake(wh, settings, "erase").last_purge is not None
    assert open_catalog(settings).load_table(TABLE).scan().to_arrow().column("feedback_id").to_pylist() == ["b"]
    assert parquet_holding(tmp_path / folder, PERSON) == []
