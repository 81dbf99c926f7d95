"""Request budgets: an API's request limit per rolling window, counted across every run and process.

Why: Mintlify allows 100 requests per hour per organization, shared by every analytics call of
every project of that organization, and gives no ``Retry-After``. A run that discovers the limit
through a 429 has already wasted requests and must fail; counting our own requests in the working
database (which every pipeline process writes, one at a time) lets a run know before it asks. So
no run sends a request that would make more than ``limit`` in any rolling window: it waits when
the wait is short, and otherwise stops with :class:`BudgetSpent`, which the engine handles like an
outage (it commits what it fetched, with the cursor) and ``feedback_resume`` picks up later.

An *organization* is identified by a digest of its API key (all accounts sharing one key count
together); the key itself never reaches the database. Two different keys of one organization
count apart here while the API counts them together: give the accounts of one organization the
same key.

The ledger counts a request from the moment it is reserved, just before it is sent; the API counts
it when it arrives, a little later. So a request stays in the ledger's window for a short
``margin`` longer than in the API's (``RateBudget.margin``): when the ledger lets a request go,
the request it waited for has surely left the API's window too.

The table is created by the warehouse migrations (``pipeline_request_ledger``); the working
database is open in one process at a time (the writer lock), so the ledger is shared by every run
and process in turn.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb

UTC = timezone.utc
# The run tag a step sets when it stopped only because a request budget was spent: a clean stop,
# which the failure alerts skip (feedback_resume continues it).
STOPPED_TAG = "feedback/stopped"
STOPPED_BY_BUDGET = "budget"

LEDGER_TABLE = "pipeline_request_ledger"
# Expired rows are deleted on a ledger's first reservation and on every PRUNE_EVERY-th after it.
PRUNE_EVERY = 100
LEDGER_DDL = f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    organization VARCHAR NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL
)"""


@dataclass(frozen=True)
class RateBudget:
    """At most ``limit`` requests in any rolling ``window`` (see the module docstring for
    ``margin``: the extra time the ledger keeps a request counted)."""

    limit: int
    window: timedelta
    margin: timedelta = timedelta(seconds=1)

    @property
    def span(self) -> timedelta:
        """How long the ledger counts a request: the API's window plus the margin."""
        return self.window + self.margin


class BudgetSpent(RuntimeError):
    """The budget allows no request before ``resume_at``, and that is longer than the run may wait."""

    def __init__(self, message: str, *, resume_at: datetime):
        super().__init__(message)
        self.resume_at = resume_at


def organization_id(provider: str, api_key: str) -> str:
    """A stable name for the organization behind ``api_key``: a digest, never the key."""
    digest = hashlib.sha256(f"feedback-pipeline/{provider}/organization\x00{api_key}".encode()).hexdigest()
    return f"{provider}:{digest[:16]}"


