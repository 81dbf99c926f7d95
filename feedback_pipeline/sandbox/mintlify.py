"""Mintlify emulator: ``GET /api/external/v1/analytics/{projectId}/feedback``.

Follows ``shared/providers/mintlify.md`` ("Get user feedback") and the vendored
``mintlify-analytics.openapi.json`` (FeedbackResponse, AnalyticsErrorResponse):

* Auth: ``Authorization: Bearer <admin key>``; admin keys are prefixed ``mint_``. A missing
  header, another scheme, a key without the prefix or an unknown key get **401** with the
  documented error body ``{"error": ..., "details": [{"message": ...}]}``. The key identifies the
  organization (see :data:`API_KEYS`).
* Accounts (``state.accounts``): account k is project ``PROJECT_ID-k`` of the same organization,
  read with the same admin key (a key is organization-wide upstream), with its own records; the
  projects share the organization's rate limit.
* Unknown ``projectId`` (or one of another organization): **400**. The docs and the OpenAPI file
  declare only 200/400/500 for this operation (no 404), so an unusable path parameter is
  answered like the other invalid parameters: ``{"error": "Invalid project", ...}``.
* ``limit``: a number, 1..100, default 50 (a fractional value is truncated); anything else 400.
* ``dateFrom`` (inclusive) and ``dateTo`` (exclusive: "results include dates before, but not
  on, the specified date"), each ``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date-time (no zone
  = UTC); unparseable -> 400.
* ``source``: ``code_snippet`` | ``contextual`` (documented) and ``agent`` | ``thumbs_only`` (the
  later item sources, see "Facts beyond this page"); anything else 400.
* ``status``: comma-separated list of ``pending``, ``in_progress``, ``resolved``, ``dismissed``;
  an unknown value -> 400; empty items are ignored.
* ``cursor``: opaque. Here: URL-safe base64 of ``{"k": <sort key>, "i": <id>}`` of the last item
  served (sort key = minus its stored time in epoch microseconds), a keyset cursor, so records inserted between page requests never shift a
  page edge. A malformed cursor -> 400.
* Response ``{"feedback": [...], "nextCursor": str | null, "hasMore": bool}``; ``nextCursor`` is
  null exactly when ``hasMore`` is false. Unknown query parameters are ignored.
* **Order** (undocumented upstream; this sandbox's choice): newest first, ``createdAt DESC`` then
  ``id ASC`` for equal times.
* Items: the four sources. ``contextual`` carries ``helpful`` and sometimes ``contact`` (absent,
  null or an email); ``code_snippet`` carries ``code``, ``filename`` and ``lang`` (the last two
  possibly null); ``thumbs_only`` carries ``helpful`` and a null ``comment``; ``agent`` carries
  the common fields only. ``comment`` and ``createdAt`` are nullable.
* Date filters and order use the time the API stored the feedback under; ``createdAt`` is what it
  *serves*, and a few legacy records serve it as null while still being found by a date range
  (that is how the connector gets to see, and reject, them). The stored time lives in the hidden
  field ``_at`` (epoch microseconds), which is never served (the control API shows it); records
  added through the control API without ``_at`` use their ``createdAt``, and a record with
  neither sorts last and matches no ``dateFrom``.
* Rate limit: ``state.mintlify_rate_limit`` requests per :attr:`MintlifyEmulator.rate_window`
  seconds (100 per hour upstream) per organization (every key of the organization shares it),
  counted over a sliding window for authenticated requests that are answered (not the 429s
  themselves). ``None`` turns it off. Over the limit: 429 with the documented error body and
  **no** ``Retry-After`` header (Mintlify documents none). The limiter's state lives in
  ``state.extra`` so a reset (or a settings change) clears it.
* There is no update timestamp: a status change is invisible except in the record itself, so
  :meth:`MintlifyEmulator.touch` changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import time
from collections import deque
from datetime import date, datetime, timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data
from .core import Emulator, account_value, json_response, seek

UTC = timezone.utc
PATH = "/api/external/v1/analytics/{projectId}/feedback"

# Fixed sandbox credentials: admin keys -> organization, projects -> organization.
ORG = "org_sandbox"
OTHER_ORG = "org_other"
API_KEY = "mint_sandbox_admin_7c4e19a2d5"
SECOND_KEY = "mint_sandbox_ci_b81f03e6aa"  # a second admin key of the same organization
OTHER_ORG_KEY = "mint_other_org_5d2a9c71e0"
API_KEYS: dict[str, str] = {API_KEY: ORG, SECOND_KEY: ORG, OTHER_ORG_KEY: OTHER_ORG}
PROJECT_ID = "65f1c0ffee5a9d0b1c2d3e4f"
OTHER_PROJECT_ID = "65f1c0ffee5a9d0b1c2d3e50"  # the other organization's project (no feedback)
PROJECTS: dict[str, str] = {PROJECT_ID: ORG, OTHER_PROJECT_ID: OTHER_ORG}  # and PROJECT_ID-k: ORG

SOURCES = ("contextual", "code_snippet", "agent", "thumbs_only")
SOURCE_WEIGHTS = (0.5, 0.25, 0.1, 0.15)
STATUSES = ("pending", "in_progress", "resolved", "dismissed")
STATUS_WEIGHTS = (0.55, 0.15, 0.2, 0.1)
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
HIDDEN = "_at"  # stored time (epoch microseconds): filters and order; never served
RATE_STATE = "mintlify_rate"  # key in state.extra: org -> deque of request times
_NO_TIME = 1 << 62  # sort key of a record without any time: after every real one (oldest)

SNIPPETS: tuple[tuple[str, str | None, str | None], ...] = (
    ("curl --request GET --url https://api.example.com/v1/users", None, "bash"),
    ("import mintlify\nclient = mintlify.Client(api_key=KEY)", "client.py", "python"),
    ("const res = await fetch(url, { headers: { Authorization: `Bearer ${key}` } });", "index.ts", "typescript"),
    ('{\n  "name": "docs",\n  "theme": "mint"\n}', "docs.json", "json"),
    ("SELECT id, comment FROM feedback WHERE status = 'pending';", None, None),
    ("npm i mint -g", "install.sh", None),
    ("fn main() {\n    println!(\"héllo 🌍\");\n}", None, "rust"),
)


def _epoch_us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_date_param(value: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date-time (no zone = UTC); ValueError else."""
    text = value.strip()
    if not text:
        raise ValueError("empty")
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if "T" not in text and " " not in text:
        raise ValueError("not a date")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def encode_cursor(key: int, record_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"k": key, "i": record_id})).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (sort key, id) of a cursor; ValueError when it is not one this API issued."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise ValueError("invalid cursor") from None
    if not isinstance(raw, dict) or set(raw) != {"k", "i"}:
        raise ValueError("invalid cursor")
    k, i = raw["k"], raw["i"]
    if isinstance(k, bool) or not isinstance(k, int) or not isinstance(i, str) or not i:
        raise ValueError("invalid cursor")
    return k, i


