"""Shared fixtures: a real sandbox over loopback, fast retry policies, DuckDB files in tmp_path."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone

import pytest

from feedback_pipeline.http import RetryPolicy
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import specs
from feedback_pipeline.providers.base import Provider, Query, Window
from feedback_pipeline.sandbox.app import Sandbox
from feedback_pipeline.sandbox.core import SandboxState
from feedback_pipeline.sandbox.server import SandboxServer

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


def day(text: str) -> date:
    return date.fromisoformat(text)
