"""The schedules: ``feedback_ingest_hourly`` (one run per hour over today and the lookback days
before it) and ``feedback_reconcile_weekly`` (a weekly full refresh of the last days)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta, timezone

import dagster as dg

UTC = timezone.utc
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def hourly_range(tick_date: date, lookback_days: int, first_partition: date) -> tuple[date, date]:
    """The partition range a tick on ``tick_date`` materializes: never before the first partition."""
    return max(first_partition, tick_date - timedelta(days=lookback_days)), tick_date


def build_hourly_schedule(job: dg.UnresolvedAssetJobDefinition, *, lookback_days: int, first_partition: date, tags: dict[str, str] | None = None) -> dg.ScheduleDefinition:
    """Hourly (UTC), stopped until an operator turns it on (UI toggle or ``dagster schedule start``).
    Late status changes inside the lookback are caught because each tick re-syncs those days.
    ``tags`` go on every run it requests."""
    return _range_schedule(
        job,
        name="feedback_ingest_hourly",
        cron_schedule="0 * * * *",
        description=f"Every hour: one run of feedback_ingest over today and the {lookback_days} days before it (FEEDBACK_LOOKBACK_DAYS).",
        range_of=lambda day: hourly_range(day, lookback_days, first_partition),
        run_key_format="%Y-%m-%dT%H:%M",
        tags=tags or {},
    )


def reconcile_range(tick_date: date, reconcile_days: int, first_partition: date) -> tuple[date, date]:
    """The partition range a reconcile tick on ``tick_date`` re-reads: the last ``reconcile_days``
    days up to and including the tick's day, never before the first partition."""
    return max(first_partition, tick_date - timedelta(days=reconcile_days - 1)), tick_date


def build_reconcile_schedule(
    job: dg.UnresolvedAssetJobDefinition, *, reconcile_days: int, first_partition: date, full_refresh_tag: str
) -> dg.ScheduleDefinition:
    """Sunday 03:00 UTC, stopped until an operator turns it on: a full refresh of the last
    ``reconcile_days`` days, so records deleted at a provider leave ``feedback`` without anyone
    remembering to launch one. A provider's request budget spreads it over several hours when it
    must (the run stops cleanly and ``feedback_resume`` continues the refresh from its cursor)."""
    return _range_schedule(
        job,
        name="feedback_reconcile_weekly",
        cron_schedule="0 3 * * 0",
        description=(
            f"Sundays 03:00 UTC: one full-refresh run of {job.name} over the last {reconcile_days} days "
            "(FEEDBACK_RECONCILE_DAYS): rows deleted at the provider disappear; rows_deleted per provider in the metadata."
        ),
        range_of=lambda day: reconcile_range(day, reconcile_days, first_partition),
        run_key_format="reconcile:%Y-%m-%d",
        tags={full_refresh_tag: "true", "feedback/reconcile": "true"},
    )


def _range_schedule(
    job: dg.UnresolvedAssetJobDefinition,
    *,
    name: str,
    cron_schedule: str,
    description: str,
    range_of: Callable[[date], tuple[date, date]],
    run_key_format: str,
    tags: Mapping[str, str],
) -> dg.ScheduleDefinition:
    """A schedule (UTC, shipped stopped) whose tick requests one run of ``job`` over the
    partition range ``range_of(tick day)``, with ``tags`` and the range tags; the run key is the
    tick formatted with ``run_key_format``, so a tick is never launched twice."""

    def evaluate(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        tick = context.scheduled_execution_time.astimezone(UTC)
        first, last = range_of(tick.date())
        return dg.RunRequest(
            run_key=tick.strftime(run_key_format),
            tags={**tags, RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        )

    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description,
        execution_fn=evaluate,
    )
