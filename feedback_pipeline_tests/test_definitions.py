"""Definitions, job selection, partitions, the hourly schedule, settings errors, dagster.yaml."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml

from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.providers.base import ConfigurationError
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG, hourly_range
from feedback_pipeline.providers import get_spec, names
from feedback_pipeline.settings import FULL_REFRESH_TAG, PROVIDERS_TAG

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = names()
ASSETS = {f"{p}_feedback" for p in PROVIDERS}


def job_assets(defs: dg.Definitions, name: str = "feedback_ingest") -> set[str]:
    job = defs.resolve_job_def(name)
    return {key.to_user_string() for key in job.asset_layer.executable_asset_keys}


def test_the_module_loads_with_every_contract_name():
    from feedback_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= ASSETS
    assert defs.resolve_job_def("feedback_ingest")
    assert defs.resolve_schedule_def("feedback_ingest_hourly").job_name == "feedback_ingest"


def test_the_job_covers_exactly_the_configured_providers(sandbox):
    env = {k: v for k, v in sandbox.env().items() if k.startswith(("MAPBOX", "FEEDBACKKIT"))}
    # The dashboard sits downstream of the provider assets, so the job takes it in too.
    assert job_assets(build_definitions(env)) == {"mapbox_feedback", "feedbackkit_feedback", "feedback_dashboard"}
    assert job_assets(build_definitions({})) == ASSETS | {"feedback_dashboard"}  # none configured: all, each failing clearly


def test_partitions_start_at_the_configured_date_and_include_today():
    first = datetime.now(UTC).date() - timedelta(days=10)
    defs = build_definitions({"FEEDBACK_START_DATE": first.isoformat()})
    keys = defs.resolve_assets_def("mapbox_feedback").partitions_def.get_partition_keys()
    assert keys[0] == first.isoformat() and keys[-1] == datetime.now(UTC).date().isoformat() and len(keys) == 11


def test_the_assets_share_one_writer_pool_and_a_single_run_backfill_policy():
    defs = build_definitions({})
    for name in ASSETS:
        asset = defs.resolve_assets_def(name)
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        assert asset.op.pool == "feedback_duckdb_writer"
        assert asset.group_names_by_key[dg.AssetKey(name)] == "feedback"


def test_the_five_assets_are_one_step_run_in_process_by_every_launch():
    defs = build_definitions({})
    ops = {defs.resolve_assets_def(name).op.name for name in ASSETS}
    assert ops == {"feedback_sync"}
    assert defs.resolve_assets_def("mintlify_feedback").can_subset
    # Set on the Definitions: the jobs, `dagster asset materialize` and UI launches (the implicit
    # asset job) all use it.
    assert defs.executor is dg.in_process_executor
    assert defs.resolve_job_def("feedback_ingest").executor_def is dg.in_process_executor
    assert defs.resolve_implicit_global_asset_job_def().executor_def is dg.in_process_executor
    for name in ASSETS:
        assert defs.resolve_assets_def(name).specs_by_key[dg.AssetKey(name)].freshness_policy is not None


def test_the_full_refresh_job_covers_the_same_assets_with_the_tag_preset(sandbox):
    env = {k: v for k, v in sandbox.env().items() if k.startswith(("MAPBOX", "FORMBRICKS"))}
    defs = build_definitions(env)
    job = defs.resolve_job_def("feedback_full_refresh")
    assert job_assets(defs, "feedback_full_refresh") == job_assets(defs) == {"mapbox_feedback", "formbricks_feedback", "feedback_dashboard"}
    assert job.tags[FULL_REFRESH_TAG] == "true" and FULL_REFRESH_TAG not in defs.resolve_job_def("feedback_ingest").tags
    assert job.partitions_def == defs.resolve_job_def("feedback_ingest").partitions_def
    assert "deleted at the provider disappear" in job.description
    for name in ("feedback_ingest", "feedback_full_refresh"):
        assert defs.resolve_job_def(name).tags[PROVIDERS_TAG] == "formbricks,mapbox"


def test_the_jobs_plan_no_checks_so_a_failed_provider_leaves_none_unevaluated():
    defs = build_definitions({})
    assert len(defs.resolve_asset_graph().asset_check_keys) == 3 * len(PROVIDERS)  # the UI lists them ...
    for name in ("feedback_ingest", "feedback_full_refresh"):
        assert defs.resolve_job_def(name).asset_layer.asset_graph.asset_check_keys == set()  # ... runs plan none


def test_the_hourly_schedule_requests_one_run_over_today_and_the_lookback():
    defs = build_definitions({"FEEDBACK_LOOKBACK_DAYS": "3", "FEEDBACK_START_DATE": "2024-01-01"})
    schedule = defs.resolve_schedule_def("feedback_ingest_hourly")
    assert schedule.cron_schedule == "0 * * * *" and schedule.execution_timezone == "UTC"
    tick = datetime(2026, 5, 10, 14, 0, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        request = schedule.evaluate_tick(context).run_requests[0]
    assert request.tags[RANGE_START_TAG] == "2026-05-07" and request.tags[RANGE_END_TAG] == "2026-05-10"
    assert request.tags[PROVIDERS_TAG] == ",".join(PROVIDERS)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


def test_the_schedule_never_starts_before_the_first_partition():
    assert hourly_range(date(2026, 1, 3), 7, date(2026, 1, 1)) == (date(2026, 1, 1), date(2026, 1, 3))


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FEEDBACK_START_DATE": "2026-13-01"}, "FEEDBACK_START_DATE"),
        ({"FEEDBACK_START_DATE": "2999-01-01"}, "FEEDBACK_START_DATE"),
        ({"FEEDBACK_LOOKBACK_DAYS": "seven"}, "FEEDBACK_LOOKBACK_DAYS"),
        ({"FEEDBACK_LOOKBACK_DAYS": "-1"}, "FEEDBACK_LOOKBACK_DAYS"),
        ({"FEEDBACK_DB": "data/"}, "FEEDBACK_DB"),
    ],
)
def test_malformed_settings_fail_naming_the_variable(env, variable):
    with pytest.raises(ConfigurationError, match=variable):
        build_definitions(env)


def test_a_malformed_provider_url_fails_before_any_request_naming_the_variable():
    resource = get_spec("formbricks").resource(hub_url="ftp:/nowhere", hub_api_key="k", tenant_id="t")
    with pytest.raises(ConfigurationError, match="FORMBRICKS_HUB_URL"):
        get_spec("formbricks").provider(resource)


def test_dagster_yaml_limits_writer_runs_to_one(tmp_path: Path):
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=config) as instance:
        settings = instance.get_concurrency_config().pool_config
        assert settings.default_pool_limit == 1 and settings.pool_granularity.value == "run"


def test_workspace_loads_the_definitions_module():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "feedback_pipeline.definitions"
