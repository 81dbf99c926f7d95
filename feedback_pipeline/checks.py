"""The provider assets' checks: what one run can vouch for, and nothing more.

Each check is scoped to the run's window (its partitions) and its own records, so a historical
backfill is never judged by rows or rejects it did not touch, and each states its rule in its
description. Freshness is not a check: the assets carry Dagster's native ``FreshnessPolicy``.
"""

from __future__ import annotations

from collections import Counter
import dagster as dg

from .sync import SyncReport
from .warehouse import WindowStats

REJECT_RATE_WARN = 0.01
TOP_REASONS = 5

CHECKS: dict[str, str] = {
    "unique_keys": "Among this provider's rows collected in the run's window, no (provider, account_id, feedback_id) appears twice.",
    "collected_at_valid": "Among this provider's rows collected in the run's window, none has a NULL collected_at or a collected_date that is not collected_at's UTC date.",
    "reject_rate": (
        f"Of the records this run received for its window, at most {REJECT_RATE_WARN:.0%} were rejected "
        "(rejected / (rows written or found unchanged + rejected); warns above). The top reasons and the SQL to list them are in the metadata."
    ),
}


def check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=key, description=text) for name, text in CHECKS.items()]


def check_results(key: dg.AssetKey, report: SyncReport, stats: WindowStats, reasons: Counter[str]) -> list[dg.AssetCheckResult]:
    """The three checks' results for one provider's part of a run."""
    counts = report.counts
    rejected = counts.rejected
    # Every record the run received for its window either became a row (new, changed or the same
    # as stored) or a reject; records of other partitions count for neither.
    received = counts.inserted + counts.updated + counts.unchanged + rejected
    rate = rejected / received if received else 0.0
    window = {"window": f"{report.window.first_day}..{report.window.last_day}"}
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="unique_keys",
            passed=stats.duplicate_keys == 0,
            metadata={**window, "rows_in_window": stats.rows_in_window, "duplicate_keys": stats.duplicate_keys},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="collected_at_valid",
            passed=stats.bad_collected == 0,
            metadata={**window, "rows_in_window": stats.rows_in_window, "bad_rows": stats.bad_collected},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="reject_rate",
            passed=rate <= REJECT_RATE_WARN,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                **window,
                "records_rejected": rejected,
                "records_received_for_window": received,
                "reject_rate": round(rate, 5),
                "top_reasons": ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common(TOP_REASONS)) or "none",
                "list_them": dg.MetadataValue.md(f"```sql\n{rejects_sql(report.provider, report.account_id)}\n```"),
            },
        ),
    ]


def rejects_sql(provider: str, account_id: str) -> str:
    """A query an operator pastes into ``duckdb -readonly FEEDBACK_DB`` (shown, never executed
    here; quotes in the account id are doubled so it stays one literal). Rejects carry no
    collected date, so it lists the provider account's rejects, newest first."""
    account = account_id.replace("'", "''")
    return (
        "SELECT reason, feedback_id, rejected_at, payload FROM feedback_rejects\n"
        f"WHERE provider = '{provider}' AND account_id = '{account}'\n"
        "ORDER BY rejected_at DESC, reason;"
    )

