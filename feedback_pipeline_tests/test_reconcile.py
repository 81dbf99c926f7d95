"""The weekly reconcile through the real definitions: a tick of ``feedback_reconcile_weekly``
requests a full refresh of the last ``FEEDBACK_RECONCILE_DAYS`` days, and running it removes the
records deleted at each provider and changes nothing else (``ingested_at`` included)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from feedback_pipeline.assets import metadata_by_provider
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.providers import names
from feedback_pipeline.providers.base import ConfigurationError
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG
from feedback_pipeline.schema import FEEDBACK_COLUMNS
from feedback_pipeline.settings import DEFAULT_RECONCILE_DAYS, FULL_REFRESH_TAG, PipelineSettings

from .conftest import job_environment

UTC = timezone.utc
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
COLUMNS = ", ".join(name for name, _, _ in FEEDBACK_COLUMNS)


def rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {COLUMNS} FROM feedback ORDER BY provider, account_id, feedback_id").fetchall()
    finally:
        con.close()


def tick_request(defs: dg.Definitions, when: datetime) -> dg.RunRequest:
    with dg.build_schedule_context(scheduled_execution_time=when) as context:
        (request,) = defs.resolve_schedule_def("feedback_reconcile_weekly").evaluate_tick(context).run_requests
    return request


def test_reconcile_removes_deleted_records_and_nothing_else_for_every_provider(sandbox, tmp_path: Path, monkeypatch):
    today = datetime.now(UTC).date()
    env = job_environment(monkeypatch, sandbox.env(), tmp_path / "feedback.duckdb")
    defs = build_definitions(env)
    instance = dg.DagsterInstance.ephemeral()
    backfill = defs.resolve_job_def("feedback_ingest").execute_in_process(
        instance=instance, tags={RANGE_START_TAG: (today - timedelta(days=29)).isoformat(), RANGE_END_TAG: today.isoformat()}, run_config=QUIET
    )
    assert backfill.success
    before = rows(Path(env["FEEDBACK_DB"]))
    victims = set()
    for provider in names():
        ids = sorted(r[2] for r in before if r[0] == provider)
        victim = ids[len(ids) // 2]
        assert sandbox.sandbox.delete(provider, victim)
        victims.add((provider, victim))

    schedule = defs.resolve_schedule_def("feedback_reconcile_weekly")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    request = tick_request(defs, datetime.combine(today, time(3), tzinfo=UTC))
    # The default 90 days reach back past the first partition: the range starts there.
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())
    job = defs.resolve_job_def(schedule.job_name)
    result = job.execute_in_process(instance=instance, tags=request.tags, run_config=QUIET)
    assert result.success
    assert result.dagster_run.tags[FULL_REFRESH_TAG] == "true"

    assert rows(Path(env["FEEDBACK_DB"])) == [r for r in before if (r[0], r[2]) not in victims]
    meta = metadata_by_provider(result)
    assert set(meta) == set(names())
    for provider, m in meta.items():
        assert m["full_refresh"] is True
        assert (m["rows_deleted"], m["rows_inserted"], m["rows_updated"]) == (1, 0, 0), provider


def test_the_reconcile_range_follows_feedback_reconcile_days():
    env = {"FEEDBACK_START_DATE": "2024-01-01", "FEEDBACK_RECONCILE_DAYS": "14"}
    request = tick_request(build_definitions(env), datetime(2026, 11, 29, 3, tzinfo=UTC))
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2026-11-16", "2026-11-29")


@pytest.mark.parametrize("raw", ["0", "-3", "ninety", "3651"])
def test_a_bad_feedback_reconcile_days_fails_naming_the_variable(raw):
    with pytest.raises(ConfigurationError, match="FEEDBACK_RECONCILE_DAYS"):
        PipelineSettings.from_env({"FEEDBACK_RECONCILE_DAYS": raw})


def test_feedback_reconcile_days_defaults_to_90():
    assert PipelineSettings.from_env({}).reconcile_days == DEFAULT_RECONCILE_DAYS == 90
