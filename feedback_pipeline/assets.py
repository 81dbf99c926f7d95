"""The asset factory: one ``<provider>_feedback`` asset per provider, all built the same way.

Each asset materializes a range of UTC collected-date partitions of the ``feedback`` table for
its provider in one run (single-run backfill policy), reports what it did as metadata, and
evaluates its checks in the same step (no extra process per check).
"""


from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from .providers import get_spec
from .providers.base import Window
from .schema import COLUMN_DESCRIPTIONS, FEEDBACK_COLUMNS
from .settings import FULL_REFRESH_TAG, PipelineResource
from .sync import SyncReport, sync
from .warehouse import Warehouse

UTC = timezone.utc
WRITER_POOL = "feedback_duckdb_writer"
REJECT_RATE_WARN = 0.01
FRESHNESS_HOURS = 2.0

CHECKS = {
    "unique_keys": "No (provider, account_id, feedback_id) appears twice in feedback.",
    "collected_at_valid": "No row has a NULL collected_at or a collected_date that is not its UTC date.",
    "reject_rate": f"Rejected records stay under {REJECT_RATE_WARN:.0%} of all records (warns above).",
    "newest_partition_fresh": f"The newest partition was synced within the last {FRESHNESS_HOURS:g} hours (warns otherwise).",
}


def asset_key(provider: str) -> dg.AssetKey:
    return dg.AssetKey(get_spec(provider).asset_name)


def build_provider_asset(provider: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The ``<provider>_feedback`` asset (see the module docstring)."""
    key = asset_key(provider)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        group_name="feedback",
        kinds={"duckdb", "api"},
        description=get_spec(provider).description
        + " Rows land in the `feedback` table (one row per provider, account_id, feedback_id), partitioned by UTC collected date.",
        required_resource_keys={provider, "pipeline"},
        check_specs=[dg.AssetCheckSpec(name, asset=key, description=text) for name, text in CHECKS.items()],
        metadata={
            "dagster/table_name": "feedback",
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name, sqltype.replace(" NOT NULL", ""), description=COLUMN_DESCRIPTIONS[name])
                    for name, sqltype, _ in FEEDBACK_COLUMNS
                ]
            ),
        },
        tags={"provider": provider},
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        pipeline: PipelineResource = context.resources.pipeline
        provider_obj = get_spec(provider).provider(getattr(context.resources, provider), policy=pipeline.retry_policy())
        start, end = context.partition_time_window
        window = Window(start.astimezone(UTC), end.astimezone(UTC))
        full_refresh = str(context.run.tags.get(FULL_REFRESH_TAG, "")).lower() == "true"
        warehouse = Warehouse(pipeline.db_path, lock_timeout=pipeline.lock_timeout_seconds)
        context.log.info(f"{provider}: syncing {window}{' (full refresh)' if full_refresh else ''}")
        report = sync(provider_obj, warehouse, window, full_refresh=full_refresh, logger=context.log)
        return dg.MaterializeResult(metadata=_metadata(report, report.checks), check_results=_check_results(key, report, report.checks))

    return _asset


def _metadata(report: SyncReport, stats: dict[str, Any]) -> dict[str, Any]:
    counts = report.counts
    return {
        "window": f"{report.window.first_day}..{report.window.last_day}",
        "full_refresh": report.full_refresh,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_deleted": counts.deleted,
        "rows_rejected": counts.rejected,
        "rows_outside_window": counts.out_of_window,
        "records_received": report.records,
        "requests": report.requests,
        "retries": report.retries,
        "pages": report.pages,
        "queries": ", ".join(report.queries),
        "resumed_queries": ", ".join(report.resumed) or "none",
        "watermark": report.watermark.isoformat() if report.watermark else "none (window not fully synced)",
        "published_snapshot": report.published,
        "duration_seconds": round(report.duration, 3),
        "seconds_waiting_for_pages": round(report.seconds["fetch_wait"], 3),
        "seconds_normalizing": round(report.seconds["normalize"], 3),
        "seconds_committing": round(report.seconds["commit"], 3),
        "dagster/row_count": stats["rows_in_range"],
    }


def _check_results(key: dg.AssetKey, report: SyncReport, stats: dict[str, Any]) -> list[dg.AssetCheckResult]:
    total = stats["total_rows"] + stats["total_rejects"]
    rate = stats["total_rejects"] / total if total else 0.0
    newest_at = stats["newest_synced_at"]
    age_hours = (datetime.now(UTC) - newest_at).total_seconds() / 3600 if newest_at else None
    today = datetime.now(UTC).date()
    fresh = newest_at is not None and stats["newest_synced_day"] >= today - timedelta(days=1) and age_hours <= FRESHNESS_HOURS
    warn = dg.AssetCheckSeverity.WARN
    return [
        dg.AssetCheckResult(asset_key=key, check_name="unique_keys", passed=stats["duplicate_keys"] == 0, metadata={"duplicate_keys": stats["duplicate_keys"]}),
        dg.AssetCheckResult(asset_key=key, check_name="collected_at_valid", passed=stats["bad_collected"] == 0, metadata={"bad_rows": stats["bad_collected"]}),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="reject_rate",
            passed=rate <= REJECT_RATE_WARN,
            severity=warn,
            metadata={"rejects": stats["total_rejects"], "rows": stats["total_rows"], "reject_rate": round(rate, 5)},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="newest_partition_fresh",
            passed=fresh,
            severity=warn,
            metadata={
                "newest_synced_day": str(stats["newest_synced_day"]),
                "hours_since_sync": round(age_hours, 2) if age_hours is not None else -1.0,
            },
        ),
    ]
