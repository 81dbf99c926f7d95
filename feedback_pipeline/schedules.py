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
