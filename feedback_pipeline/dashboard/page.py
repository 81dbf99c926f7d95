"""The dashboard's HTML: one self-contained page (inline CSS and SVG, no script, no external URL).

Each section states what it shows, the time range it covers and where its numbers come from,
and carries its numbers as a table under "Numbers" (readable by screen readers, copyable, and what
the tests compare with the analyst views). Every value from the database is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import Any

from .queries import LATEST_TEXTS, MIN_PAGE_VOTES, NPS_WEEKS, TOP_PAGES, TOP_REQUESTS, VOLUME_DAYS, DashboardData, Table, as_utc_text

KEY_META = "feedback-dashboard-key"

CSS = """
:root { color-scheme: light; --fg: #1d2430; --muted: #5b6473; --line: #e3e6eb; --card: #fff; --bg: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 16px; }
header h1 { margin: 0 0 4px; font-size: 1.5rem; }
.meta { color: var(--muted); font-size: .9rem; margin: 0; }
.totals { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0 0; padding: 0; list-style: none; }
.totals li { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.totals b { font-size: 1.1rem; }
nav { margin-top: 10px; font-size: .9rem; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav a { color: #2d5b9a; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
section h2 { margin: 0; font-size: 1.1rem; }
.range { margin: 2px 0 0; color: var(--muted); font-size: .85rem; }
.explain { margin: 6px 0 10px; }
.chart svg { display: block; width: 100%; max-width: 760px; height: auto; }
.chart.for-wide svg { max-width: 1240px; }
.for-narrow { display: none; }
@media (max-width: 760px) { .for-wide { display: none; } .for-narrow { display: block; } }
.empty { color: var(--muted); font-style: italic; }
details { margin-top: 8px; }
summary { cursor: pointer; color: #2d5b9a; font-size: .9rem; }
.scroll { overflow-x: auto; max-height: 420px; overflow-y: auto; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
ol.texts { list-style: none; margin: 0; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 380px), 1fr)); gap: 10px; }
ol.texts li { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; overflow-wrap: anywhere; }
.who { color: var(--muted); font-size: .8rem; }
.text { white-space: pre-wrap; margin: 4px 0 0; }
.behind { color: #b3261e; font-weight: 600; }
@media (max-width: 600px) { body { font-size: 14px; } header, main, footer { padding: 10px; } section { padding: 10px; } }
"""


@dataclass(frozen=True)
class Section:
    """One block of the page: a chart (or a list) with its range, explanation and numbers."""

    id: str
    title: str
    range: str
    explain: str
    body: str
    numbers: Table | None
    wide: bool = False


def sections(data: DashboardData, charts: dict[str, str | None]) -> list[Section]:
    """The page's sections in order, with their texts."""
    today = data.today
    return [
        Section(
            "volume", "Daily volume per provider",
            f"{data.volume_first} to {today} (last {VOLUME_DAYS} days, UTC collected dates)",
            "How much feedback each provider received per day (view feedback_daily_counts).",
            _chart(charts["volume"], charts["volume_narrow"]), _pivot_volume(data.daily_volume, data.providers), wide=True,
        ),
        Section(
            "funnel", "Status funnel per provider",
            "all stored feedback that has a unified status",
            "Of what arrived, how much was triaged (no longer open), in progress or resolved, and resolved; "
            "labels give the share of received (view feedback_status_funnel).",
            _chart(charts["funnel"]), data.status_funnel,
        ),
        Section(
            "nps", "NPS per week",
            f"weeks from {data.nps_first} to {today} (last {NPS_WEEKS} weeks, UTC, weeks start on Monday)",
            "Net Promoter Score of survey and widget NPS answers (promoters 9-10 minus detractors 0-6, "
            "in % of responses); the bars are the responses behind it (view nps_daily).",
            _chart(charts["nps"]), data.nps_weekly,
        ),
        Section(
            "pages", "Mintlify: least helpful pages",
            f"all stored votes; the {TOP_PAGES} pages with the lowest helpful share among pages with at least {MIN_PAGE_VOTES} votes",
            "Documentation pages readers vote least helpful; labels give the helpful share and the votes "
            "(view mintlify_page_helpfulness).",
            _chart(charts["pages"]), data.least_helpful,
        ),
        Section(
            "requests", "FeedbackKit: most voted open requests",
            f"all stored requests still open or in progress (merged duplicates left out), top {TOP_REQUESTS}",
            "The feature requests users want most that are not completed or rejected yet; labels give FeedbackKit's own status.",
            _chart(charts["requests"]), data.top_requests,
        ),
        Section(
            "rejects", "Rejects by reason",
            "all records currently in feedback_rejects",
            "Records that could not be stored, by reason and provider; a reject disappears once its record is stored.",
            _chart(charts["rejects"]), data.rejects,
        ),
        Section(
            "freshness", "Freshness per provider and account",
            f"state of the snapshot; partitions behind are counted to today's partition ({today}, UTC)",
            "When each account last read a day whole (last successful sync), its newest synced daily partition and how many "
            "partitions it lags today's, the rows it has stored and its queries left unfinished (to be resumed).",
            _freshness(data.freshness), None, wide=True,
        ),
        Section(
            "latest", f"Latest {LATEST_TEXTS} feedback texts",
            "the newest records with a text, all providers, newest first (UTC)",
            "What end users wrote most recently; e-mail addresses and user ids are removed, long texts shortened.",
            _latest(data.latest), None, wide=True,
        ),
    ]


def render_page(data: DashboardData, charts: dict[str, str | None], *, built_at: datetime, key: str, source: str) -> str:
    """The whole page. ``key`` goes into a meta tag so the next build can tell what this one showed."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="{KEY_META}" content="{escape(key)}">',
        "<title>Feedback dashboard</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>Feedback dashboard</h1>",
        f'<p class="meta">Built {escape(as_utc_text(built_at))} from {escape(source)}. All dates and times are UTC.</p>',
        _totals(data),
    ]
    all_sections = sections(data, charts)
    parts.append("<nav>" + "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in all_sections) + "</nav></header><main>")
    for s in all_sections:
        wide = ' class="wide"' if s.wide else ""
        parts.append(
            f'<section id="{s.id}"{wide}><h2>{escape(s.title)}</h2>'
            f'<p class="range">{escape(s.range)}</p><p class="explain">{escape(s.explain)}</p>{s.body}'
        )
        if s.numbers is not None:
            parts.append(f'<details><summary>Numbers</summary><div class="scroll">{_table(s.numbers, s.id)}</div></details>')
        parts.append("</section>")
    parts.append(
        "</main><footer class=\"meta\">Made by the <code>feedback_dashboard</code> asset from the analysts' snapshot. "
        "Query the same numbers with <code>duckdb -readonly</code> and the views named in each section.</footer></body></html>"
    )
    return "\n".join(parts)


def _totals(data: DashboardData) -> str:
    items = [f"<li>{escape(r['provider'])} <b>{r['feedback']:,}</b></li>" for r in data.totals.records()]
    items.append(f"<li>rejects <b>{data.rejects_total:,}</b></li>")
    return f'<ul class="totals" aria-label="rows stored per provider">{"".join(items)}</ul>'


def _chart(svg: str | None, narrow: str | None = None) -> str:
    """The chart; with ``narrow``, a second drawing for phone widths (CSS shows one of the two)."""
    if svg is None:
        return '<p class="empty">No data in this range yet.</p>'
    if narrow is None:
        return f'<div class="chart">{svg}</div>'
    return f'<div class="chart for-wide">{svg}</div><div class="chart for-narrow">{narrow}</div>'


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return as_utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _table(table: Table, section: str) -> str:
    numeric = [bool(table.rows) and all(isinstance(v, (int, float)) or v is None for v in table.column(c)) for c in table.columns]
    head = "".join(f'<th{" class=n" if n else ""}>{escape(c)}</th>' for c, n in zip(table.columns, numeric))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if n else ""}>{escape(_cell(v))}</td>' for v, n in zip(row, numeric)) + "</tr>"
        for row in table.rows
    )
    return f'<table data-numbers="{section}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pivot_volume(table: Table, providers: Sequence[str]) -> Table:
    """Daily volume as one row per day and one column per provider (missing: 0)."""
    by_day: dict[date, dict[str, int]] = {}
    for r in table.records():
        by_day.setdefault(r["collected_date"], {})[r["provider"]] = r["feedback"]
    rows = [(day, *(counts.get(p, 0) for p in providers)) for day, counts in sorted(by_day.items())]
    return Table(("collected_date", *providers), rows)


def _freshness(table: Table) -> str:
    if not table.rows:
        return '<p class="empty">Nothing synced yet.</p>'
    head = ("provider", "account", "last successful sync", "newest synced partition", "partitions behind", "rows stored", "unfinished queries")
    numeric = (False, False, False, False, True, True, True)
    rows = []
    for r in table.records():
        behind = r["partitions_behind"]
        behind_html = "" if behind is None else (f'<span class="behind">{behind}</span>' if behind > 1 else str(behind))
        cells = (
            escape(r["provider"]), escape(r["account_id"]), escape(as_utc_text(r["last_sync"])),
            escape(_cell(r["newest_synced_day"]) or "none"), behind_html, escape(str(r["feedback_rows"])), escape(str(r["unfinished_queries"])),
        )
        rows.append("<tr>" + "".join(f'<td{" class=n" if n else ""}>{c}</td>' for c, n in zip(cells, numeric)) + "</tr>")
    header = "".join(f'<th{" class=n" if n else ""}>{escape(h)}</th>' for h, n in zip(head, numeric))
    return f'<div class="scroll"><table data-numbers="freshness"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _latest(table: Table) -> str:
    if not table.rows:
        return '<p class="empty">No feedback text yet.</p>'
    items = []
    for r in table.records():
        who = " · ".join(escape(v) for v in (r["provider"], as_utc_text(r["collected_at"]), r["status"] or "no status", r["category"] or "") if v)
        title = f"<strong>{escape(r['title'])}</strong>" if r["title"] else ""
        body = f'<p class="text">{escape(r["body"])}</p>' if r["body"] else ""
        items.append(f'<li><div class="who">{who}</div>{title}{body}</li>')
    return f'<ol class="texts" data-numbers="latest">{"".join(items)}</ol>'
