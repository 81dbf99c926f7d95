"""The request ledger: a rolling-window budget counted in the working database, waits and stops."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.budget import LEDGER_DDL, BudgetGate, BudgetSpent, RateBudget, RequestLedger, least_room, organization_id

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
    gate = BudgetGate(book, max_wait_seconds=90, sleep=clock.sleep, describe="mintlify's hourly budget")
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
