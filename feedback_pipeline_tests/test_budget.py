"""The request ledger: a rolling-window budget counted in the working database, waits and stops."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.budget import LEDGER_DDL, PRUNE_EVERY, BudgetGate, BudgetSpent, RateBudget, RequestLedger, least_room, organization_id

UTC = timezone.utc
HOUR = RateBudget(limit=100, window=timedelta(hours=1), margin=timedelta(0))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A database with the ledger table (the warehouse migrations create it in the working one)."""
    con = duckdb.connect(str(path))
    con.execute(LEDGER_DDL)
    return con


def ledger(path: Path, clock: Clock, budget: RateBudget = HOUR, org: str = "mintlify:abc") -> RequestLedger:
    return RequestLedger(connect(path), org, budget, clock=clock)


def test_requests_are_reserved_until_the_limit_then_the_wait_is_until_the_oldest_leaves(tmp_path: Path):
    clock = Clock()
    book = ledger(tmp_path / "w.duckdb", clock)
    for i in range(100):
        assert book.reserve() == 0.0
        clock.sleep(10)  # one request every 10 s: the first is 1000 s old when the window is full
    assert book.used() == 100
    assert book.reserve() == pytest.approx(3600 - 1000)
    assert book.used() == 100  # a refused reservation records nothing
    clock.sleep(3600 - 1000 + 0.001)
    assert book.reserve() == 0.0


def test_expired_rows_are_deleted_on_the_first_reservation_and_every_prune_every_th(tmp_path: Path):
    clock = Clock()
    book = ledger(tmp_path / "w.duckdb", clock, RateBudget(limit=10 * PRUNE_EVERY, window=timedelta(hours=1), margin=timedelta(0)))
    expired = clock.now - timedelta(hours=2)

    def expire(count: int) -> None:
        book._con.executemany("INSERT INTO pipeline_request_ledger VALUES (?, ?)", [[book.organization, expired]] * count)

    def stored() -> int:
        return book._con.execute("SELECT count(*) FROM pipeline_request_ledger WHERE organization = ?", [book.organization]).fetchone()[0]

    expire(5)
    assert book.reserve() == 0.0 and stored() == 1  # the first reservation pruned the 5
    expire(5)
    for _ in range(PRUNE_EVERY - 1):
        clock.sleep(1)
        assert book.reserve() == 0.0
    assert stored() == 5 + PRUNE_EVERY and book.used() == PRUNE_EVERY  # kept, never counted
    clock.sleep(1)
    assert book.reserve() == 0.0 and stored() == PRUNE_EVERY + 1


def test_the_ledger_counts_across_connections_to_the_same_file(tmp_path: Path):
    clock = Clock()
    path = tmp_path / "w.duckdb"
    first = ledger(path, clock, RateBudget(5, timedelta(hours=1), timedelta(0)))
    for _ in range(3):
        assert first.reserve() == 0.0
    first._con.close()
    second = ledger(path, clock, RateBudget(5, timedelta(hours=1), timedelta(0)))
    assert [second.reserve() == 0.0 for _ in range(3)] == [True, True, False]


def test_organizations_have_separate_budgets(tmp_path: Path):
    clock = Clock()
    con = connect(tmp_path / "w.duckdb")
    small = RateBudget(1, timedelta(hours=1))
    a, b = RequestLedger(con, "org-a", small, clock=clock), RequestLedger(con, "org-b", small, clock=clock)
    assert a.reserve() == 0.0 and b.reserve() == 0.0
    assert a.reserve() > 0 and b.reserve() > 0


def test_threads_sharing_a_ledger_never_exceed_the_budget(tmp_path: Path):
    con = connect(tmp_path / "w.duckdb")
    budget = RateBudget(50, timedelta(hours=1))
    lock = threading.Lock()
    granted: list[int] = []

    def worker() -> None:
        book = RequestLedger(con.cursor(), "org", budget, lock=lock)
        granted.append(sum(1 for _ in range(40) if book.reserve() == 0.0))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50


def test_the_gate_waits_for_a_short_wait_and_stops_on_a_long_one(tmp_path: Path):
    clock = Clock()
    book = ledger(tmp_path / "w.duckdb", clock, RateBudget(2, timedelta(seconds=60), timedelta(0)))
    gate = BudgetGate(book, max_wait_seconds=90, sleep=clock.sleep, clock=lambda: clock.now.timestamp(), describe="mintlify's hourly budget")
    gate()
    gate()
    gate()  # waits the 60 s window out
    assert gate.waited == pytest.approx(60)
    gate()
    with pytest.raises(BudgetSpent) as spent:
        gate()  # another 60 s would make 120 s of waiting in this run
    assert "mintlify's hourly budget is spent (2 requests per 60 s)" in str(spent.value)
    assert spent.value.resume_at > datetime.now(UTC)


