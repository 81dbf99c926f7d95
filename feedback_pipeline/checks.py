"""The provider assets' checks: what one run can vouch for, and nothing more.

Each check is scoped to the run's window (its partitions) and its own records, so a historical
backfill is never judged by rows or rejects it did not touch, and each states its rule in its
description. Freshness is not a check: the assets carry Dagster's native ``FreshnessPolicy``.
"""

from __future__ import annotations

from collections import Counter
import dagster as dg

from .providers.base import Window
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


def check_results(key: dg.AssetKey, report: SyncReport, stats: WindowStats, reasons: Counter[str], *, every_account: bool = False) -> list[dg.AssetCheckResult]:
    """The three checks' results for one provider's part of a run (``every_account``: the report
    adds up several accounts, so the SQL that lists the rejects covers all of them)."""
    counts = report.counts
    rejected = counts.rejected
    # Every record the run received for its window either became a row (new, changed or the same
    # as stored) or a reject; records of other partitions count for neither.
    received = counts.inserted + counts.updated + counts.unchanged + rejected
    scope = {"window": f"{report.window.first_day}..{report.window.last_day}"}
    received_entry = {"records_received_for_window": received}
    return _results(key, scope, stats, rejected, received_entry, reasons, rejects_sql(report.provider, None if every_account else report.account_id))


def unsynced_check_results(
    key: dg.AssetKey, provider: str, window: Window, stats: WindowStats, reasons: Counter[str], received: int, why: str
) -> list[dg.AssetCheckResult]:
    """The checks of a provider whose checks the run planned but which this run did not sync in
    full: an account of it failed, or the launch selected its checks without the asset.

    Dagster 1.13 resolves a check that a failed run planned but did not evaluate as "Execution
    failed" (``AssetCheckExecutionRecord.resolve_status``), has no skipped result a step could
    report, and plans the checks of the selected assets for every asset launch from the UI, a
    backfill or ``dagster asset materialize``. So each such check is evaluated over what the run
    can vouch for without that sync: the provider's rows stored for the window (every account),
    and the records its accounts received in this run (none after an HTTP 401). ``why`` opens
    each result's description and is in its metadata."""
    scope = {"not_synced_by_this_run": why, "window": f"{window.first_day}..{window.last_day}"}
    description = f"Evaluated without this run's sync of {provider}: {why}"
    received_entry = {"records_received": received}
    return _results(key, scope, stats, sum(reasons.values()), received_entry, reasons, rejects_sql(provider, None), description)


def _results(
    key: dg.AssetKey,
    scope: dict[str, str],
    stats: WindowStats,
    rejected: int,
    received: dict[str, int],
    reasons: Counter[str],
    sql: str,
    description: str | None = None,
) -> list[dg.AssetCheckResult]:
    """The three results from their numbers; ``received`` is the reject rate's denominator under
    the name that says what it counted."""
    total = sum(received.values())
    rate = rejected / total if total else 0.0
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="unique_keys",
            passed=stats.duplicate_keys == 0,
            description=description,
            metadata={**scope, "rows_in_window": stats.rows_in_window, "duplicate_keys": stats.duplicate_keys},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="collected_at_valid",
            passed=stats.bad_collected == 0,
            description=description,
            metadata={**scope, "rows_in_window": stats.rows_in_window, "bad_rows": stats.bad_collected},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="reject_rate",
            passed=rate <= REJECT_RATE_WARN,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={
                **scope,
                "records_rejected": rejected,
                **received,
                "reject_rate": round(rate, 5),
                "top_reasons": ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common(TOP_REASONS)) or "none",
                "list_them": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
            },
        ),
    ]


def rejects_sql(provider: str, account_id: str | None) -> str:
    """A query an operator pastes into ``duckdb -readonly FEEDBACK_DB`` (shown, never executed
    here; quotes in the account id are doubled so it stays one literal). Rejects carry no
    collected date, so it lists the provider account's rejects (every account's when
    ``account_id`` is None), newest first."""
    account = "" if account_id is None else " AND account_id = '" + account_id.replace("'", "''") + "'"
    return (
        "SELECT reason, feedback_id, rejected_at, payload FROM feedback_rejects\n"
        f"WHERE provider = '{provider}'{account}\n"
        "ORDER BY rejected_at DESC, reason;"
    )

