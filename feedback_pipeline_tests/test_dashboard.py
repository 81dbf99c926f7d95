"""The dashboard file: its numbers equal the analyst views, it carries no personal data, it is
self-contained, and it is redrawn exactly when the snapshot (or the day) changed."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.dashboard import build as build_module
from feedback_pipeline.dashboard import build_dashboard
from feedback_pipeline.dashboard.queries import EMAIL, MIN_PAGE_VOTES, TOP_PAGES, TOP_REQUESTS, redact
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Progress, Scope, Warehouse

from .conftest import sync_sandbox
from .test_views import DAY1, DAY2, store

UTC = timezone.utc
SECTIONS = ("volume", "funnel", "nps", "pages", "requests", "rejects", "freshness", "latest")
CHART_SECTIONS = ("volume", "funnel", "nps", "pages", "requests", "rejects")


class Page(HTMLParser):
    """What the tests read back from the file: per section its charts' mark labels, its numbers
    tables and texts; and every reference that a browser would load."""

    LOADING_TAGS = {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source", "image", "use", "base", "form"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.section: str | None = None
        self.sections: dict[str, dict] = {}
        self.loads: list[str] = []
        self.meta: dict[str, str] = {}
        self.styles: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self._in_style = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in self.LOADING_TAGS:
            self.loads.append(f"<{tag}>")
        for name in ("src", "srcset", "href", "xlink:href", "action", "poster", "data", "background"):
            value = a.get(name)
            if value is not None and not value.startswith("#"):
                self.loads.append(f"{tag} {name}={value}")
        if "style" in a:
            self.styles.append(a["style"] or "")
        if tag == "meta" and a.get("name"):
            self.meta[a["name"]] = a.get("content") or ""
        if tag == "style":
            self._in_style = True
        if tag == "section":
            self.section = a["id"]
            self.sections[self.section] = {"svgs": 0, "marks": [], "tables": {}, "items": [], "text": []}
        if self.section is None:
            return
        current = self.sections[self.section]
        if tag == "svg":
            current["svgs"] += 1
        if a.get("role") == "graphics-symbol" and a.get("aria-label"):
            current["marks"].append(a["aria-label"])
        if tag == "table":
            self._table = []
            current["tables"][a.get("data-numbers")] = self._table
        if tag == "tr" and self._table is not None:
            self._table.append([])
        if tag in ("td", "th") and self._table is not None:
            self._cell = []
        if tag == "li" and self.section == "latest":
            current["items"].append([])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None
        if tag == "section":
            self.section = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self.section is not None:
            self.sections[self.section]["text"].append(data)
            if self.section == "latest" and self.sections["latest"]["items"]:
                self.sections["latest"]["items"][-1].append(data)

    def rows(self, section: str) -> list[list[str]]:
        """The section's numbers table, header row first."""
        return self.sections[section]["tables"][section]


