"""The sync engine against the Formbricks Hub sandbox: incremental runs, resume, refresh."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.http import ProviderUnavailable
from feedback_pipeline.providers.base import Window
from feedback_pipeline.providers.formbricks import SPEC, FormbricksProvider
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sync import plan_queries, sync
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, make_sandbox, recent_window, run_sync, run_sync_published, work_db

UTC = timezone.utc


@pytest.fixture(scope="module")
def hub():
    server = make_sandbox(("formbricks",), per_day=100)
    yield server
    server.stop()


@pytest.fixture
def sandbox(hub):
    state = hub.sandbox.state
    state.clear_faults()
    state.clear_log()
    state.hub_supports_updated_sort = True
    hub.sandbox.generate()
    return hub


def provider_for(server) -> FormbricksProvider:
    return SPEC.provider_from_env(server.env(), policy=FAST_RETRIES)


def table(wh: Warehouse) -> list[tuple]:
    with work_db(wh) as con:
        return con.execute("SELECT * EXCLUDE (ingested_at) FROM feedback ORDER BY feedback_id").fetchall()


def sync_days(wh: Warehouse, window: Window) -> dict:
    with wh.session() as session, session.cursor() as cursor:
        return cursor.sync_days("formbricks", "tenant-sandbox", window.first_day, window.last_day)


def expected_ids(server, window: Window) -> set[str]:
    out = set()
    for r in server.sandbox.emulators["formbricks"].store.records.values():
        collected = datetime.fromisoformat(r["collected_at"].replace("Z", "+00:00"))
        if window.contains(collected) and r["tenant_id"] == "tenant-sandbox":
            out.add(r["id"])
    return out


def requests(server) -> int:
    return len(server.sandbox.state.requests_for("formbricks"))


def test_first_run_reads_the_window_and_a_rerun_with_nothing_new_costs_one_request(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(30)
    first = run_sync(provider, wh, window)
    assert {r[2] for r in table(wh)} == expected_ids(sandbox, window)
    assert first.requests == 3  # 3,000 records at 1,000 per page
    before = table(wh)
    sandbox.sandbox.state.clear_log()
    second, published = run_sync_published(provider, wh, window)
    assert requests(sandbox) == 1
    assert second.counts.changed == 0 and published is None
    assert table(wh) == before


def test_an_incremental_run_fetches_only_changes_and_updates_those_rows(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(30)
    run_sync(provider, wh, window)
    store = sandbox.sandbox.emulators["formbricks"].store
    changed_id = sorted(expected_ids(sandbox, window))[5]
    sandbox.sandbox.update("formbricks", changed_id, {"value_text": "edited later"})
    new = dict(store.get(changed_id), id="019a0000-0000-7000-8000-000000000001", value_text="brand new")
    new["collected_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    new["updated_at"] = datetime.now(UTC).isoformat()
    sandbox.sandbox.add("formbricks", new)
    report = run_sync(provider, wh, window)
    assert report.requests == 1
    assert (report.counts.inserted, report.counts.updated) == (1, 1)
    bodies = dict((r[2], r[10]) for r in table(wh))
    assert bodies[changed_id] == "edited later" and bodies[new["id"]] == "brand new"


def test_a_run_that_fails_part_way_resumes_without_refetching_committed_pages(sandbox, tmp_path: Path):
    window = recent_window(30)
    reference = Warehouse(tmp_path / "ref.duckdb")
    run_sync(provider_for(sandbox), reference, window)

    wh = Warehouse(tmp_path / "f.duckdb")
    sandbox.sandbox.state.add_fault("formbricks", Fault(kind="server_error", after=2, count=None, status=503))
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        run_sync(provider_for(sandbox), wh, window)
    with work_db(wh) as con:
        kept = con.execute("SELECT (SELECT count(*) FROM feedback) + (SELECT count(*) FROM feedback_rejects)").fetchone()[0]
    assert kept == 2000  # both fetched pages were kept (rows and rejects), with their cursor
    sandbox.sandbox.state.clear_faults()
    sandbox.sandbox.state.clear_log()
    report = run_sync(provider_for(sandbox), wh, window)
    assert report.resumed == [f"window:{window}"]
    assert requests(sandbox) == 1  # only the page after the cursor
    assert table(wh) == table(reference)


def test_full_refresh_removes_records_deleted_at_the_provider(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(30)
    run_sync(provider, wh, window)
    victim = sorted(expected_ids(sandbox, window))[0]
    sandbox.sandbox.delete("formbricks", victim)
    run_sync(provider, wh, window)
    assert victim in {r[2] for r in table(wh)}  # a plain run may keep it
    report = run_sync(provider, wh, window, full_refresh=True)
    assert report.counts.deleted == 1
    assert {r[2] for r in table(wh)} == expected_ids(sandbox, window)


def test_an_ordinary_run_leaves_an_interrupted_full_refresh_to_resume_and_sweep(sandbox, tmp_path: Path):
    wh, window = Warehouse(tmp_path / "f.duckdb"), recent_window(30)
    run_sync(provider_for(sandbox), wh, window)
    sandbox.sandbox.state.add_fault("formbricks", Fault(kind="server_error", after=2, count=None, status=503))
    with pytest.raises(ProviderUnavailable):
        run_sync(provider_for(sandbox), wh, window, full_refresh=True)  # stops after 2 of 3 pages
    sandbox.sandbox.state.clear_faults()
    with work_db(wh) as con:
        seen = {key for (key,) in con.execute("SELECT feedback_id FROM pipeline_refresh_keys").fetchall()}
    run_sync(provider_for(sandbox), wh, window)  # an hourly-like run over the same days finishes
    victim = sorted(expected_ids(sandbox, window) - seen)[0]  # on the page the refresh has not read
    sandbox.sandbox.delete("formbricks", victim)
    report = run_sync(provider_for(sandbox), wh, window, full_refresh=True)
    assert report.resumed == [f"refresh:{window}"]
    assert report.counts.deleted == 1
    assert {r[2] for r in table(wh)} == expected_ids(sandbox, window)


def test_a_full_refresh_that_starts_afresh_sweeps_past_keys_left_under_its_name(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(30)
    run_sync(provider, wh, window)
    victim = sorted(expected_ids(sandbox, window))[0]
    with work_db(wh) as con:  # what an earlier version left when it dropped a refresh's cursor
        con.execute("INSERT INTO pipeline_refresh_keys VALUES ('formbricks', 'tenant-sandbox', ?, ?)", [f"refresh:{window}", victim])
    sandbox.sandbox.delete("formbricks", victim)
    report = run_sync(provider, wh, window, full_refresh=True)
    assert report.resumed == [] and report.counts.deleted == 1
    assert victim not in {r[2] for r in table(wh)}


def test_a_backfill_of_old_days_leaves_other_days_state_alone(sandbox, tmp_path: Path):
    wh, provider = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox)
    recent = recent_window(3)
    run_sync(provider, wh, recent)
    before = sync_days(wh, recent)
    old = Window.for_days(recent.first_day - timedelta(days=20), recent.first_day - timedelta(days=10))
    run_sync(provider, wh, old)
    assert sync_days(wh, recent) == before
    dates = {r[4] for r in table(wh)}
    assert min(dates) >= old.first_day and all(d <= old.last_day or d >= recent.first_day for d in dates)


def test_a_new_day_gets_a_window_read_and_synced_days_a_change_query(sandbox, tmp_path: Path):
    wh, provider = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox)
    window = recent_window(8)
    yesterday_and_before = Window(window.start, window.end - timedelta(days=1))
    run_sync(provider, wh, yesterday_and_before)
    with wh.session() as session, session.cursor() as cursor:
        plan = plan_queries(provider, cursor, window, full_refresh=False)
    assert [(q.key.split(":")[0], q.window.first_day, q.window.last_day) for q in plan] == [
        ("changes", window.first_day, window.last_day - timedelta(days=1)),
        ("window", window.last_day, window.last_day),
    ]
    assert plan[0].changes_since is not None


def test_an_old_hub_without_the_change_feed_is_reread_and_stays_correct(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(30)
    run_sync(provider, wh, window)
    sandbox.sandbox.state.hub_supports_updated_sort = False
    changed_id = sorted(expected_ids(sandbox, window))[3]
    sandbox.sandbox.update("formbricks", changed_id, {"value_number": 42})
    report = run_sync(provider, wh, window)
    assert report.counts.updated == 1 and report.requests == 3
    assert {r[2]: r[11] for r in table(wh)}[changed_id] == 42.0


def published_table(wh: Warehouse) -> list[tuple]:
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        return con.execute("SELECT * EXCLUDE (ingested_at) FROM feedback ORDER BY feedback_id").fetchall()
    finally:
        con.close()


def snapshot_stat(wh: Warehouse) -> tuple[int, int, int]:
    stat = os.stat(wh.path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def test_a_run_publishes_when_the_snapshot_is_behind_not_only_when_it_changed_something(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(30)
    assert run_sync_published(provider, wh, window)[1] is not None
    # (a) Nothing new and a current snapshot: no file is written.
    before = snapshot_stat(wh)
    quiet, published = run_sync_published(provider, wh, window)
    assert quiet.counts.changed == 0 and published is None
    assert snapshot_stat(wh) == before
    # (b) A step commits a change and dies before publishing (its session never publishes) ...
    changed_id = sorted(expected_ids(sandbox, window))[3]
    sandbox.sandbox.update("formbricks", changed_id, {"value_text": "committed, never published"})
    with wh.session() as session, session.cursor() as cursor:
        assert sync(provider, cursor, window).counts.updated == 1
    assert published_table(wh) != table(wh)
    # ... the next run finds nothing new at the provider, and publishes anyway.
    catch_up, published = run_sync_published(provider, wh, window)
    assert catch_up.counts.changed == 0 and published is not None
    assert published_table(wh) == table(wh)
    # And then it is current again: the run after writes nothing.
    before = snapshot_stat(wh)
    assert run_sync_published(provider, wh, window)[1] is None
    assert snapshot_stat(wh) == before


def test_sync_never_publishes(sandbox, tmp_path: Path):
    wh, provider, window = Warehouse(tmp_path / "f.duckdb"), provider_for(sandbox), recent_window(3)
    with wh.session() as session:
        with session.cursor() as cursor:
            assert sync(provider, cursor, window).counts.inserted > 0
        assert not wh.path.exists() and session.behind()


# -- paced runs: the hourly schedule's runs of an API with a budget and no change query ----------

from datetime import date  # noqa: E402

from feedback_pipeline.sync import paced_days  # noqa: E402

PACE_NOW = datetime(2026, 5, 10, 14, 0, tzinfo=UTC)
PACE_DAYS = [date(2026, 5, 3) + timedelta(days=i) for i in range(8)]  # today and 7 older days


def read_at(day: date, hours_after_end: float) -> tuple[datetime, datetime]:
    """A sync-days entry: the day read whole ``hours_after_end`` hours after it ended."""
    at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, hours=hours_after_end)
    return at, at


def test_a_paced_run_reads_today_and_days_never_read_whole():
    assert paced_days(PACE_DAYS, {}, interval=timedelta(days=1), now=PACE_NOW) == PACE_DAYS
    synced = {d: read_at(d, 1) for d in PACE_DAYS[:-1]}
    synced.pop(PACE_DAYS[2])
    # Every older day was read after it ended, less than a day ago except none: today and the gap.
    fresh = {d: (PACE_NOW - timedelta(hours=2),) * 2 for d in synced}
    assert paced_days(PACE_DAYS, fresh, interval=timedelta(days=1), now=PACE_NOW) == [PACE_DAYS[2], PACE_DAYS[-1]]


def test_a_paced_run_rereads_a_day_last_read_before_it_ended_as_its_one_older_day():
    yesterday = PACE_DAYS[-2]
    synced = {d: (PACE_NOW - timedelta(hours=30),) * 2 for d in PACE_DAYS[:-2]}  # all stale too
    synced[yesterday] = read_at(yesterday, -1)  # read at 23:00, its last hour unseen
    assert paced_days(PACE_DAYS, synced, interval=timedelta(days=1), now=PACE_NOW) == [yesterday, PACE_DAYS[-1]]


def test_a_paced_run_judges_a_day_by_when_its_read_started_not_when_it_finished():
    # Yesterday's read started at 23:58 and, resumed after a budget wait, finished at 00:30: its
    # keyset chain never saw feedback created after its first page, so it is read again.
    yesterday, midnight = PACE_DAYS[-2], datetime(2026, 5, 10, tzinfo=UTC)
    synced = {d: (PACE_NOW - timedelta(hours=3),) * 2 for d in PACE_DAYS[:-2]}
    synced[yesterday] = (midnight + timedelta(minutes=30), midnight - timedelta(minutes=2))  # (synced_at, watermark)
    assert paced_days(PACE_DAYS, synced, interval=timedelta(days=1), now=PACE_NOW) == [yesterday, PACE_DAYS[-1]]
    # Staleness too: a day whose read started 30 hours ago is due, though it finished 3 hours ago.
    synced[yesterday] = read_at(yesterday, 2)
    synced[PACE_DAYS[3]] = (PACE_NOW - timedelta(hours=3), PACE_NOW - timedelta(hours=30))
    assert paced_days(PACE_DAYS, synced, interval=timedelta(days=1), now=PACE_NOW) == [PACE_DAYS[3], PACE_DAYS[-1]]


def test_a_paced_run_rereads_at_most_one_stale_older_day_the_stalest():
    # Every older day read after it ended; three of them more than a day ago.
    synced = {d: (PACE_NOW - timedelta(hours=3),) * 2 for d in PACE_DAYS[:-1]}
    synced[PACE_DAYS[1]] = (PACE_NOW - timedelta(hours=30),) * 2
    synced[PACE_DAYS[4]] = (PACE_NOW - timedelta(hours=40),) * 2
    synced[PACE_DAYS[5]] = (PACE_NOW - timedelta(hours=25),) * 2
    assert paced_days(PACE_DAYS, synced, interval=timedelta(days=1), now=PACE_NOW) == [PACE_DAYS[4], PACE_DAYS[-1]]
    synced[PACE_DAYS[4]] = (PACE_NOW,) * 2  # read by this run: the next stalest is next
    assert paced_days(PACE_DAYS, synced, interval=timedelta(days=1), now=PACE_NOW + timedelta(hours=1)) == [PACE_DAYS[1], PACE_DAYS[-1]]


def test_a_mintlify_read_resumed_after_midnight_leaves_its_day_to_the_next_paced_run(sandbox_server, sandbox, tmp_path: Path):
    from feedback_pipeline.providers import provider_from_env

    sandbox_server.reset(days=3, per_day=250)  # three pages a day; the defaults come back at the end
    try:
        mintlify = lambda: provider_from_env("mintlify", sandbox_server.env(), policy=FAST_RETRIES)  # noqa: E731
        today = datetime.now(UTC).date()
        yesterday = today - timedelta(days=1)
        wh = Warehouse(tmp_path / "f.duckdb")
        # The read of yesterday stops after its first page (an outage, a spent budget) at 23:58.
        sandbox_server.sandbox.state.add_fault("mintlify", Fault(kind="server_error", after=1, count=None, status=503))
        with pytest.raises(ProviderUnavailable):
            run_sync(mintlify(), wh, Window.for_days(yesterday, yesterday))
        sandbox_server.sandbox.state.clear_faults()
        started = datetime(yesterday.year, yesterday.month, yesterday.day, 23, 58, tzinfo=UTC)
        with work_db(wh) as con:
            con.execute("UPDATE pipeline_cursors SET started_at = ?", [started])
        # Feedback arrives at 23:59; the read resumes (feedback_resume) after midnight and finishes.
        late = {"id": "0123456789abcdef01234567", "path": "/faq", "comment": "late", "createdAt": f"{yesterday}T23:59:30.000Z", "status": "pending", "source": "agent"}
        sandbox_server.sandbox.add("mintlify", late)
        assert run_sync(mintlify(), wh, Window.for_days(yesterday, yesterday)).resumed == [f"window:{yesterday}..{yesterday}"]
        # Its chain, newest first from a stored key, never saw the late record: the next hourly run
        # reads yesterday again, and gets it.
        with wh.session() as session, session.cursor() as cursor:
            planned = plan_queries(mintlify(), cursor, Window.for_days(yesterday, today), full_refresh=False, paced=True)
        assert [q.key for q in planned] == [f"window:{yesterday}..{today}"]
        run_sync(mintlify(), wh, Window.for_days(yesterday, today), paced=True)
        with work_db(wh) as con:
            assert con.execute("SELECT count(*) FROM feedback WHERE feedback_id = ?", [late["id"]]).fetchone()[0] == 1
    finally:
        sandbox_server.reset()


def test_only_paced_runs_of_a_provider_with_a_reread_interval_are_planned_by_day(sandbox_server, sandbox, tmp_path: Path):
    from feedback_pipeline.providers import get_spec, provider_from_env

    sandbox_server.reset()
    mintlify = provider_from_env("mintlify", sandbox_server.env(), policy=FAST_RETRIES)
    assert get_spec("mintlify").reread_interval is not None and not mintlify.supports_changes
    wh = Warehouse(tmp_path / "f.duckdb")
    window = recent_window(8)
    run_sync(mintlify, wh, window)  # every day read whole just now
    with wh.session() as session, session.cursor() as cursor:
        assert [q.key for q in plan_queries(mintlify, cursor, window, full_refresh=False)] == [f"window:{window}"]
        paced = plan_queries(mintlify, cursor, window, full_refresh=False, paced=True)
        today = window.last_day
        # Every older day was read whole after it ended, moments ago: today alone.
        assert [q.key for q in paced] == [f"window:{today}..{today}"]
        refresh = plan_queries(mintlify, cursor, window, full_refresh=True, paced=True)
        assert [q.key for q in refresh] == [f"refresh:{window}"]
    # A provider without a reread interval plans as before in a paced run.
    hub = FormbricksProvider(SPEC.resource(**SPEC.values_from_env(sandbox.env())), policy=FAST_RETRIES)
    with wh.session() as session, session.cursor() as cursor:
        assert plan_queries(hub, cursor, window, full_refresh=False, paced=True) == plan_queries(hub, cursor, window, full_refresh=False)


# -- long window reads as concurrent day ranges (ProviderSpec.concurrent_windows) --------------

import dataclasses  # noqa: E402
from collections import Counter  # noqa: E402
import threading  # noqa: E402

from feedback_pipeline.sync import PlannedQuery, split_window_reads  # noqa: E402
from feedback_pipeline.warehouse import CursorRow  # noqa: E402

CHAIN_DAYS = 120


def window_read(first: str, last: str) -> PlannedQuery:
    w = Window.for_days(date.fromisoformat(first), date.fromisoformat(last))
    return PlannedQuery(f"window:{w}", w, None)


def unfinished(first: str, last: str, key: str | None = None) -> CursorRow:
    w = Window.for_days(date.fromisoformat(first), date.fromisoformat(last))
    return CursorRow(key or f"window:{w}", w.first_day, w.last_day, None, datetime(2026, 1, 1, tzinfo=UTC), {"cursor": "x"}, 3)


def test_a_long_window_read_is_cut_into_about_equal_consecutive_ranges_the_same_way_every_time():
    year = window_read("2025-01-01", "2025-12-31")
    cut = split_window_reads([year], 4)
    assert [str(q.window) for q in cut] == [
        "2025-01-01..2025-04-02", "2025-04-03..2025-07-02", "2025-07-03..2025-10-01", "2025-10-02..2025-12-31",
    ]
    assert [q.key for q in cut] == [f"window:{q.window}" for q in cut]
    assert split_window_reads([year], 4) == cut
    # Ranges of at least MIN_SUBWINDOW_DAYS (28): 60 days make two, 55 days stay one read.
    assert len(split_window_reads([window_read("2025-01-01", "2025-03-01")], 4)) == 2
    assert split_window_reads([window_read("2025-01-01", "2025-02-24")], 4) == [window_read("2025-01-01", "2025-02-24")]
    assert split_window_reads([year], 1) == [year]


def test_change_queries_sweeps_and_reads_with_a_stored_cursor_are_never_cut():
    w = Window.for_days(date(2025, 1, 1), date(2025, 12, 31))
    changes = PlannedQuery(f"changes:{w}", w, datetime(2026, 1, 1, tzinfo=UTC))
    sweep = PlannedQuery(f"refresh:{w}", w, None, sweep=True)
    assert split_window_reads([changes, sweep], 4) == [changes, sweep]
    whole = window_read("2025-01-01", "2025-12-31")
    assert split_window_reads([whole], 4, [unfinished("2025-01-01", "2025-12-31")]) == [whole]


def test_unfinished_ranges_inside_a_window_read_are_kept_and_only_the_days_between_them_are_cut_anew():
    # An earlier run's ranges 2 and 3 stopped part-way; a run over a window that starts earlier
    # resumes both as they are and cuts the rest.
    stored = [unfinished("2025-04-03", "2025-07-02"), unfinished("2025-07-03", "2025-10-01"), unfinished("2025-02-01", "2025-02-03", key="changes:x")]
    cut = split_window_reads([window_read("2024-11-01", "2025-12-31")], 4, stored)
    assert [str(q.window) for q in cut] == [
        "2024-11-01..2024-12-09", "2024-12-10..2025-01-16", "2025-01-17..2025-02-23", "2025-02-24..2025-04-02",  # 153 days
        "2025-04-03..2025-07-02", "2025-07-03..2025-10-01",  # resumed as stored
        "2025-10-02..2025-11-01", "2025-11-02..2025-12-01", "2025-12-02..2025-12-31",  # 91 days: three of 28 or more
    ]
    days = [d for q in cut for d in q.window.days()]
    assert days == Window.for_days(date(2024, 11, 1), date(2025, 12, 31)).days()  # every day once, in order
    assert {q.key for q in cut} >= {"window:2025-04-03..2025-07-02", "window:2025-07-03..2025-10-01"}


@pytest.fixture(scope="module")
def chains():
    """The sandbox, with ``window``: its data ends on the day it was made, and the tests read
    that window, so a suite that crosses midnight UTC between them does not move it."""
    window = recent_window(CHAIN_DAYS)
    server = make_sandbox(("mintlify", "usersnap"), days=CHAIN_DAYS, per_day=30, end=window.last_day)
    server.window = window  # type: ignore[attr-defined]
    yield server
    server.stop()


class ConcurrencyProbe:
    """Wraps a provider: counts how many of its queries are fetching at the same time."""

    def __init__(self, inner, concurrent_windows: int):
        self._inner = inner
        self.spec = dataclasses.replace(inner.spec, concurrent_windows=concurrent_windows)
        self.active = self.most = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def fetch(self, query, http):
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            yield from self._inner.fetch(query, http)
        finally:
            with self._lock:
                self.active -= 1


def chain_provider(server, name: str, concurrent_windows: int) -> ConcurrencyProbe:
    from feedback_pipeline.providers import provider_from_env

    return ConcurrencyProbe(provider_from_env(name, server.env(), policy=FAST_RETRIES), concurrent_windows)


def rows(wh: Warehouse) -> list[tuple]:
    with work_db(wh) as con:
        return con.execute("SELECT * EXCLUDE (ingested_at) FROM feedback ORDER BY provider, feedback_id").fetchall()


@pytest.mark.parametrize("name", ["mintlify", "usersnap"])
def test_a_long_window_is_fetched_as_four_concurrent_ranges_with_the_rows_of_one_chain(chains, tmp_path: Path, name: str):
    state = chains.sandbox.state
    state.clear_faults()
    window = chains.window
    one_chain = Warehouse(tmp_path / "one.duckdb")
    state.clear_log()
    report = run_sync(chain_provider(chains, name, 1), one_chain, window)
    single_requests = len(state.requests_for(name))
    assert report.queries == [f"window:{window}"]

    # Each response waits a little, so the four chains are seen fetching at once.
    state.add_fault(name, Fault(kind="slow", delay=0.02, count=None))
    state.clear_log()
    probe = chain_provider(chains, name, 4)
    four = Warehouse(tmp_path / "four.duckdb")
    report = run_sync(probe, four, window)
    state.clear_faults()
    assert len(report.queries) == 4 and probe.most == 4
    assert rows(four) == rows(one_chain)
    # At most one request more per range: its last, partial page.
    assert single_requests <= report.requests == len(state.requests_for(name)) <= single_requests + 3
    assert report.pages == report.requests and report.records == CHAIN_DAYS * 30
    with four.session() as session, session.cursor() as cursor:
        assert len(cursor.sync_days(name, probe.account_id, window.first_day, window.last_day)) == CHAIN_DAYS
        assert cursor.stored_cursors(name, probe.account_id) == []
        assert report.watermark is not None


def requests_by_range(state) -> Counter[str]:
    """Mintlify requests served (HTTP 200) per range, by the range's first day (``dateFrom``)."""
    return Counter(dict(e.query)["dateFrom"][:10] for e in state.requests_for("mintlify") if e.status == 200)