def error(status: int, message: str, *details: str) -> Response:
    """The documented error body (AnalyticsErrorResponse)."""
    return json_response({"error": message, "details": [{"message": d} for d in details]}, status)


def stored_time(record: dict[str, Any]) -> int | None:
    """Epoch microseconds the API files ``record`` under (hidden field, else createdAt)."""
    at = record.get(HIDDEN)
    if isinstance(at, int) and not isinstance(at, bool):
        return at
    created = record.get("createdAt")
    if isinstance(created, str):
        try:
            return _epoch_us(parse_date_param(created))
        except ValueError:
            return None
    return None


def _sort_key(record: dict[str, Any]) -> int:
    at = stored_time(record)
    return _NO_TIME if at is None else -at


def object_id(rng: random.Random, when: datetime) -> str:
    """A MongoDB-style ObjectId (24 hex digits, time first), as Mintlify ids look."""
    return f"{int(when.timestamp()) & 0xFFFFFFFF:08x}{rng.getrandbits(64):016x}"


class MintlifyEmulator(Emulator):
    name = "mintlify"
    # The rate limit's window (seconds): one hour upstream; tests shorten it on the instance.
    rate_window: float = 3600.0

    def settings(self, base_url: str, account: int = 1) -> dict[str, str]:
        # requests go to {MINTLIFY_BASE_URL}/api/external/v1/analytics/{projectId}/feedback;
        # every project of the organization is read with its one admin key
        return {"api_key": API_KEY, "project_id": account_value(PROJECT_ID, account), "base_url": base_url}

    def account_of(self, request: Request) -> int | None:
        return self.find_account(PROJECT_ID, request.path_params.get("projectId"))

    # -- data -----------------------------------------------------------------------------

    def generate_day(self, rng: random.Random, day: date, count: int, now: datetime, account: int = 1) -> list[dict[str, Any]]:
        records = []
        for i, when in enumerate(data.day_times(rng, day, count, now)):
            source = rng.choices(SOURCES, SOURCE_WEIGHTS)[0]
            record: dict[str, Any] = {
                "id": object_id(rng, when),
                "path": rng.choice(data.PAGES) if rng.random() < 0.9 else "https://docs.example.com" + rng.choice(data.PAGES),
                "comment": data.comment(rng) if rng.random() < 0.85 else None,
                "createdAt": data.iso_z(when, 3),
                "source": source,
                "status": rng.choices(STATUSES, STATUS_WEIGHTS)[0],
                HIDDEN: _epoch_us(when),
            }
            if source == "contextual":
                record["helpful"] = rng.random() < 0.6
                roll = rng.random()
                if roll < 0.3:
                    record["contact"] = data.email(rng)
                elif roll < 0.6:
                    record["contact"] = None
                # else: no contact key at all ("optional contact email")
            elif source == "code_snippet":
                code, filename, lang = rng.choice(SNIPPETS)
                record["code"] = code
                record["filename"] = filename
                record["lang"] = lang
            elif source == "thumbs_only":
                record["helpful"] = rng.random() < 0.5
                record["comment"] = None
            if i == 0 and data.bad_record_day(day, self.state.last_day(now)) is not None:
                # A legacy record that serves no createdAt: the connector must reject it.
                record["createdAt"] = None
            records.append(record)
        return records

    def touch(self, record: dict[str, Any], now: datetime) -> None:
        """Mintlify has no update timestamp: nothing to bump."""

    def bad_envelope(self) -> Any:
        return {"data": [], "cursor": None}

    # -- API ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [Route(PATH, self.endpoint(self.list_feedback), methods=["GET"])]

    def _organization(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.startswith("mint_"):
            return None
        return API_KEYS.get(token.strip())

    def _organization_of_project(self, project: str) -> str | None:
        return ORG if self.find_account(PROJECT_ID, project) else PROJECTS.get(project)

    def _rate_limited(self, org: str) -> bool:
        """Count this request against ``org``'s sliding window; True when it is over the limit."""
        limit = self.state.mintlify_rate_limit
        if limit is None:
            return False
        now = time.monotonic()
        with self.state.lock:
            buckets = self.state.extra.setdefault(RATE_STATE, {})
            window: deque[float] = buckets.setdefault(org, deque())
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            if len(window) >= int(limit):
                return True
            window.append(now)
            return False

    async def list_feedback(self, request: Request) -> Response:
        org = self._organization(request)
        if org is None:
            return error(401, "Unauthorized", "Missing or invalid API key. Use an admin API key (prefixed with mint_) as a Bearer token.")
        if self._rate_limited(org):
            # Documented error body; no Retry-After header (Mintlify documents none).
            limit = self.state.mintlify_rate_limit
            return error(429, "Rate limit exceeded", f"Rate limit of {limit} requests per hour exceeded for this organization.")
        project = request.path_params["projectId"]
        if self._organization_of_project(project) != org:
            return error(400, "Invalid project", f"Project {project} was not found or is not accessible with this API key.")

        params = request.query_params
        problems: list[str] = []
        limit = DEFAULT_LIMIT
        if "limit" in params:
            try:
                number = float(params["limit"])
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                problems.append("limit: Expected number, received nan")
            elif not 1 <= number <= MAX_LIMIT:
                problems.append(f"limit: Number must be between 1 and {MAX_LIMIT}")
            else:
                limit = int(number)
        bounds: dict[str, int] = {}
        for name in ("dateFrom", "dateTo"):
            if name in params:
                try:
                    bounds[name] = _epoch_us(parse_date_param(params[name]))
                except (ValueError, OverflowError):
                    problems.append(f"{name}: Invalid date, expected ISO 8601 or YYYY-MM-DD")
        source = params.get("source")
        if source is not None and source not in SOURCES:
            problems.append("source: Invalid enum value. Expected " + " | ".join(repr(s) for s in SOURCES) + ", received " + repr(source)[:60])
        statuses: set[str] | None = None
        if "status" in params:
            wanted = {s.strip() for s in params["status"].split(",") if s.strip()}
            unknown = sorted(wanted - set(STATUSES))
            if unknown:
                problems.append("status: Invalid status value(s): " + ", ".join(unknown)[:100])
            statuses = wanted or None
        after: tuple[int, str] | None = None
        if params.get("cursor"):
            try:
                after = decode_cursor(params["cursor"])
            except ValueError:
                problems.append("cursor: Invalid cursor")
        if problems:
            return error(400, "Invalid query parameters", *problems)

        if project == OTHER_PROJECT_ID:
            # The other organization's project is empty; each of ours has its account's store.
            return json_response({"feedback": [], "nextCursor": None, "hasMore": False})
        page, more = self._page(bounds, source, statuses, after, limit)
        next_cursor = None
        if more and page:
            last = page[-1]
            next_cursor = encode_cursor(_sort_key(last), str(last["id"]))
        served = [{k: v for k, v in r.items() if k != HIDDEN} for r in page]
        return json_response({"feedback": served, "nextCursor": next_cursor, "hasMore": next_cursor is not None})

    def _page(self, bounds: dict[str, int], source: str | None, statuses: set[str] | None, after: tuple[int, str] | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        # Newest first == ascending by (-stored time, id).
        index = self.store.index("created_desc", _sort_key)
        start = 0
        if after is not None:
            start = seek(index, after, inclusive=False)
        if "dateTo" in bounds:
            # stored < dateTo  <=>  key >= -dateTo + 1 (integer microseconds)
            start = max(start, seek(index, (-bounds["dateTo"] + 1, ""), inclusive=True))
        stop_key = -bounds["dateFrom"] if "dateFrom" in bounds else None
        records = self.store.records
        page: list[dict[str, Any]] = []
        for pos in range(start, len(index)):
            key, rid = index[pos]
            if stop_key is not None and key > stop_key:
                break
            record = records.get(rid)
            if record is None:
                continue
            if source is not None and record.get("source") != source:
                continue
            if statuses is not None and record.get("status") not in statuses:
                continue
            if len(page) == limit:
                return page, True
            page.append(record)
        return page, False


EMULATOR = MintlifyEmulator
