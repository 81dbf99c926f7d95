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


def test_nps_daily_is_the_union_of_the_provider_specs_nps_queries_and_follows_them(wh: Warehouse, monkeypatch):
    import dataclasses

    from feedback_pipeline import providers

    wh.publish_if_behind()
    view = work_rows(wh, "SELECT sql FROM duckdb_views() WHERE view_name = 'nps_daily'")[0][0]
    for spec in providers.specs().values():
        if spec.nps_answers:
            assert f"provider = '{spec.name}'" in view  # each provider's own query, nowhere else
    assert wh.publish_if_behind() is None  # nothing changed: no copy

    # A provider whose spec stops answering NPS: the view follows at the next open, and the
    # analysts' snapshot is due for a full copy so it gets the new view too.
    kept = {name: spec for name, spec in providers.specs().items() if name != "usersnap"}
    changed = {**kept, "usersnap": dataclasses.replace(providers.specs()["usersnap"], nps_answers=None)}
    monkeypatch.setattr(providers, "specs", lambda: changed)
    view = work_rows(wh, "SELECT sql FROM duckdb_views() WHERE view_name = 'nps_daily'")[0][0]
    assert "provider = 'usersnap'" not in view and "provider = 'formbricks'" in view
    assert wh.publish_if_behind().mode == "full"
