"""Mintlify connector: ``GET {MINTLIFY_BASE_URL}/api/external/v1/analytics/{projectId}/feedback``.

API facts this module is built on (``shared/providers/mintlify.md``, "Get user feedback", and
the vendored ``mintlify-analytics.openapi.json``):

* Bearer admin key (prefixed ``mint_``). The rate limit is **100 requests per organization per
  hour**, shared by all analytics endpoints, and no ``Retry-After`` is documented: so a window is
  read as a paginated range query (never one query per day; a long backfill window as at most
  four day ranges, ``SPEC.concurrent_windows``), always at the maximum page size
  (``limit=100``), and leaves 429 handling to the shared client (backoff with the Retry-After
  floor, attempts and total wait capped; the next run resumes from the cursor).
* ``dateFrom`` is inclusive and ``dateTo`` exclusive ("results include dates before, but not on,
  the specified date"), both "ISO 8601 or YYYY-MM-DD". The page does not say in which time zone
  a bare date is read, so the window ``[start, end)`` is sent as UTC instants
  (``dateFrom=<first day>T00:00:00Z&dateTo=<day after the last>T00:00:00Z``): partitions are UTC
  days whatever the API's default zone. The engine drops anything that still falls outside.
* Paging: follow ``nextCursor`` while ``hasMore`` is true. The order is not documented, so
  nothing here depends on it. A stored cursor the API no longer accepts comes back as 400
  ("Invalid query parameters"): :class:`StaleCursor`, the engine restarts the query.
* There is no update timestamp (status can change silently), so change queries are impossible:
  ``supports_changes = False`` and a window is re-read whole.
* Items come in four sources (``contextual``, ``code_snippet`` and the later ``agent``,
  ``thumbs_only``); ``createdAt`` and ``comment`` are nullable. A record without ``createdAt``
  cannot be placed in a partition: the shared batch rejects it.
* The docs declare no 404 for this operation; an unknown project id is refused with 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from ..budget import RateBudget
from ..http import HttpClient, ProviderError
from .base import ConfigurationError, Page, Provider, Query, check_cursor_page
from .spec import ProviderSpec, Setting

DEFAULT_BASE_URL = "https://api.mintlify.com"
PAGE_SIZE = 100  # documented maximum ("Required range: 1 <= x <= 100")
KEY_PREFIX = "mint_"
# Unified column -> Mintlify field; everything else (helpful, code, filename, lang, ...) goes to
# attributes.
FIELDS = {
    "feedback_id": "id",
    "collected_at": "createdAt",  # nullable: a null is rejected by the batch
    "provider_status": "status",
    "category": "source",
    "body": "comment",
    "user_email": "contact",
    "page_url": "path",
}


def _check_envelope(body: Any) -> None:
    check_cursor_page(body, items="feedback", more="hasMore", cursor="nextCursor")


class MintlifyProvider(Provider):
    # No update timestamp in the API: a window is always re-read whole.
    supports_changes = False
    fields = FIELDS

    def validate(self) -> None:
        # "Use an admin API key (prefixed with mint_)": anything else is refused with 401 anyway.
        if not self.config.api_key.startswith(KEY_PREFIX):
            raise ConfigurationError(
                f"MINTLIFY_API_KEY must be a Mintlify admin API key (it starts with {KEY_PREFIX}); "
                "create one on the dashboard's API keys page."
            )

    @property
    def url(self) -> str:
        base = self.config.get("base_url").rstrip("/")
        return f"{base}/api/external/v1/analytics/{quote(self.config.project_id, safe='')}/feedback"

    def open(self, **client_kwargs: Any) -> HttpClient:
        return self.http_client(headers={"Authorization": f"Bearer {self.config.api_key}"}, **client_kwargs)

    def fetch(self, query: Query, http: HttpClient) -> Iterator[Page]:
        # One range query for the whole window (100 requests/hour per organization); changes_since
        # cannot be honoured (no update timestamp), so it is ignored.
        params: dict[str, Any] = {
            "dateFrom": _utc_instant(query.window.start),
            "dateTo": _utc_instant(query.window.end),  # exclusive, per the docs
            "limit": PAGE_SIZE,
        }
        cursor = (query.resume or {}).get("cursor")
        resumed = bool(cursor)
        while True:
            if cursor:
                params["cursor"] = cursor
            body = self.get_page(http, self.url, endpoint="get feedback", params=params, validate=_check_envelope, resumed=resumed)
            resumed = False
            next_cursor = body.get("nextCursor") if body["hasMore"] else None
            yield Page(records=body["feedback"], resume={"cursor": next_cursor} if next_cursor else None)
            if not next_cursor:
                return
            if next_cursor == cursor:
                raise ProviderError("mintlify: the API returned the same nextCursor twice; stopping to avoid a loop")
            cursor = next_cursor



def _utc_instant(when: datetime) -> str:
    """``2026-03-01T00:00:00Z``: ISO 8601 with an explicit zone (see the module docstring)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


SPEC = ProviderSpec(
    name="mintlify",
    asset_name="mintlify_feedback",
    description="Documentation feedback from Mintlify (contextual, code snippet, agent, thumbs).",
    settings=(
        Setting("MINTLIFY_API_KEY", secret=True),  # an admin key, mint_...
        Setting("MINTLIFY_PROJECT_ID"),
        Setting("MINTLIFY_BASE_URL", required=False, default=DEFAULT_BASE_URL, url=True),
    ),
    account="project_id",
    statuses={"pending": "open", "in_progress": "in_progress", "resolved": "resolved", "dismissed": "dismissed"},
    hints={
        400: "Mintlify rejected the request; check MINTLIFY_PROJECT_ID (an unknown project is answered with 400) and the partition range",
        401: "Mintlify rejected the key; check MINTLIFY_API_KEY (an admin API key starting with mint_)",
        403: "the key may not read this project; check MINTLIFY_API_KEY and MINTLIFY_PROJECT_ID",
        404: "no feedback endpoint there; check MINTLIFY_BASE_URL (default " + DEFAULT_BASE_URL + ", without a path) and MINTLIFY_PROJECT_ID",
    },
    provider=MintlifyProvider,
    page_size=PAGE_SIZE,
    # "100 requests per hour per organization", shared by every analytics endpoint and project.
    request_budget=RateBudget(limit=100, window=timedelta(hours=1)),
    # No update timestamp: the hourly run re-reads today, and each older day of its lookback
    # once a day (sync.plan_queries), instead of the whole window every hour.
    reread_interval=timedelta(days=1),
    # 100 records a page, each page's cursor in the one before it: a year of a busy project is
    # thousands of round trips in a row. A backfill's window is read as four day ranges at once
    # (at most three requests more, out of the hour's 100; the budget still paces them all).
    concurrent_windows=4,
)
