"""``feedback_ingest_hourly``: one run per hour over today and the lookback days before it."""

from __future__ import annotations

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

    @dg.schedule(
        name="feedback_ingest_hourly",
        job=job,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Every hour: one run of feedback_ingest over today and the {lookback_days} days before it (FEEDBACK_LOOKBACK_DAYS).",
    )
    def feedback_ingest_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        tick = context.scheduled_execution_time.astimezone(UTC)
        first, last = hourly_range(tick.date(), lookback_days, first_partition)
        return dg.RunRequest(
            run_key=tick.strftime("%Y-%m-%dT%H:%M"),
            tags={**(tags or {}), RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        )

    return feedback_ingest_hourly


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

    @dg.schedule(
        name="feedback_reconcile_weekly",
        job=job,
        cron_schedule="0 3 * * 0",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Sundays 03:00 UTC: one full-refresh run of {job.name} over the last {reconcile_days} days "
            "(FEEDBACK_RECONCILE_DAYS): rows deleted at the provider disappear; rows_deleted per provider in the metadata."
        ),
    )
    def feedback_reconcile_weekly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        tick = context.scheduled_execution_time.astimezone(UTC)
        first, last = reconcile_range(tick.date(), reconcile_days, first_partition)
        return dg.RunRequest(
            run_key=f"reconcile:{tick:%Y-%m-%d}",
            tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat(), full_refresh_tag: "true", "feedback/reconcile": "true"},
        )

    return feedback_reconcile_weekly
