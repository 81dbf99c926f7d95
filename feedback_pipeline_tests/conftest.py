"""Shared fixtures: a real sandbox over loopback, fast retry policies, DuckDB files in tmp_path."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from feedback_pipeline.http import RetryPolicy
from feedback_pipeline.lake import LakeSettings
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import specs
from feedback_pipeline.providers.base import Provider, Query, Window
from feedback_pipeline.sandbox.app import Sandbox
from feedback_pipeline.sandbox.core import SandboxState
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.sync import SyncReport, sync
from feedback_pipeline.warehouse import PublishResult, Warehouse

if TYPE_CHECKING:
    from feedback_pipeline.lake import LakeMirror

UTC = timezone.utc
# Retries in tests: real backoff shape, tiny delays (the Retry-After floor is tested on its own).
FAST_RETRIES = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_total_wait=30, retry_after_floor=0.01)

# Never let a developer's real credentials leak into tests.
for _var in list(os.environ):
    if _var.startswith(("FEEDBACK_", *(s.prefix for s in specs().values()))):
        del os.environ[_var]


@contextmanager
def uvicorn_errors_silenced() -> Iterator[None]:
    """Killed clients and injected dropped connections make uvicorn log a traceback each; tests
    that cause them on purpose keep their output readable."""
    quiet = logging.getLogger("uvicorn.error")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


def make_sandbox(providers: tuple[str, ...] | None = None, **state: object) -> SandboxServer:
    """A started sandbox server (caller stops it). Defaults: 30 days x 20 records, no rate limit."""
    settings = {"seed": 7, "days": 30, "per_day": 20, "mintlify_rate_limit": None, **state}
    return SandboxServer(Sandbox(SandboxState(**settings), providers=providers)).start()


def module_sandbox(*providers: str, **state: object):
    """A module-scoped fixture serving ``providers`` (reset per test with ``server.reset()``)."""

    @pytest.fixture(scope="module")
    def server() -> Iterator[SandboxServer]:
        srv = make_sandbox(providers, **state)
        yield srv
        srv.stop()

    return server


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox with all five providers for the whole session; ``sandbox`` resets it."""
    server = make_sandbox()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session sandbox, regenerated with default data, no faults and an empty request log."""
    return sandbox_server.reset()


def recent_window(days: int = 30) -> Window:
    """The window of the last ``days`` days including today (what the sandbox generates)."""
    today = datetime.now(UTC).date()
    return Window.for_days(today - timedelta(days=days - 1), today)


def fetch_all(provider: Provider, query: Query) -> tuple[FeedbackBatch, list[dict], object]:
    """Run one query to the end: (normalized batch, pages' resume values, request stats)."""
    batch = FeedbackBatch(provider.name, provider.account_id)
    resumes = []
    with provider.open() as http:
        for page in provider.fetch(query, http):
            provider.normalize(page.records, batch)
            resumes.append(page.resume)
        return batch, resumes, http.stats


def sync_sandbox(server: SandboxServer, db_path: Path, days: int = 30) -> Path:
    """Sync every provider of the sandbox over its last ``days`` days into a warehouse at
    ``db_path``, the way a run does (sync, then publish); returns the analysts' snapshot path."""
    from feedback_pipeline.providers import names, provider_from_env

    env = server.env()
    wh = Warehouse(db_path)
    with wh.session() as session:
        for name in names():
            with session.cursor() as cursor:
                sync(provider_from_env(name, env, policy=FAST_RETRIES), cursor, recent_window(days))
        session.publish_if_behind()
    return wh.path


def day(text: str) -> date:
    return date.fromisoformat(text)


def run_sync_published(provider: Provider, wh: Warehouse, window: Window, **kw: object) -> tuple[SyncReport, PublishResult | None]:
    """What a step does for one provider: one session, the sync, then one publish (also after a
    failure, as the step does); returns the report and what the publish did."""
    with wh.session() as session:
        try:
            with session.cursor() as cursor:
                report = sync(provider, cursor, window, **kw)  # type: ignore[arg-type]
        finally:
            published = session.publish_if_behind()
    return report, published


def run_sync(provider: Provider, wh: Warehouse, window: Window, **kw: object) -> SyncReport:
    """``run_sync_published`` when only the report matters."""
    return run_sync_published(provider, wh, window, **kw)[0]


@contextmanager
def work_db(wh: Warehouse) -> Iterator[object]:
    """A DuckDB cursor on the working database (in a session of its own) for reads in tests."""
    with wh.session() as session, session.cursor() as cursor:
        yield cursor.con


# -- warehouse tests: a batch of Mapbox-like records and one commit in a session of its own ------

WAREHOUSE_DAY = date(2026, 3, 1)


def batch_of(*records: dict, provider: str = "mapbox") -> FeedbackBatch:
    """A normalized batch of minimal records (id, created_at, updated_at, status, body, attributes)."""
    batch = FeedbackBatch(provider, "acct")
    for r in records:
        batch.add(
            r,
            feedback_id=r["id"],
            collected_at=r.get("created_at", "2026-03-01T10:00:00Z"),
            updated_at=r.get("updated_at"),
            provider_status=r.get("status"),
            body=r.get("body"),
            attributes=r.get("attributes"),
        )
    return batch


def commit_batch(wh: Warehouse, batch: FeedbackBatch, *, resume=None, key: str = "window:q", scope=None, sweep: bool = False, first: bool = False):
    """Commit ``batch`` as one page of query ``key`` over ``scope`` (default: mapbox/acct, 3 days);
    ``first``: the first commit of a query that started afresh."""
    from feedback_pipeline.warehouse import Progress, Scope

    scope = scope or Scope(batch.provider, "acct", WAREHOUSE_DAY, WAREHOUSE_DAY + timedelta(days=2))
    progress = Progress(key, scope.first_day, scope.last_day, None, datetime(2026, 3, 4, tzinfo=UTC), 1, resume, sweep, first)
    with wh.session() as session, session.cursor() as cursor:
        return cursor.commit(scope, batch.rows(), batch.rejects(), progress)


def work_rows(wh: Warehouse, sql: str = "SELECT feedback_id, body, ingested_at FROM feedback ORDER BY feedback_id", params=None) -> list[tuple]:
    with wh.session() as session:
        return session.query(sql, params)


def snapshot_rows(wh: Warehouse, sql: str = "SELECT feedback_id, body, ingested_at FROM feedback ORDER BY feedback_id") -> list[tuple]:
    """What a new analyst connection to FEEDBACK_DB sees."""
    import duckdb

    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def job_environment(monkeypatch: pytest.MonkeyPatch, provider_env: dict[str, str], db: Path, **extra: str) -> dict[str, str]:
    """The environment a test runs the real jobs with: the providers' variables, a warehouse at
    ``db``, the dashboard beside it (never in the checkout), partitions from 29 days ago, plus
    ``extra``; set in the process environment too (resources read it through ``EnvVar``)."""
    env = {
        **provider_env,
        "FEEDBACK_DB": str(db),
        "FEEDBACK_DASHBOARD": str(db.parent / "dashboard.html"),
        "FEEDBACK_START_DATE": (datetime.now(UTC).date() - timedelta(days=29)).isoformat(),
        **extra,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def mapbox_snapshot(tmp_path: Path) -> Path:
    """A published snapshot with one Mapbox row (the dashboard's tests draw it); returns its path."""
    from .test_views import store

    wh = Warehouse(tmp_path / "feedback.duckdb")
    store(wh, "mapbox", [{"id": "1", "status": "received"}])
    wh.publish_if_behind()
    return wh.path


def lake_warehouse(tmp_path: Path, folder: str = "lake") -> tuple[Warehouse, LakeSettings]:
    """A warehouse in ``tmp_path`` with its Iceberg copy in ``tmp_path / folder``."""
    wh = Warehouse(tmp_path / "feedback.duckdb")
    return wh, LakeSettings.from_env({"FEEDBACK_LAKE_WAREHOUSE": str(tmp_path / folder)}, db_path=wh.path)


def feed_lake(wh: Warehouse, settings: LakeSettings, run_id: str) -> LakeMirror:
    """What a run does after its publish: bring the Iceberg copy up to the working database
    (needs pyiceberg: call ``pytest.importorskip("pyiceberg")`` first)."""
    from feedback_pipeline.lake import LakeMirror

    mirror = LakeMirror(settings)
    with wh.session() as session:
        session.feed(lambda con, generation: mirror.apply(con, generation, run_id))
    return mirror
