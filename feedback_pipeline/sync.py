"""The sync engine: what materializing a partition range of one provider means.

For a window ``[first day, last day]`` it

1. plans queries from the stored state: days never read whole get a window read; days read
   before get a *change query* since their watermark (where the API can filter on update time);
   a full refresh re-reads everything and deletes what the provider no longer has; a *paced* run
   (the hourly schedule's) of an API with a request budget and no change query reads only the
   days its spec's ``reread_interval`` says are due (:func:`paced_days`);
2. resumes any query an earlier run left unfinished from its committed cursor;
3. streams pages (fetched in a background thread, so the network overlaps normalization and
   writing), normalizes them column-wise and commits bounded batches together with the cursor
   that covers them, in one transaction each.

It works on one cursor of the step's warehouse session and never publishes: the step publishes
once, after all of its syncs (``Session.publish_if_behind``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from .budget import BudgetSpent
from .jsonio import gc_paused
from .memory import release
from .normalize import FeedbackBatch
from .providers.base import Page, Provider, Query, StaleCursor, Window
from .warehouse import CursorRow, Progress, Scope, WarehouseCursor, WriteCounts

UTC = timezone.utc
log = logging.getLogger(__name__)

# Change queries look back this far before the stored watermark: provider clocks drift and
# listings lag writes. Overlap is harmless: unchanged rows are recognised and not rewritten.
CHANGE_OVERLAP = timedelta(minutes=10)
# A window read is cut into concurrent day ranges (ProviderSpec.concurrent_windows) of at least
# this many days: each range costs up to one extra request (its last, partial page), which a
# short window, e.g. an hourly run's, would pay for no gain.
MIN_SUBWINDOW_DAYS = 28
# A batch is committed when it reaches this many rows or this age, whichever comes first, so
# memory stays flat and a slow, rate-limited API still checkpoints its progress.
COMMIT_ROWS = 10_000
COMMIT_SECONDS = 5.0
PREFETCH_PAGES = 2
# Between commits, a batch's rows are turned into Arrow each time this many are held in Python.
BUILD_ROWS = 2_500


@dataclass(frozen=True)
class PlannedQuery:
    """One query of a run. ``key`` names it in ``pipeline_cursors`` (same query, same key)."""

    key: str
    window: Window
    changes_since: datetime | None
    sweep: bool = False


@dataclass
class SyncReport:
    """What a sync did; becomes the materialization's metadata."""

    provider: str
    account_id: str
    window: Window
    full_refresh: bool
    counts: WriteCounts = field(default_factory=WriteCounts)
    requests: int = 0
    retries: int = 0
    pages: int = 0
    records: int = 0
    queries: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    watermark: datetime | None = None
    seconds: dict[str, float] = field(default_factory=lambda: {"fetch_wait": 0.0, "normalize": 0.0, "commit": 0.0})
    duration: float = 0.0

    def merge(self, other: "SyncReport") -> None:
        """Add what ``other`` (another thread's share of the same sync) did."""
        self.counts.add(other.counts)
        self.requests += other.requests
        self.retries += other.retries
        self.pages += other.pages
        self.records += other.records
        self.resumed += other.resumed
        for stage, seconds in other.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def paced_days(days: list[date], synced: dict[date, tuple[datetime, datetime]], *, interval: timedelta, now: datetime) -> list[date]:
    """The days of a paced run's window to read (the hourly schedule's runs of an API that has a
    request budget and no change query, so each read costs every page of the day again):

    * today (and later), every run: that is where new feedback arrives;
    * a day never read whole (a gap: read like any backfill);
    * else one older day: a day last read before it ended (yesterday's last hour, right after
      midnight), or else the day read longest ago if that was more than ``interval`` ago. So each
      older day is re-read about once per ``interval`` (status changes of older feedback show up
      within it), and once the window was read whole a run costs at most today's pages plus one
      day's, whatever the volume.

    When a day was read is when its last whole read *started* (the watermark, ``synced[day][1]``),
    not when it finished: a read resumed after midnight (a budget wait, ``feedback_resume``)
    continues a keyset chain that never sees feedback created after its first page.
    """
    today = now.astimezone(UTC).date()
    due: list[date] = []
    unfinished: list[date] = []
    stale: tuple[datetime, date] | None = None
    for day in days:
        read = synced.get(day)
        ended = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        if day >= today or read is None:
            due.append(day)
            continue
        started = read[1]
        if started < ended:
            unfinished.append(day)
        elif started <= now - interval and (stale is None or started < stale[0]):
            stale = (started, day)
    if unfinished:
        due.append(unfinished[-1])
    elif stale is not None:
        due.append(stale[1])
    return sorted(due)