def test_ranges_that_fail_keep_what_they_fetched_and_the_rerun_resumes_each_after_its_last_page(chains, tmp_path: Path):
    state = chains.sandbox.state
    state.clear_faults()
    window = chains.window
    reference = Warehouse(tmp_path / "ref.duckdb")
    state.clear_log()
    run_sync(chain_provider(chains, "mintlify", 4), reference, window)
    pages = requests_by_range(state)
    assert len(pages) == 4

    wh = Warehouse(tmp_path / "f.duckdb")
    state.clear_log()
    state.add_fault("mintlify", Fault(kind="server_error", after=10, count=None, status=503))
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        run_sync(chain_provider(chains, "mintlify", 4), wh, window)
    assert sum(requests_by_range(state).values()) == 10
    with wh.session() as session, session.cursor() as cursor:
        stopped = cursor.stored_cursors("mintlify", chain_provider(chains, "mintlify", 4).account_id)
    # Ten pages over four ranges of nine: at most one range finished, and what the others
    # fetched was committed with their cursors.
    assert stopped and sum(c.pages for c in stopped) <= 10

    state.clear_faults()
    state.clear_log()
    report = run_sync(chain_provider(chains, "mintlify", 4), wh, window)
    assert sorted(report.resumed) == sorted(c.query_key for c in stopped)
    assert rows(wh) == rows(reference)
    served = requests_by_range(state)
    for c in stopped:  # each resumed range fetched only the pages after its cursor
        assert served[c.first_day.isoformat()] == pages[c.first_day.isoformat()] - c.pages
