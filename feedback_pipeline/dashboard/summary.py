"""A short Markdown summary of a dashboard build, shown with its materialization in the Dagster UI."""

from __future__ import annotations

from .build import DashboardResult
from .queries import as_utc_text


def summary_markdown(result: DashboardResult) -> str:
    """Rows and freshness per provider account, the latest week's NPS and the rejects; or, for a
    skipped build, why the file was left as it is."""
    data = result.data
    if data is None:
        return (
            f"**Unchanged.** `{result.path.name}` already shows this snapshot as of today "
            f"(`{result.key}`): no data changed since, so the file was left as it is."
        )
    lines = [
        f"**{sum(data.totals.column('feedback')):,} feedback rows**, {data.rejects_total:,} rejects; "
        f"drawn {as_utc_text(result.built_at)} into `{result.path.name}` ({result.bytes / 1024:,.0f} KiB).",
        "",
        "| provider | account | rows | last successful sync | partitions behind |",
        "|---|---|---:|---|---:|",
    ]
    for r in data.freshness.records():
        behind = "" if r["partitions_behind"] is None else r["partitions_behind"]
        lines.append(f"| {r['provider']} | {r['account_id']} | {r['feedback_rows']:,} | {as_utc_text(r['last_sync'])} | {behind} |")
    if data.nps_weekly.rows:
        week = data.nps_weekly.records()[-1]
        lines += ["", f"NPS in the week of {week['week']}: **{week['nps']}** from {week['responses']} responses."]
    return "\n".join(lines)
