"""The weekly reconcile schedule: when it ticks, the range it re-reads, and that it is a full refresh."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg

from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG, build_reconcile_schedule, reconcile_range

UTC = timezone.utc


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01"))
def some_feedback() -> None: ...


def schedule(days: int = 90, first: date = date(2024, 1, 1)) -> dg.ScheduleDefinition:
    job = dg.define_asset_job("feedback_ingest", selection=[some_feedback])
    return build_reconcile_schedule(job, reconcile_days=days, first_partition=first, full_refresh_tag="feedback/full_refresh")


def test_it_ticks_sundays_at_three_utc_and_ships_stopped():
    sched = schedule()
    assert sched.name == "feedback_reconcile_weekly"
    assert sched.cron_schedule == "0 3 * * 0" and sched.execution_timezone == "UTC"
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED


def test_a_tick_requests_one_full_refresh_run_over_the_last_days():
    tick = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # a Sunday
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        (request,) = schedule(days=90).evaluate_tick(context).run_requests
    assert request.tags[RANGE_START_TAG] == "2026-09-01" and request.tags[RANGE_END_TAG] == "2026-11-29"
    assert request.tags["feedback/full_refresh"] == "true"


def test_the_range_never_starts_before_the_first_partition():
    assert reconcile_range(date(2026, 1, 10), 90, date(2026, 1, 1)) == (date(2026, 1, 1), date(2026, 1, 10))
