"""Dagster's event-log settings: set for every process that writes run events, and what they do."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import dagster as dg

from feedback_pipeline import dagster_env
from feedback_pipeline.services import ServiceGroup

UTC = timezone.utc


def test_importing_the_definitions_sets_the_event_settings_for_the_cli_and_run_workers():
    import feedback_pipeline.definitions  # noqa: F401 - the import is what is tested

    for name, value in dagster_env.EVENT_SETTINGS.items():
        assert os.environ.get(name), name


def test_an_operators_own_value_wins_over_the_defaults():
    environ = {"DAGSTER_EVENT_BATCH_SIZE": "50"}
    dagster_env.apply(environ)
    assert environ["DAGSTER_EVENT_BATCH_SIZE"] == "50"
    assert environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "true"
    assert dagster_env.with_event_settings({"DAGSTER_EVENT_BATCH_SIZE": "7"})["DAGSTER_EVENT_BATCH_SIZE"] == "7"


def test_the_webserver_and_daemon_get_the_settings_from_the_service_group():
    group = ServiceGroup({"PATH": "/bin"})
    assert group.env["PATH"] == "/bin"
    for name, value in dagster_env.EVENT_SETTINGS.items():
        assert group.env[name] == value


def test_a_partition_range_run_plans_one_materialization_per_asset_not_per_partition(monkeypatch):
    for name, value in dagster_env.EVENT_SETTINGS.items():
        monkeypatch.setenv(name, value)
    first = datetime.now(UTC).date() - timedelta(days=9)
    partitions = dg.DailyPartitionsDefinition(start_date=first.isoformat(), end_offset=1)

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def ranged(context) -> None:  # noqa: ANN001 - Dagster checks a context annotation at runtime
        pass

    instance = dg.DagsterInstance.ephemeral()
    keys = partitions.get_partition_keys()
    result = dg.materialize([ranged], instance=instance, tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
    assert result.success
    planned = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
    materialized = result.get_asset_materialization_events()
    assert len(planned) == 1 and len(materialized) == len(keys) == 10