def test_the_organization_id_is_a_digest_never_the_key():
    key = "mint_supersecretkey"
    org = organization_id("mintlify", key)
    assert key not in org and "supersecret" not in org
    assert org == organization_id("mintlify", key) != organization_id("mintlify", key + "x")


def test_a_request_stays_counted_for_the_margin_after_the_apis_window(tmp_path: Path):
    # The API counts a request when it arrives, after the ledger recorded it: the ledger keeps
    # it a margin longer, so it never lets a request go that the API would still refuse.
    clock = Clock()
    book = ledger(tmp_path / "w.duckdb", clock, RateBudget(1, timedelta(seconds=60), timedelta(seconds=1)))
    assert book.reserve() == 0.0
    clock.sleep(60)
    assert book.reserve() == pytest.approx(1.0)
    clock.sleep(1.001)
    assert book.reserve() == 0.0


def test_least_room_is_the_busiest_organizations_of_the_provider(tmp_path: Path):
    clock = Clock()
    con = connect(tmp_path / "w.duckdb")
    budget = RateBudget(10, timedelta(hours=1))
    busy, quiet = RequestLedger(con, "mintlify:aaa", budget, clock=clock), RequestLedger(con, "mintlify:bbb", budget, clock=clock)
    other = RequestLedger(con, "other:ccc", budget, clock=clock)
    for _ in range(7):
        busy.reserve()
        other.reserve()
    quiet.reserve()
    assert least_room(con, "mintlify", budget, clock()) == 3
    assert least_room(con, "mintlify", budget, clock() + timedelta(hours=2)) == 10
    assert least_room(con, "unknown", budget, clock()) == 10


# -- the budget in real runs: the job against the Mintlify emulator counting requests -----------

from collections.abc import Iterator  # noqa: E402

import dagster as dg  # noqa: E402

from feedback_pipeline.budget import STOPPED_BY_BUDGET, STOPPED_TAG  # noqa: E402
from feedback_pipeline.definitions import build_definitions  # noqa: E402
from feedback_pipeline.sandbox.server import SandboxServer  # noqa: E402
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG  # noqa: E402

from .conftest import make_sandbox  # noqa: E402

LIMIT, WINDOW = 3, 2.0  # the budget under test: 3 requests per 2 s, at the emulator and in the ledger
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
MINTLIFY = dg.AssetKey("mintlify_feedback")


@pytest.fixture(scope="module")
def mintlify_server() -> Iterator[SandboxServer]:
    server = make_sandbox(("mintlify",), per_day=40)
    yield server
    server.stop()


@pytest.fixture
def limited(mintlify_server: SandboxServer) -> SandboxServer:
    """The emulator enforcing LIMIT per WINDOW (429 beyond it), with an empty request log."""
    server = mintlify_server.reset(mintlify_rate_limit=LIMIT)
    server.sandbox.emulators["mintlify"].rate_window = WINDOW
    return server


def budget_env(server: SandboxServer, tmp_path: Path, monkeypatch, *, max_wait: int, short_budget: bool = True) -> dict[str, str]:
    """The pipeline's variables for ``server``; ``short_budget``: LIMIT requests per WINDOW."""
    today = datetime.now(UTC).date()
    env = {
        **server.env(),
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_DASHBOARD": str(tmp_path / "dashboard.html"),
        "FEEDBACK_START_DATE": (today - timedelta(days=40)).isoformat(),
        "FEEDBACK_HTTP_MAX_WAIT_SECONDS": str(max_wait),
    }
    if short_budget:
        env["FEEDBACK_MINTLIFY_BUDGET_LIMIT"] = str(LIMIT)
        env["FEEDBACK_MINTLIFY_BUDGET_WINDOW_SECONDS"] = str(WINDOW)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def assert_within_budget(server: SandboxServer) -> int:
    """No request of the log was refused with 429, and no LIMIT + 1 of them fell within WINDOW
    seconds; returns how many requests were sent."""
    log = server.sandbox.state.requests_for("mintlify")
    assert [e.status for e in log if e.status == 429] == []
    times = sorted(datetime.fromisoformat(e.at) for e in log)
    for first, last in zip(times, times[LIMIT:]):
        assert (last - first).total_seconds() > WINDOW, (first, last)
    return len(times)


def ranges(days: int) -> tuple[tuple[str, str], tuple[str, str]]:
    today = datetime.now(UTC).date()
    half = days // 2
    older = (today - timedelta(days=days - 1), today - timedelta(days=half))
    newer = (today - timedelta(days=half - 1), today)
    return tuple((a.isoformat(), b.isoformat()) for a, b in (older, newer))  # type: ignore[return-value]


