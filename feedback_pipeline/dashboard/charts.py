"""The dashboard's charts: Vega-Altair specifications rendered to static SVG by vl-convert.

Static SVG needs no JavaScript, no CDN and no server: the page opens offline, at once, and a
chart is a few kilobytes whatever the warehouse holds (the data are the query's aggregates).
vl-convert renders in-process (its first call starts its embedded JavaScript engine, ~0.5 s).

Times are UTC: Vega parses ISO dates as UTC but formats axes in the renderer's local time zone
unless the scale is ``utc``, so every temporal axis uses a utc scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import altair as alt
import vl_convert as vlc

from .queries import Table

WIDTH = 460  # a card's chart: scaled down to fit a phone (~0.75), up to fit a laptop's card
WIDE_WIDTH = 1000  # the full-width time series on a laptop (the page shows the narrow one on phones)
# vl-convert lays labels out with the metrics of a font it finds on this machine; the browser
# then draws them in whatever the name resolves to there. Liberation Sans and Arial share their
# metrics, so labels fit (and are not clipped) on Linux, macOS and Windows alike.
FONT = "Liberation Sans, Arial, Helvetica, sans-serif"
CONFIG: dict[str, Any] = {
    "font": FONT,
    "axis": {"labelFontSize": 13, "titleFontSize": 13, "labelColor": "#333", "titleColor": "#333"},
    "legend": {"labelFontSize": 13, "titleFontSize": 13, "orient": "bottom", "direction": "horizontal", "columns": 3},
    "view": {"stroke": None},
    "background": "white",
}
FUNNEL_STAGES = ("received", "triaged", "in_progress_or_resolved", "resolved")


def render(chart: alt.TopLevelMixin) -> str:
    """The chart as one ``<svg>`` element."""
    # No base URL allowed: the data are inline, and rendering must never reach the network.
    svg = vlc.vegalite_to_svg(chart.to_dict(), config=CONFIG, allowed_base_urls=[])
    return svg[svg.index("<svg"):]  # drop any XML prolog: the SVG is inlined into HTML


def warm() -> None:
    """Start vl-convert's JavaScript engine with a one-point chart: a warm child's first real
    chart then renders in milliseconds instead of half a second (build.start_warm_child)."""
    render(alt.Chart(alt.Data(values=[{"x": 0}])).mark_point().encode(x="x:Q"))


def provider_color(providers: Sequence[str]) -> alt.Color:
    """One colour per provider, the same in every chart (the domain is the full provider list)."""
    return alt.Color("provider:N", title="provider", scale=alt.Scale(domain=list(providers), scheme="tableau10"))


def daily_volume(table: Table, first: date, last: date, providers: Sequence[str], *, width: int = WIDTH) -> str | None:
    """Stacked bars: the day's total and each provider's part of it."""
    if not table.rows:
        return None
    data = [{"day": r["collected_date"].isoformat(), "provider": r["provider"], "feedback": r["feedback"]} for r in table.records()]
    days = (last - first).days + 1
    x_scale = alt.Scale(type="utc", domain=[first.isoformat(), (last + timedelta(days=1)).isoformat()])
    chart = (
        alt.Chart(alt.Data(values=data))
        .mark_bar(size=max(2, int(width / days * 0.8)), align="left")
        .encode(
            x=alt.X("day:T", title=None, scale=x_scale, axis=alt.Axis(format="%b %d", tickCount=6)),
            y=alt.Y("feedback:Q", title="feedback per day", stack="zero"),
            color=provider_color(providers),
            order=alt.Order("provider:N"),
        )
        .properties(width=width, height=220)
    )
    return render(chart)


def status_funnel(table: Table, providers: Sequence[str]) -> str | None:
    if not table.rows:
        return None
    data = [
        {"provider": r["provider"], "stage": r["stage"].replace("_", " "), "feedback": r["feedback"],
         "share": f"{r['share_of_received']:.0%}"}
        for r in table.records()
    ]
    stages = [s.replace("_", " ") for s in FUNNEL_STAGES]
    base = alt.Chart().encode(  # data on the layer: a faceted layer takes it from its parent
        y=alt.Y("stage:N", sort=stages, title=None),
        x=alt.X("feedback:Q", title="feedback"),
    )
    bars = base.mark_bar().encode(color=provider_color(providers).legend(None))  # rows name the provider
    labels = base.mark_text(align="left", dx=3, fontSize=12, color="#333").encode(text="share:N")
    chart = (
        alt.layer(bars, labels, data=alt.Data(values=data))
        .properties(width=WIDTH - 170, height=90)
        .facet(row=alt.Row("provider:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left", labelFontSize=12)))
        .resolve_scale(x="independent")
    )
    return render(chart)


def nps_weekly(table: Table, first: date, last: date) -> str | None:
    if not table.rows:
        return None
    data = [{"week": r["week"].isoformat(), "nps": r["nps"], "responses": r["responses"]} for r in table.records()]
    weeks = max(1, (last - first).days // 7 + 1)
    x_scale = alt.Scale(type="utc", domain=[first.isoformat(), last.isoformat()])
    x = alt.X("week:T", title=None, scale=x_scale, axis=alt.Axis(format="%b %d", tickCount=6))
    base = alt.Chart(alt.Data(values=data))
    nps = base.mark_line(point=True, color="#4c78a8").encode(
        x=x, y=alt.Y("nps:Q", title="NPS", scale=alt.Scale(domain=[-100, 100])),
    ).properties(width=WIDTH, height=160)
    zero = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="#999", strokeDash=[3, 3]).encode(y="y:Q")
    responses = base.mark_bar(color="#9ecae9", size=max(3, WIDTH // (weeks * 2))).encode(
        x=x, y=alt.Y("responses:Q", title="responses"),
    ).properties(width=WIDTH, height=80)
    return render(alt.vconcat(alt.layer(zero, nps), responses, spacing=8))


def least_helpful(table: Table) -> str | None:
    if not table.rows:
        return None
    data = [
        {"page": r["page_url"], "helpful_share": r["helpful_share"], "label": f"{r['helpful_share']:.0%} of {r['votes']}"}
        for r in table.records()
    ]
    order = [d["page"] for d in data]
    base = alt.Chart(alt.Data(values=data)).encode(
        y=alt.Y("page:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X("helpful_share:Q", title="share of votes saying helpful", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
    )
    chart = alt.layer(
        base.mark_bar(color="#e45756"),
        base.mark_text(align="left", dx=3, fontSize=12, color="#333").encode(text="label:N"),
    ).properties(width=WIDTH - 230, height=alt.Step(22))
    return render(chart)


def top_requests(table: Table) -> str | None:
    if not table.rows:
        return None
    # Titles repeat (two requests may share one): a rank makes every bar its own.
    data = [
        {"request": f"{i}. {r['title'] or '(no title)'}", "votes": r["votes"] or 0, "status": r["provider_status"]}
        for i, r in enumerate(table.records(), start=1)
    ]
    order = [d["request"] for d in data]
    base = alt.Chart(alt.Data(values=data)).encode(
        y=alt.Y("request:N", sort=order, title=None, axis=alt.Axis(labelLimit=230)),
        x=alt.X("votes:Q", title="votes"),
    )
    chart = alt.layer(
        base.mark_bar(color="#59a14f"),
        base.mark_text(align="left", dx=3, fontSize=12, color="#333").encode(text="status:N"),
    ).properties(width=WIDTH - 250, height=alt.Step(22))
    return render(chart)


def rejects(table: Table, providers: Sequence[str]) -> str | None:
    if not table.rows:
        return None
    data = table.records()
    order = list(dict.fromkeys(r["reason"] for r in data))
    chart = (
        alt.Chart(alt.Data(values=data))
        .mark_bar()
        .encode(
            y=alt.Y("reason:N", sort=order, title=None, axis=alt.Axis(labelLimit=200)),
            x=alt.X("sum(records):Q", title="rejected records"),
            color=provider_color(providers),
        )
        .properties(width=WIDTH - 180, height=alt.Step(22))
    )
    return render(chart)
