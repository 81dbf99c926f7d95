"""The asset factory through Dagster: partitions and ranges into DuckDB, metadata, checks."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from feedback_pipeline.assets import build_provider_asset
from feedback_pipeline.partitions import feedback_partitions
from feedback_pipeline.providers.formbricks import SPEC
from feedback_pipeline.settings import FULL_REFRESH_TAG, PipelineResource

UTC = timezone.utc
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture
def formbricks_asset():
    return build_provider_asset("formbricks", feedback_partitions(today() - timedelta(days=60)))


def resources(sandbox, db: Path, **overrides) -> dict:
    env = sandbox.env()
    hub = SPEC.resource_from_env(env, plain=True)
    return {
        "formbricks": overrides.get("formbricks", hub),
        "pipeline": PipelineResource(db_path=str(db), http_base_delay_seconds=0.01, retry_after_floor_seconds=0.01),
    }


def run_range(asset, res, first: date, last: date, **tags) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [asset],
        resources=res,
        tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat(), **tags},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def published(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    events = result.asset_materializations_for_node("formbricks_feedback")
    assert events, "no materialization"
    return events[0]


def test_one_partition_materializes_into_duckdb(sandbox, tmp_path: Path, formbricks_asset):
    db = tmp_path / "feedback.duckdb"
    day = today() - timedelta(days=3)
    result = dg.materialize([formbricks_asset], resources=resources(sandbox, db), partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    got = published(db, "SELECT DISTINCT collected_date, provider FROM feedback")
    assert got == [(day, "formbricks")]


def test_a_range_is_one_run_and_rerunning_it_changes_nothing(sandbox, tmp_path: Path, formbricks_asset):
    db = tmp_path / "feedback.duckdb"
    first, last = today() - timedelta(days=9), today()
    result = run_range(formbricks_asset, resources(sandbox, db), first, last)
    assert result.success
    snapshot = published(db, "SELECT * FROM feedback ORDER BY feedback_id")
    assert len(snapshot) > 150 and {r[4] for r in snapshot} <= {first + timedelta(days=i) for i in range(10)}
    meta = materialization(result).metadata
    assert meta["rows_inserted"].value == len(snapshot)
    assert meta["dagster/row_count"].value == len(snapshot)
    for key in ("window", "rows_updated", "rows_unchanged", "rows_rejected", "requests", "retries", "pages", "watermark", "duration_seconds"):
        assert key in meta
    again = run_range(formbricks_asset, resources(sandbox, db), first, last)
    assert again.success
    assert published(db, "SELECT * FROM feedback ORDER BY feedback_id") == snapshot  # ingested_at included
    assert materialization(again).metadata["rows_inserted"].value == 0


def test_checks_run_with_the_materialization(sandbox, tmp_path: Path, formbricks_asset):
    result = run_range(formbricks_asset, resources(sandbox, tmp_path / "f.duckdb"), today() - timedelta(days=2), today())
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"unique_keys", "collected_at_valid", "reject_rate", "newest_partition_fresh"}
    assert checks["unique_keys"].passed and checks["collected_at_valid"].passed and checks["newest_partition_fresh"].passed


def test_an_unconfigured_provider_fails_at_once_naming_the_variables(tmp_path: Path, formbricks_asset):
    res = {"formbricks": SPEC.resource(), "pipeline": PipelineResource(db_path=str(tmp_path / "f.duckdb"))}
    result = run_range(formbricks_asset, res, today(), today())
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "FORMBRICKS_HUB_URL" in message and "FORMBRICKS_HUB_API_KEY" in message and "FORMBRICKS_TENANT_ID" in message


def test_full_refresh_tag_replaces_the_partitions(sandbox, tmp_path: Path, formbricks_asset):
    db = tmp_path / "feedback.duckdb"
    first, last = today() - timedelta(days=5), today()
    run_range(formbricks_asset, resources(sandbox, db), first, last)
    victim = published(db, "SELECT feedback_id FROM feedback ORDER BY feedback_id LIMIT 1")[0][0]
    sandbox.sandbox.delete("formbricks", victim)
    result = run_range(formbricks_asset, resources(sandbox, db), first, last, **{FULL_REFRESH_TAG: "true"})
    assert result.success
    assert materialization(result).metadata["rows_deleted"].value == 1
    assert not published(db, f"SELECT 1 FROM feedback WHERE feedback_id = '{victim}'")