def marks(page: Page, section: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """The aria labels of a section's chart marks (``field: value; field: value``) as dicts;
    values may contain "; " themselves (titles), so labels are split at the known field names."""
    names = "|".join(re.escape(f) for f in fields)
    pattern = re.compile(rf"(?:^|; )({names}): (.*?)(?=; (?:{names}): |$)")
    out = []
    for label in page.sections[section]["marks"]:
        found = dict(pattern.findall(label))
        if found and set(found) <= set(fields):
            out.append(found)
    return out


def number(text: str) -> float:
    """A number as Vega formats it (thousands separators, a typographic minus)."""
    return float(text.replace(",", "").replace("\u2212", "-").rstrip("%"))


def vega_day(day: date) -> str:
    return day.strftime("%b %d")


def sql(db: Path, query: str, params: dict | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(query, params or {}).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def snapshot(sandbox_server, tmp_path_factory) -> Path:
    """The sandbox's 30 days synced into a fresh warehouse; the analysts' snapshot path."""
    sandbox_server.reset()
    return sync_sandbox(sandbox_server, tmp_path_factory.mktemp("dashboard") / "feedback.duckdb")


@pytest.fixture(scope="module")
def built(snapshot: Path) -> tuple[Path, Page, date]:
    out = snapshot.parent / "dashboard.html"
    result = build_dashboard(snapshot, out)
    assert result.written
    return out, Page(out.read_text(encoding="utf-8")), result.built_at.date()


def test_every_section_has_its_title_range_explanation_and_chart(built):
    _, page, today = built
    assert tuple(page.sections) == SECTIONS
    for name in SECTIONS:
        text = " ".join(page.sections[name]["text"])
        assert "No data" not in text, name
    for name in CHART_SECTIONS:
        assert page.sections[name]["svgs"] >= 1 and page.sections[name]["marks"], name
    assert f"{today - timedelta(days=89)} to {today} (last 90 days" in " ".join(page.sections["volume"]["text"])


def test_the_file_loads_nothing_from_outside(built):
    path, page, _ = built
    assert page.loads == []  # no script, stylesheet, image, font or frame: everything is inline
    assert not any("url(" in s or "@import" in s for s in page.styles)
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html.lower()


def test_no_user_id_or_email_from_the_sandbox_is_in_the_file(built, snapshot: Path):
    path, _, _ = built
    content = path.read_bytes()
    ids = {v for (v,) in sql(snapshot, "SELECT DISTINCT user_id FROM feedback WHERE user_id IS NOT NULL")}
    emails = {v for (v,) in sql(snapshot, "SELECT DISTINCT user_email FROM feedback WHERE user_email IS NOT NULL")}
    for (payload,) in sql(snapshot, "SELECT payload::VARCHAR FROM feedback_rejects WHERE payload IS NOT NULL"):
        emails |= set(EMAIL.findall(payload))
    assert len(ids) > 100 and len(emails) > 100  # the sandbox serves plenty of both
    leaked = [v for v in ids | emails if v.encode() in content]
    assert leaked == []
    assert EMAIL.findall(content.decode("utf-8")) == []


def test_daily_volume_equals_feedback_daily_counts(built, snapshot: Path):
    _, page, today = built
    first = today - timedelta(days=89)
    expected = {
        (d, p): n
        for d, p, n in sql(
            snapshot,
            "SELECT collected_date, provider, sum(feedback) FROM feedback_daily_counts WHERE collected_date BETWEEN $f AND $l GROUP BY ALL",
            {"f": first, "l": today},
        )
    }
    header, *rows = page.rows("volume")
    table = {(date.fromisoformat(r[0]), p): int(v) for r in rows for p, v in zip(header[1:], r[1:]) if int(v)}
    assert table == expected and len(expected) > 100
    drawn = {(m["day"], m["provider"], number(m["feedback per day"])) for m in marks(page, "volume", ("day", "feedback per day", "provider"))}
    assert drawn == {(vega_day(d), p, n) for (d, p), n in expected.items()}


def test_status_funnel_equals_feedback_status_funnel(built, snapshot: Path):
    _, page, _ = built
    expected = sql(snapshot, "SELECT provider, stage_order, stage, feedback, share_of_received FROM feedback_status_funnel ORDER BY provider, stage_order")
    _, *rows = page.rows("funnel")
    assert [(r[0], int(r[1]), r[2], int(r[3]), float(r[4])) for r in rows] == expected
    drawn = {(m["provider"], m["stage"], number(m["feedback"])) for m in marks(page, "funnel", ("feedback", "stage", "provider", "share")) if "provider" in m}
    assert drawn == {(p, s.replace("_", " "), n) for p, _, s, n, _ in expected}


def test_nps_per_week_adds_up_the_days_of_nps_daily(built, snapshot: Path):
    _, page, today = built
    weeks: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for day, responses, promoters, passives, detractors, _ in sql(snapshot, "SELECT * FROM nps_daily"):
        if day >= today - timedelta(days=today.weekday() + 7 * 25):
            totals = weeks[day - timedelta(days=day.weekday())]
            for i, v in enumerate((responses, promoters, passives, detractors)):
                totals[i] += v
    expected = [(w, r, p, pa, d, round(100.0 * (p - d) / r, 1)) for w, (r, p, pa, d) in sorted(weeks.items())]
    _, *rows = page.rows("nps")
    assert [(date.fromisoformat(r[0]), *map(int, r[1:5]), float(r[5])) for r in rows] == expected and len(expected) >= 4
    drawn = marks(page, "nps", ("week", "NPS", "responses"))
    assert {(m["week"], number(m["NPS"])) for m in drawn if "NPS" in m} == {(vega_day(w), nps) for w, *_, nps in expected}
    assert {(m["week"], number(m["responses"])) for m in drawn if "responses" in m} == {(vega_day(w), r) for w, r, *_ in expected}


def test_least_helpful_pages_come_from_mintlify_page_helpfulness(built, snapshot: Path):
    _, page, _ = built
    views = sql(snapshot, "SELECT page_url, votes, helpful, not_helpful, helpful_share FROM mintlify_page_helpfulness")
    expected = sorted((r for r in views if r[1] >= MIN_PAGE_VOTES), key=lambda r: (r[4], -r[1], r[0]))[:TOP_PAGES]
    _, *rows = page.rows("pages")
    assert [(r[0], int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows] == expected and expected
    fields = ("page", "share of votes saying helpful", "label")
    drawn = [(m["page"], round(number(m[fields[1]]) / 100, 4)) for m in marks(page, "pages", fields) if "label" not in m]
    assert drawn == [(p, share) for p, _, _, _, share in expected]


def test_most_voted_open_requests_are_the_cookbook_query(built, snapshot: Path):
    _, page, _ = built
    expected = sql(
        snapshot,
        """SELECT title, provider_status, CAST(attributes ->> '$.voteCount' AS INTEGER) AS votes
        FROM feedback
        WHERE provider = 'feedbackkit' AND status IN ('open', 'in_progress') AND attributes ->> '$.mergedIntoId' IS NULL
        ORDER BY votes DESC, collected_at DESC, feedback_id LIMIT $n""",
        {"n": TOP_REQUESTS},
    )
    _, *rows = page.rows("requests")
    assert [(r[0], r[1], int(r[2])) for r in rows] == expected and len(expected) == TOP_REQUESTS
    drawn = [(m["request"], number(m["votes"])) for m in marks(page, "requests", ("request", "votes", "status")) if "status" not in m]
    assert drawn == [(f"{i}. {t}", v) for i, (t, _, v) in enumerate(expected, start=1)]


def test_rejects_by_reason_count_feedback_rejects(built, snapshot: Path):
    _, page, _ = built
    expected = sql(snapshot, "SELECT reason, provider, count(*) FROM feedback_rejects GROUP BY ALL")
    _, *rows = page.rows("rejects")
    assert sorted((r[0], r[1], int(r[2])) for r in rows) == sorted(expected) and expected
    drawn = {(m["reason"], m["provider"], number(m["rejected records"])) for m in marks(page, "rejects", ("rejected records", "reason", "provider"))}
    assert drawn == set(expected)


def test_freshness_shows_each_account_last_sync_and_partitions_behind(built, snapshot: Path):
    _, page, today = built
    expected = sql(
        snapshot,
        """SELECT d.provider, d.account_id, strftime(max(synced_at), '%Y-%m-%d %H:%M UTC'), max(day)::VARCHAR,
                  date_diff('day', max(day), $today)::VARCHAR,
                  (SELECT count(*) FROM feedback f WHERE f.provider = d.provider AND f.account_id = d.account_id)::VARCHAR
        FROM pipeline_sync_days d GROUP BY ALL ORDER BY ALL""",
        {"today": today},
    )
    _, *rows = page.rows("freshness")
    assert [tuple(r[:6]) for r in rows] == expected and len(expected) == 5
    assert all(r[4] == "0" and r[6] == "0" for r in rows)  # synced through today, nothing left unfinished


def test_latest_texts_are_the_20_newest_records_with_a_text(built, snapshot: Path):
    _, page, _ = built
    expected = sql(
        snapshot,
        """SELECT provider, strftime(collected_at, '%Y-%m-%d %H:%M UTC') FROM feedback
        WHERE coalesce(body, '') <> '' OR coalesce(title, '') <> ''
        ORDER BY collected_at DESC, provider, account_id, feedback_id LIMIT 20""",
    )
    items = page.sections["latest"]["items"]
    assert [tuple("".join(item).split(" · ")[:2]) for item in items] == expected


def put(wh: Warehouse, provider: str, rows: list[dict]) -> None:
    """Commit ``rows`` (FeedbackBatch.add keyword arguments) as one finished query of April 1-2."""
    batch = FeedbackBatch(provider, "acct")
    for row in rows:
        batch.add(row, **row)
    progress = Progress("window:test", DAY1, DAY2, None, datetime.now(UTC), 1, None)
    with wh.session() as session, session.cursor() as cursor:
        cursor.commit(Scope(provider, "acct", DAY1, DAY2), batch.rows(), batch.rejects(), progress)
    wh.publish_if_behind()


def test_texts_lose_the_emails_and_user_ids_their_authors_typed(tmp_path: Path):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    put(wh, "feedbackkit", [{
        "feedback_id": "1", "collected_at": "2026-04-01T13:00:00Z", "title": "Ping ana.42@example.org",
        "body": "Call me: ana.42@example.org or as user-31337, cc bob@example.net", "user_id": "user-31337", "user_email": "ana.42@example.org",
    }])
    out = tmp_path / "dashboard.html"
    build_dashboard(wh.path, out, now=datetime(2026, 4, 2, 8, tzinfo=UTC))
    html = out.read_text(encoding="utf-8")
    assert "Call me: [redacted] or as [redacted], cc [e-mail]" in html and "Ping [redacted]" in html
    assert "user-31337" not in html and "ana.42@example.org" not in html and "bob@" not in html


def test_redact_replaces_emails_and_the_given_identifiers():
    assert redact("mail x.y+z@sub.example.co.uk; id u-9", ("u-9", None, "")) == "mail [e-mail]; id [redacted]"
    assert redact(None) is None


def test_an_empty_warehouse_gives_a_page_saying_there_is_no_data(tmp_path: Path):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    wh.publish_if_behind()
    out = tmp_path / "dashboard.html"
    assert build_dashboard(wh.path, out).written
    page = Page(out.read_text(encoding="utf-8"))
    assert tuple(page.sections) == SECTIONS
    for name in CHART_SECTIONS:
        assert page.sections[name]["svgs"] == 0 and "No data in this range yet." in page.sections[name]["text"], name


def test_it_redraws_only_when_the_snapshot_or_the_day_changed(tmp_path: Path):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    store(wh, "mapbox", [{"id": "1", "status": "received"}])
    wh.publish_if_behind()
    out, now = tmp_path / "dashboard.html", datetime(2026, 4, 2, 8, tzinfo=UTC)
    first = build_dashboard(wh.path, out, now=now)
    assert first.written
    os.utime(out, (0, 0))
    again = build_dashboard(wh.path, out, now=now + timedelta(hours=1))
    assert not again.written and again.key == first.key and out.stat().st_mtime == 0  # nothing changed: file untouched
    assert build_dashboard(wh.path, out, now=now + timedelta(hours=1), force=True).written

    store(wh, "mapbox", [{"id": "2", "status": "fixed"}])  # a run that changed data publishes a new generation
    wh.publish_if_behind()
    changed = build_dashboard(wh.path, out, now=now + timedelta(hours=2))
    assert changed.written and changed.key != first.key
    assert build_dashboard(wh.path, out, now=now + timedelta(days=1)).written  # "last 90 days" moved on

    rebuilt = Warehouse(tmp_path / "other" / "feedback.duckdb")  # same generation count, another database
    store(rebuilt, "mapbox", [{"id": "1", "status": "received"}, {"id": "2", "status": "fixed"}])
    rebuilt.publish_if_behind()
    assert build_dashboard(rebuilt.path, out, now=now + timedelta(days=1)).written


def test_a_page_drawn_while_an_erasure_published_shows_the_erased_snapshot(tmp_path: Path, monkeypatch):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    put(wh, "feedbackkit", [
        {"feedback_id": "1", "collected_at": "2026-04-01T13:00:00Z", "body": "Ada here, diagnosed with condition X", "user_email": "ada@example.com"},
        {"feedback_id": "2", "collected_at": "2026-04-01T14:00:00Z", "body": "nice maps", "user_email": "bob@example.com"},
    ])
    out, real_render, erased = tmp_path / "dashboard.html", build_module.render_page, []

    def render_then_erase(*args, **kwargs):  # `feedback-pipeline erase` finishes while the page is drawn
        page = real_render(*args, **kwargs)
        if not erased:
            with wh.session() as session:
                session.erase("email", "ada@example.com", None)
            erased.append(True)
        return page

    monkeypatch.setattr(build_module, "render_page", render_then_erase)
    result = build_dashboard(wh.path, out, now=datetime(2026, 4, 2, 8, tzinfo=UTC))
    html = out.read_text(encoding="utf-8")
    assert "condition X" not in html and "nice maps" in html
    assert result.key == build_module.current_key(wh.path, datetime(2026, 4, 2, 8, tzinfo=UTC))


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_file(tmp_path: Path, monkeypatch):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    store(wh, "mapbox", [{"id": "1", "status": "received"}])
    wh.publish_if_behind()
    out = tmp_path / "dashboard.html"
    build_dashboard(wh.path, out)
    before = out.read_bytes()

    def interrupted(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(build_module.os, "replace", interrupted)
    with pytest.raises(OSError, match="disk full"):
        build_dashboard(wh.path, out, force=True)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_command_draws_it_from_feedback_db_and_refuses_without_a_snapshot(tmp_path: Path, monkeypatch, capsys):
    from feedback_pipeline.dashboard.__main__ import main

    out = tmp_path / "out" / "dashboard.html"
    monkeypatch.setenv("FEEDBACK_DB", str(tmp_path / "feedback.duckdb"))
    monkeypatch.setenv("FEEDBACK_DASHBOARD", str(out))
    assert main([]) == 2 and "No snapshot" in capsys.readouterr().err
    wh = Warehouse(tmp_path / "feedback.duckdb")
    store(wh, "mapbox", [{"id": "1", "status": "received"}])
    wh.publish_if_behind()
    assert main([]) == 0 and f"Wrote {out}" in capsys.readouterr().out
    assert main([]) == 0 and "Unchanged" in capsys.readouterr().out
    assert main(["--force"]) == 0 and "Wrote" in capsys.readouterr().out


def test_most_voted_requests_leave_out_merged_and_finished_ones_and_read_snake_case(tmp_path: Path):
    wh = Warehouse(tmp_path / "feedback.duckdb")
    at = "2026-04-01T10:00:00Z"
    put(wh, "feedbackkit", [
        {"feedback_id": "merged", "collected_at": at, "title": "Dup", "provider_status": "pending", "attributes": {"voteCount": 900, "mergedIntoId": "a"}},
        {"feedback_id": "done", "collected_at": at, "title": "Shipped", "provider_status": "completed", "attributes": {"voteCount": 800}},
        {"feedback_id": "a", "collected_at": at, "title": "Dark mode", "provider_status": "approved", "attributes": {"voteCount": 40}},
        {"feedback_id": "b", "collected_at": at, "title": "Offline", "provider_status": "testflight", "attributes": {"vote_count": 70}},
    ])
    out = tmp_path / "dashboard.html"
    build_dashboard(wh.path, out, now=datetime(2026, 4, 2, 8, tzinfo=UTC))
    _, *rows = Page(out.read_text(encoding="utf-8")).rows("requests")
    assert rows == [["Offline", "testflight", "70"], ["Dark mode", "approved", "40"]]