class RequestLedger:
    """The requests sent for one organization, in the working database.

    ``con`` is a connection (or a session cursor) to the working database; ``lock`` serializes this
    process's threads around the tiny reserve transaction. Other processes cannot interleave: the
    working database is open in one process at a time (the writer lock).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, organization: str, budget: RateBudget, *, lock: threading.Lock | None = None, clock: Callable[[], datetime] | None = None):
        self._con = con
        self.organization = organization
        self.budget = budget
        self._lock = lock or threading.Lock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._reserved = 0  # reservations made through this object (pruning runs every PRUNE_EVERY)

    def used(self, now: datetime | None = None) -> int:
        """Requests sent in the rolling window that ends ``now``."""
        now = now or self._clock()
        return self._con.execute(
            f"SELECT count(*) FROM {LEDGER_TABLE} WHERE organization = ? AND sent_at > ?",
            [self.organization, now - self.budget.span],
        ).fetchone()[0]

    def reserve(self) -> float:
        """Record one request now if the budget allows it and return 0.0; otherwise record nothing
        and return the seconds until the oldest request of the window leaves it."""
        from .warehouse.transaction import transaction  # here: the warehouse imports the providers, which import this module

        with self._lock:
            now = self._clock()
            since = now - self.budget.span
            con = self._con
            with transaction(con):
                # The usual case in one statement: the request is recorded when the window has
                # room (each statement costs ~0.5 ms, and a backfill reserves thousands).
                recorded = con.execute(
                    f"""INSERT INTO {LEDGER_TABLE} SELECT $org, $now
                    WHERE (SELECT count(*) FROM {LEDGER_TABLE} WHERE organization = $org AND sent_at > $since) < $limit
                    RETURNING 1""",
                    {"org": self.organization, "now": now, "since": since, "limit": self.budget.limit},
                ).fetchall()
                wait = 0.0 if recorded else self._wait(now, since)
                self._reserved += 1
                if self._reserved % PRUNE_EVERY == 1:
                    # Rows older than the window never count again; removing them now and then
                    # keeps the table to about the window's requests.
                    con.execute(f"DELETE FROM {LEDGER_TABLE} WHERE organization = ? AND sent_at <= ?", [self.organization, since])
        return wait

    def _wait(self, now: datetime, since: datetime) -> float:
        """Seconds until the window has room again. The request the limit waits for is the one
        that made the window full: after ``used - limit + 1`` requests leave it, one slot is free."""
        used = self.used(now)
        nth = self._con.execute(
            f"SELECT sent_at FROM {LEDGER_TABLE} WHERE organization = ? AND sent_at > ? ORDER BY sent_at LIMIT 1 OFFSET ?",
            [self.organization, since, used - self.budget.limit],
        ).fetchone()[0]
        return max(0.0, (_utc(nth) + self.budget.span - now).total_seconds())


class BudgetGate:
    """What the HTTP client calls before sending each request (retries included).

    Waits for a slot when the wait is at most ``max_wait_seconds`` in total for this run, else
    raises :class:`BudgetSpent` naming when the budget allows the next request. The total is
    wall-clock time during which any of the run's threads waited (an account's day ranges
    share one gate and often wait at the same moment): ``waited``.
    """

    def __init__(
        self,
        ledger: RequestLedger,
        *,
        max_wait_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        describe: str = "the request budget",
    ):
        self.ledger = ledger
        self.max_wait_seconds = max_wait_seconds
        self.waited = 0.0
        self._sleep = sleep
        self._clock = clock
        self._describe = describe
        self._lock = threading.Lock()
        self._waits_until = float("-inf")  # when the latest wait planned so far ends

    def __call__(self) -> None:
        while True:
            wait = self.ledger.reserve()
            if wait == 0.0:
                return
            if not self._may_wait(wait):
                resume_at = datetime.now(UTC) + timedelta(seconds=wait)
                budget = self.ledger.budget
                raise BudgetSpent(
                    f"{self._describe} is spent ({budget.limit} requests per {_span(budget.window)}); the next request is "
                    f"allowed at {resume_at:%Y-%m-%d %H:%M:%S} UTC, {wait:.0f}s from now, longer than the run may wait "
                    f"(FEEDBACK_HTTP_MAX_WAIT_SECONDS={self.max_wait_seconds:g}). What was fetched is committed; "
                    "feedback_resume continues it when the budget allows.",
                    resume_at=resume_at,
                )
            self._sleep(wait)

    def _may_wait(self, wait: float) -> bool:
        """Count a wait of ``wait`` seconds from now, unless it would take the run's waiting past
        ``max_wait_seconds``. Waits start now or later, so their union grows by what this one
        adds past the end of the latest one planned."""
        with self._lock:
            now = self._clock()
            more = max(0.0, now + wait - max(now, self._waits_until))
            if self.waited + more > self.max_wait_seconds:
                return False
            self.waited += more
            self._waits_until = max(self._waits_until, now + wait)
            return True


def least_room(con: duckdb.DuckDBPyConnection, provider: str, budget: RateBudget, now: datetime | None = None) -> int:
    """The requests ``provider``'s busiest organization may still send now (what
    ``feedback_resume`` waits for). Organizations are named ``<provider>:<digest>``."""
    now = now or datetime.now(UTC)
    row = con.execute(
        f"SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM {LEDGER_TABLE} "
        "WHERE starts_with(organization, ?) AND sent_at > ? GROUP BY organization)",
        [f"{provider}:", now - budget.span],
    ).fetchone()
    return max(0, budget.limit - row[0])


def _span(window: timedelta) -> str:
    seconds = window.total_seconds()
    return "hour" if seconds == 3600 else f"{seconds:g} s"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