def test_two_concurrent_runs_share_the_ledger_and_never_exceed_the_budget(limited: SandboxServer, tmp_path: Path, monkeypatch):
    env = budget_env(limited, tmp_path, monkeypatch, max_wait=120)
    job = build_definitions(env).resolve_job_def("feedback_ingest")
    results: dict[int, dg.ExecuteInProcessResult] = {}

    def run(index: int, first: str, last: str) -> None:
        results[index] = job.execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), asset_selection=[MINTLIFY], tags={RANGE_START_TAG: first, RANGE_END_TAG: last}, run_config=QUIET, raise_on_error=False
        )

    threads = [threading.Thread(target=run, args=(i, *r)) for i, r in enumerate(ranges(20))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.success for r in results.values())
    sent = assert_within_budget(limited)
    assert sent > 2 * LIMIT  # the two runs needed more than one window between them
    con = duckdb.connect(str(tmp_path / "feedback.duckdb.work"), read_only=True)
    try:
        # The ledger keeps only the last window's requests, of one organization (the key's digest).
        (organization,) = {r[0] for r in con.execute("SELECT organization FROM pipeline_request_ledger").fetchall()}
    finally:
        con.close()
    assert organization.startswith("mintlify:") and limited.env()["MINTLIFY_API_KEY"] not in organization


def test_a_run_out_of_budget_commits_what_it_fetched_and_stops_cleanly_saying_when_it_resumes(limited: SandboxServer, tmp_path: Path, monkeypatch):
    env = budget_env(limited, tmp_path, monkeypatch, max_wait=0)
    job = build_definitions(env).resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()
    first, last = ranges(30)[0][0], ranges(30)[1][1]
    result = job.execute_in_process(instance=instance, asset_selection=[MINTLIFY], tags={RANGE_START_TAG: first, RANGE_END_TAG: last}, run_config=QUIET, raise_on_error=False)
    assert not result.success
    assert instance.get_run_by_id(result.run_id).tags[STOPPED_TAG] == STOPPED_BY_BUDGET
    failure = result.get_step_failure_events()[0].event_specific_data.user_failure_data
    assert "request budget" in failure.description and "feedback_resume continues" in failure.description
    assert "resumes_at" in failure.metadata
    assert assert_within_budget(limited) == LIMIT
    con = duckdb.connect(str(tmp_path / "feedback.duckdb.work"), read_only=True)
    try:
        assert con.execute("SELECT pages FROM pipeline_cursors").fetchall() == [(LIMIT,)]
        assert con.execute("SELECT count(*) > 0 FROM feedback").fetchone() == (True,)
    finally:
        con.close()


def test_the_hourly_schedules_runs_reread_today_not_the_whole_lookback(mintlify_server: SandboxServer, tmp_path: Path, monkeypatch):
    server = mintlify_server.reset()
    env = budget_env(server, tmp_path, monkeypatch, max_wait=600, short_budget=False)
    job = build_definitions(env).resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()
    today = datetime.now(UTC).date()
    lookback = {RANGE_START_TAG: (today - timedelta(days=7)).isoformat(), RANGE_END_TAG: today.isoformat()}

    def requests(**tags: str) -> int:
        server.sandbox.state.clear_log()
        result = job.execute_in_process(instance=instance, asset_selection=[MINTLIFY], tags={**lookback, **tags}, run_config=QUIET, raise_on_error=False)
        assert result.success
        return len(server.sandbox.state.requests_for("mintlify"))

    full = requests()  # the backfill of the 8 days: 320 records, every page
    assert full >= 4
    assert requests() == full  # any other run re-reads its whole range
    # The schedule's run: today only (its records fit one page); every older day was read after it ended.
    assert requests(**{"dagster/schedule_name": "feedback_ingest_hourly"}) == 1


class ScriptedLedger:
    """A ledger whose reservations answer the waits given, in order (0: a slot now)."""

    budget = HOUR

    def __init__(self, *waits: float):
        self.waits = list(waits)

    def reserve(self) -> float:
        return self.waits.pop(0)


def test_waits_of_several_threads_at_the_same_time_count_once_toward_the_runs_limit():
    # An account's day ranges share one gate: two of them waiting 60 s from the same moment wait
    # 60 s of the run's 90, not 120.
    now, slept = [1000.0], []
    gate = BudgetGate(ScriptedLedger(60, 0, 60, 0, 40, 0), max_wait_seconds=90, sleep=slept.append, clock=lambda: now[0])
    gate()
    gate()  # the second range, at the same moment
    assert gate.waited == pytest.approx(60) and slept == [60, 60]
    now[0] += 60
    with pytest.raises(BudgetSpent):
        gate()  # 40 s more would make 100 s of waiting
