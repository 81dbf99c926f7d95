"""The SQLite event log of dagster.yaml (feedback_pipeline/dagster_storage.py) stores what
Dagster's own SQLite storage stores: a partition range run reads back the same through the
instance's asset APIs, however the events were batched."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from feedback_pipeline import dagster_env
from feedback_pipeline.dagster_storage import FastSqliteEventLogStorage

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")
KEYS = [dg.AssetKey("alpha"), dg.AssetKey("beta")]


@dg.multi_asset(
    specs=[dg.AssetSpec(k) for k in KEYS],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def pair(context):  # unannotated: this module postpones annotations, Dagster checks them at runtime
    for key in KEYS:
        if key in context.selected_asset_keys:
            context.add_asset_metadata({"whole_run": True}, asset_key=key, partition_key=context.partition_key_range.end)
            yield dg.MaterializeResult(asset_key=key, metadata={"rows": 3})


def run_range(instance: dg.DagsterInstance, first: str, last: str) -> dg.ExecuteInProcessResult:
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    return dg.materialize([pair], instance=instance, tags=tags)


def observed(instance: dg.DagsterInstance, run_id: str) -> dict:
    """What the UI and sensors read back: partitions materialized, each asset's latest event,
    the cross-run records, the run's own log."""
    out = {}
    for key in KEYS:
        latest = instance.get_latest_materialization_event(key)
        assert latest is not None and latest.asset_materialization is not None
        records = instance.fetch_materializations(key, limit=1000).records
        out[key.to_user_string()] = {
            "partitions": sorted(instance.get_materialized_partitions(key)),
            "latest_partition": latest.asset_materialization.partition,
            "latest_metadata": sorted(latest.asset_materialization.metadata),
            "latest_run": latest.run_id == run_id,
            "records": sorted(r.partition_key for r in records),
            "record_ids_ascending": [r.storage_id for r in records] == sorted((r.storage_id for r in records), reverse=True),
        }
    out["run_events"] = sorted(e.dagster_event_type.value for e in instance.all_logs(run_id) if e.dagster_event is not None)
    out["asset_keys"] = sorted(k.to_user_string() for k in instance.all_asset_keys())
    return out