def _runs(days: list[date]) -> list[list[date]]:
    """Consecutive days grouped: [1, 2, 4] -> [[1, 2], [4]]."""
    groups: list[list[date]] = []
    for day in days:
        if groups and day - groups[-1][-1] == timedelta(days=1):
            groups[-1].append(day)
        else:
            groups.append([day])
    return groups


def plan_queries(
    provider: Provider, warehouse: WarehouseCursor, window: Window, *, full_refresh: bool, paced: bool = False, now: datetime | None = None
) -> list[PlannedQuery]:
    """Decide the queries for ``window`` from what is stored (see the module docstring).
    ``paced``: the run is one of the hourly schedule's (only the spec's ``reread_interval``
    makes that matter)."""
    if full_refresh:
        return [PlannedQuery(f"refresh:{window}", window, None, sweep=True)]
    interval = provider.spec.reread_interval
    if paced and interval is not None and not provider.supports_changes:
        synced = warehouse.sync_days(provider.name, provider.account_id, window.first_day, window.last_day)
        due = paced_days(window.days(), synced, interval=interval, now=now or datetime.now(UTC))
        return [PlannedQuery(f"window:{sub}", sub, None) for sub in (Window.for_days(g[0], g[-1]) for g in _runs(due))]
    if not provider.supports_changes:
        return [PlannedQuery(f"window:{window}", window, None)]
    synced = warehouse.sync_days(provider.name, provider.account_id, window.first_day, window.last_day)
    groups: list[tuple[bool, list[date]]] = []
    for day in window.days():
        known = day in synced
        if groups and groups[-1][0] == known:
            groups[-1][1].append(day)
        else:
            groups.append((known, [day]))
    if len(groups) > 2:
        # A patchwork of synced and unsynced days: one window read costs fewer requests.
        return [PlannedQuery(f"window:{window}", window, None)]
    planned = []
    for known, days in groups:
        sub = Window.for_days(days[0], days[-1])
        if known:
            since = min(synced[d][1] for d in days) - CHANGE_OVERLAP
            planned.append(PlannedQuery(f"changes:{sub}", sub, since))
        else:
            planned.append(PlannedQuery(f"window:{sub}", sub, None))
    return planned


def split_window_reads(plan: list[PlannedQuery], parts: int, unfinished: Sequence[CursorRow] = ()) -> list[PlannedQuery]:
    """``plan`` with each long window read (not a change query, not a sweep) cut into at most
    ``parts`` consecutive day ranges of at least :data:`MIN_SUBWINDOW_DAYS` days, each its own
    query (its own key and cursor), so they can be fetched at the same time.

    ``unfinished`` are the account's stored cursors: a window read that has one is kept whole,
    and the unfinished window reads inside a longer one (the ranges an earlier run was cut into
    and did not finish) are kept as they are, with only the days between them cut anew, so every
    stored cursor is resumed. A sweep is never cut: it deletes the rows of its days it did not
    see, and a record one range returns may fall on another range's day (the API filters on its
    own field)."""
    stored = {c.query_key for c in unfinished}
    out: list[PlannedQuery] = []
    for planned in plan:
        if planned.changes_since is not None or planned.sweep or planned.key in stored:
            out.append(planned)
            continue
        window = planned.window
        kept: list[PlannedQuery] = []
        for c in unfinished:
            inside = window.first_day <= c.first_day and c.last_day <= window.last_day
            if inside and c.query_key.startswith("window:") and c.changes_since is None and (not kept or c.first_day > kept[-1].window.last_day):
                kept.append(PlannedQuery(c.query_key, Window.for_days(c.first_day, c.last_day), None))
        covered = {day for q in kept for day in q.window.days()}
        gaps = [Window.for_days(g[0], g[-1]) for g in _runs([d for d in window.days() if d not in covered])]
        cut = [q for gap in gaps for q in _cut(PlannedQuery(f"window:{gap}", gap, None), parts)]
        out += sorted(kept + cut, key=lambda q: q.window.start)
    return out


