"""Migrations: the contract's tables once, older databases brought forward with their rows."""

from __future__ import annotations

from pathlib import Path

import pytest

import feedback_pipeline.warehouse.migrations as migrations
import feedback_pipeline.warehouse.writes as writes
from feedback_pipeline.warehouse import MIGRATIONS, Warehouse

from .conftest import batch_of, commit_batch, work_rows


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "feedback.duckdb")


def test_migrations_create_the_contract_tables_once(wh: Warehouse):
    with wh.session():
        pass
    tables = {r[0] for r in work_rows(wh, "SELECT table_name FROM information_schema.tables")}
    assert {"feedback", "feedback_rejects", "pipeline_sync_days", "pipeline_cursors", "pipeline_changes"} <= tables
    assert work_rows(wh, "SELECT version FROM pipeline_schema_version ORDER BY version") == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_an_older_database_is_migrated_forward_keeping_its_rows(wh: Warehouse, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
    monkeypatch.setattr(writes, "log", lambda *a, **k: None)  # version 1 had no generation to bump
    monkeypatch.setattr(writes, "suppression_salt", lambda con: None)  # nor erasure tables
    commit_batch(wh, batch_of({"id": "a", "body": "kept"}))
    monkeypatch.undo()
    assert [r[:2] for r in work_rows(wh)] == [("a", "kept")]
    assert work_rows(wh, "SELECT max(version) FROM pipeline_schema_version") == [(len(MIGRATIONS),)]
    assert work_rows(wh, "SELECT count(*) FROM feedback_daily_counts") == [(1,)]
    # The upgrade leaves the snapshot behind and due for a full copy: its new tables and views
    # reach the analysts with the next publish.
    generation, published = work_rows(wh, "SELECT generation, published FROM pipeline_publish")[0]
    assert generation > published
    assert work_rows(wh, "SELECT count(*) FROM pipeline_changes WHERE provider IS NULL")[0][0] >= 1
    assert wh.publish_if_behind().mode == "full"


def test_a_database_newer_than_the_pipeline_is_refused(wh: Warehouse, monkeypatch):
    with wh.session():
        pass
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:-1])
    with pytest.raises(RuntimeError, match="newer than this pipeline knows"):
        with wh.session():
            pass