def instance_at(home: Path, dagster_yaml: str, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.get()


@pytest.fixture
def batched(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in dagster_env.EVENT_SETTINGS.items():
        monkeypatch.setenv(name, value)


def test_the_repos_dagster_yaml_uses_it_under_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    instance = instance_at(tmp_path / "home", (ROOT / "dagster.yaml").read_text(), monkeypatch)
    storage = instance.event_log_storage
    assert isinstance(storage, FastSqliteEventLogStorage)
    assert Path(storage._base_dir) == tmp_path / "home" / "history" / "runs"  # Dagster's default layout


def test_a_range_run_reads_back_as_on_dagsters_own_sqlite_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batched: None):
    one_by_one: list[str] = []
    store_event = FastSqliteEventLogStorage.store_event

    def spy(self, event):
        one_by_one.append(event.dagster_event_type.value if event.dagster_event else "log")
        return store_event(self, event)

    monkeypatch.setattr(FastSqliteEventLogStorage, "store_event", spy)
    results = []
    for name, config in (("own", "telemetry:\n  enabled: false\n"), ("fast", (ROOT / "dagster.yaml").read_text())):
        instance = instance_at(tmp_path / name, config, monkeypatch)
        assert isinstance(instance.event_log_storage, FastSqliteEventLogStorage) == (name == "fast")
        first = run_range(instance, "2026-01-02", "2026-01-06")
        second = run_range(instance, "2026-01-05", "2026-01-09")  # overlaps: the later run is the latest
        assert first.success and second.success
        results.append(observed(instance, second.run_id))
        instance.dispose()
    own, fast = results
    # The range's materializations reached the storage as batches, never one by one.
    assert "ASSET_MATERIALIZATION" not in one_by_one and "STEP_SUCCESS" in one_by_one
    assert fast == own
    assert fast["alpha"]["partitions"] == [f"2026-01-0{d}" for d in range(2, 10)]
    assert fast["alpha"]["latest_partition"] == "2026-01-09" and fast["alpha"]["latest_metadata"] == ["rows", "whole_run"]


def test_a_batch_of_mixed_runs_or_kinds_is_stored_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batched: None):
    instance = instance_at(tmp_path / "home", (ROOT / "dagster.yaml").read_text(), monkeypatch)
    run = run_range(instance, "2026-01-02", "2026-01-03")
    events = [e for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
    storage = instance.event_log_storage
    before = len(instance.fetch_materializations(KEYS[0], limit=100).records)
    # Replaying the run's own log (run, step and asset events together) takes the per-event path.
    storage.store_event_batch(events)
    after = instance.fetch_materializations(KEYS[0], limit=100).records
    assert len(after) == 2 * before
    instance.dispose()


def _schema(path: Path) -> dict:
    """What Dagster's migrations and readers look at in a run database."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return {
            "objects": sorted(con.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()),
            "alembic": con.execute("SELECT version_num FROM alembic_version").fetchall(),
            "journal_mode": con.execute("PRAGMA journal_mode").fetchone()[0],
        }
    finally:
        con.close()


def test_a_new_runs_database_is_a_copy_of_the_one_dagster_creates(tmp_path: Path):
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    ours = FastSqliteEventLogStorage(base_dir=str(tmp_path / "ours"))
    theirs = SqliteEventLogStorage(base_dir=str(tmp_path / "theirs"))
    with ours.run_connection("run-a"):
        pass
    with theirs.run_connection("run-a"):
        pass
    assert Path(ours.template_path()).exists()
    assert _schema(tmp_path / "ours" / "run-a.db") == _schema(tmp_path / "theirs" / "run-a.db")
    assert _schema(tmp_path / "ours" / "run-a.db")["alembic"]  # stamped, so `dagster instance migrate` knows it
    # The template is never taken for a run, and no partial copy is left behind.
    assert ours.get_all_run_ids() == ["run-a"]
    assert not list((tmp_path / "ours").glob("*.partial*"))


def test_a_runs_database_that_already_exists_is_never_replaced(tmp_path: Path):
    import sqlite3

    (tmp_path / "runs").mkdir()
    con = sqlite3.connect(tmp_path / "runs" / "run-b.db")  # made by another process first
    con.execute("CREATE TABLE marker (x INTEGER)")
    con.execute("INSERT INTO marker VALUES (7)")
    con.commit()
    con.close()
    storage = FastSqliteEventLogStorage(base_dir=str(tmp_path / "runs"))
    with storage.run_connection("run-b"):
        pass
    con = sqlite3.connect(tmp_path / "runs" / "run-b.db")
    assert con.execute("SELECT x FROM marker").fetchall() == [(7,)]
    assert "event_logs" in {name for (name,) in con.execute("SELECT name FROM sqlite_master")}  # Dagster's own check created its tables
    con.close()


def test_without_hard_links_a_runs_database_is_created_the_way_dagster_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    def no_links(*_args, **_kwargs):
        raise PermissionError("this file system has no hard links")

    monkeypatch.setattr(os, "link", no_links)
    storage = FastSqliteEventLogStorage(base_dir=str(tmp_path / "runs"))
    with storage.run_connection("run-c"):
        pass
    monkeypatch.undo()
    reference = FastSqliteEventLogStorage(base_dir=str(tmp_path / "reference"))
    with reference.run_connection("run-c"):
        pass
    assert _schema(tmp_path / "runs" / "run-c.db") == _schema(tmp_path / "reference" / "run-c.db")
    assert not list((tmp_path / "runs").glob("*.partial*"))


def test_the_template_of_another_dagster_version_is_replaced(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / ".run-template-0.0.1.sqlite").write_bytes(b"not a database of this version")
    storage = FastSqliteEventLogStorage(base_dir=str(runs))
    with storage.run_connection("run-d"):
        pass
    assert sorted(p.name for p in runs.glob(".run-template-*")) == [Path(storage.template_path()).name]