def _cut(planned: PlannedQuery, parts: int) -> list[PlannedQuery]:
    """A window read as ``parts`` consecutive ranges of about equal days (itself when it is too
    short for two ranges of ``MIN_SUBWINDOW_DAYS``)."""
    days = planned.window.days()
    n = min(parts, len(days) // MIN_SUBWINDOW_DAYS)
    if n < 2:
        return [planned]
    size, longer = divmod(len(days), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < longer else 0)
        sub = Window.for_days(days[start], days[end - 1])
        out.append(PlannedQuery(f"window:{sub}", sub, None))
        start = end
    return out


def sync(provider: Provider, warehouse: WarehouseCursor, window: Window, *, full_refresh: bool = False, paced: bool = False, logger: Any = None) -> SyncReport:
    """Bring ``provider``'s rows of ``window`` up to date on ``warehouse`` (a cursor of the step's
    session); see the module docstring (``paced``: the run is one of the hourly schedule's).

    A provider whose spec allows ``concurrent_windows`` runs that many of its queries at once,
    each thread on its own HTTP client and warehouse cursor, committing every
    ``COMMIT_ROWS / threads`` rows so the account holds no more rows in memory than one query."""
    logger = logger or log
    started = time.monotonic()
    report = SyncReport(provider.name, provider.account_id, window, full_refresh)
    scope = Scope(provider.name, provider.account_id, window.first_day, window.last_day)
    plan = plan_queries(provider, warehouse, window, full_refresh=full_refresh, paced=paced)
    unfinished = warehouse.stored_cursors(provider.name, provider.account_id)
    parts = provider.spec.concurrent_windows
    if parts > 1:
        plan = split_window_reads(plan, parts, unfinished)
    stored: dict[str, CursorRow | None] = {c.query_key: c for c in unfinished}
    report.queries = [q.key for q in plan]
    threads = min(parts, len(plan))
    if threads <= 1:
        _run_queries(provider, warehouse, scope, plan, stored, report, logger, COMMIT_ROWS)
    else:
        _run_concurrently(provider, warehouse, scope, plan, stored, report, logger, threads)
    synced = warehouse.sync_days(provider.name, provider.account_id, window.first_day, window.last_day)
    report.watermark = min((w for _, w in synced.values()), default=None) if len(synced) == len(window.days()) else None
    report.duration = time.monotonic() - started
    return report


def _run_queries(
    provider: Provider,
    warehouse: WarehouseCursor,
    scope: Scope,
    plan: Iterable[PlannedQuery],
    stored: dict[str, CursorRow | None],
    report: SyncReport,
    logger: Any,
    commit_rows: int,
) -> None:
    """Run ``plan``'s queries in turn on one HTTP client; a query whose stored cursor the API no
    longer accepts starts over."""
    with provider.open() as http:
        try:
            for planned in plan:
                try:
                    _run_query(provider, http, warehouse, scope, planned, stored.get(planned.key), report, logger, commit_rows)
                except StaleCursor:
                    logger.warning(f"{provider.name}: stored cursor of {planned.key} is no longer accepted; restarting that query")
                    warehouse.drop_cursor(provider.name, provider.account_id, planned.key)
                    _run_query(provider, http, warehouse, scope, planned, None, report, logger, commit_rows)
        finally:
            report.requests += http.stats.requests
            report.retries += http.stats.retries


def _run_concurrently(
    provider: Provider,
    warehouse: WarehouseCursor,
    scope: Scope,
    plan: list[PlannedQuery],
    stored: dict[str, CursorRow | None],
    report: SyncReport,
    logger: Any,
    threads: int,
) -> None:
    """Run ``plan`` on ``threads`` threads taking queries in turn. A failed query does not stop
    the others (what they fetch is committed with their cursors); the first failure is raised
    once all have ended, a spent request budget only when nothing worse happened."""
    pending: queue.SimpleQueue[PlannedQuery] = queue.SimpleQueue()
    for planned in plan:
        pending.put(planned)
    parts = [SyncReport(report.provider, report.account_id, report.window, report.full_refresh) for _ in range(threads)]

    def worker(part: SyncReport) -> BaseException | None:
        def queries() -> Iterator[PlannedQuery]:
            while True:
                try:
                    yield pending.get_nowait()
                except queue.Empty:
                    return

        try:
            with warehouse.sibling() as cursor:
                _run_queries(provider, cursor, scope, queries(), stored, part, logger, max(1, COMMIT_ROWS // threads))
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            return exc
        return None

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"{provider.name}-window") as pool:
        errors = [e for e in pool.map(worker, parts) if e is not None]
    for part in parts:
        report.merge(part)
    if errors:
        for extra in errors[1:]:
            logger.warning(f"{provider.name}: another query of this account also failed: {type(extra).__name__}: {extra}")
        raise min(errors, key=lambda e: isinstance(e, BudgetSpent))


def _progress(logger: Any, message: str) -> None:
    """Progress goes to the run's log and to the ``feedback_pipeline.sync`` Python logger (which
    ``feedback-pipeline demo`` prints)."""
    logger.info(message)
    if logger is not log:
        log.info(message)


def _run_query(
    provider: Provider,
    http: Any,
    warehouse: WarehouseCursor,
    scope: Scope,
    planned: PlannedQuery,
    stored: CursorRow | None,
    report: SyncReport,
    logger: Any,
    commit_rows: int,
) -> None:
    """Run one planned query to its end, committing a batch every ``commit_rows`` rows (or
    ``COMMIT_SECONDS``) with the cursor after it."""
    if stored is not None:
        # Same query as the unfinished one: keep its lower bound and start time, continue after
        # its last committed page.
        query = Query(planned.window, stored.changes_since, stored.resume)
        started_at, pages = stored.started_at, stored.pages
        report.resumed.append(planned.key)
        logger.info(f"{provider.name}: resuming {planned.key} after {pages} committed page(s)")
    else:
        query = Query(planned.window, planned.changes_since, None)
        started_at, pages = datetime.now(UTC), 0

    batch = FeedbackBatch(provider.name, provider.account_id)
    # Pages normalized since the last commit, already turned into Arrow (see build).
    built: list[tuple[pa.Table, pa.Table]] = []
    snapshot = False
    fresh = stored is None  # until the first commit: keys an earlier query under this key saw are not ours
    last_commit = time.monotonic()
    last_resume: Any = None

    def build() -> None:
        # A row held as Arrow costs less than half what its Python columns do (Usersnap: ~1.7 KB
        # against ~4 KB), so the batch is turned into Arrow every BUILD_ROWS rows, not only at
        # the commit: between commits an account holds at most BUILD_ROWS rows in Python.
        nonlocal batch
        if len(batch) or batch.reject_count:
            built.append((batch.rows(), batch.rejects()))
            batch = FeedbackBatch(provider.name, provider.account_id)

    def held() -> int:
        # Rows and rejects since the last commit, built into Arrow or not.
        return sum(rows.num_rows + rejects.num_rows for rows, rejects in built) + len(batch) + batch.reject_count

    def commit(resume: Any) -> None:
        nonlocal batch, last_commit, fresh
        t0 = time.monotonic()
        progress = Progress(
            planned.key, planned.window.first_day, planned.window.last_day, query.changes_since,
            started_at, pages, resume, sweep=planned.sweep or snapshot, first=fresh,
        )
        build()
        if built:  # zero-copy: the tables' columns become chunked
            rows, rejects = pa.concat_tables([r for r, _ in built]), pa.concat_tables([j for _, j in built])
        else:  # nothing since the last commit: the cursor still moves (or the query ends)
            rows, rejects = batch.rows(), batch.rejects()
        # The Python columns are dropped before the commit, which may wait for another
        # account's: only the Arrow tables are held meanwhile.
        built.clear()
        counts = warehouse.commit(scope, rows, rejects, progress)
        fresh = False
        del rows, rejects
        report.counts.add(counts)
        release()  # the committed batch's memory goes back to the OS, not to this thread's arena
        report.seconds["commit"] += time.monotonic() - t0
        last_commit = time.monotonic()
        _progress(
            logger,
            f"{provider.name}: {planned.key}: {report.pages} page(s), {report.records} record(s) so far; "
            f"+{counts.inserted} new, {counts.updated} updated, {counts.rejected} rejected, "
            f"{http.stats.retries} retries",
        )

    stream = _prefetch(provider.fetch(query, http))
    while True:
        try:
            page, waited = next(stream)
        except StopIteration:
            break
        except Exception:
            # The provider failed (outage, rate limit, bad pages): keep what was fetched, with
            # the cursor after it, so the next run starts exactly there.
            if last_resume is not None and held():
                commit(last_resume)
            raise
        report.seconds["fetch_wait"] += waited
        pages += 1
        report.pages += 1
        report.records += len(page.records)
        snapshot = snapshot or page.complete_snapshot
        t0 = time.monotonic()
        with gc_paused():
            provider.normalize(page.records, batch)
        if len(batch) + batch.reject_count >= BUILD_ROWS:
            build()
        report.seconds["normalize"] += time.monotonic() - t0
        last_resume = page.resume
        due = held() >= commit_rows or time.monotonic() - last_commit >= COMMIT_SECONDS
        if page.resume is not None and due:
            commit(page.resume)
    # The generator ended: the query is complete. The final commit marks its days synced.
    if last_resume is not None:
        logger.warning(f"{provider.name}: {planned.key} ended with a resume value; treating it as complete")
    commit(None)


def _prefetch(pages: Iterator[Page], depth: int = PREFETCH_PAGES) -> Iterator[tuple[Page, float]]:
    """Iterate ``pages`` in a background thread, ``depth`` pages ahead; yields (page, seconds
    the consumer waited). Exceptions of the producer are re-raised in the consumer."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        slots.put(("page", page), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put(("error", exc))
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass

    thread = threading.Thread(target=produce, name="fetch", daemon=True)
    thread.start()
    try:
        while True:
            t0 = time.monotonic()
            kind, value = slots.get()
            waited = time.monotonic() - t0
            if kind == "page":
                yield value, waited
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join(timeout=30)
