"""Usersnap connector: ``POST {USERSNAP_BASE_URL}/projects/{project_id}/feedbacks/filter``.

API facts this module is built on (``shared/providers/usersnap.md`` and the v0.1 OpenAPI file):

* Auth is a JWT *we* mint: HS256 (the page says "Don't use HS512"), signed with the shared JWT
  secret, the JWT ID in the ``kid`` header, sent as ``Authorization: Bearer``. Our tokens carry
  ``iat`` and an ``exp`` at most 5 minutes ahead and are re-minted shortly before they expire;
  :class:`UsersnapJWTAuth` is an ``httpx.Auth``, so every attempt, including a retry after a
  long ``Retry-After`` wait, is signed with a token that is still valid.
* ``GET .../feedbacks`` only orders by ``updated_at``; the filter endpoint can order by
  ``created_at`` and filter on it, so a window is one filter query: ``created_at gte start`` and
  ``created_at lt end`` ordered ``created_at asc``. ``created_at`` never changes, so the
  id cursor cannot move under us while paging.
* ``limit`` is at most 100 and, with ``after``, is a *query parameter* of the filter POST (as
  ``next.query_string`` shows); the body is the filter and must be present. ``after`` is the
  ``feedback_id`` of the last item of the current page; ``has_more`` says whether to go on.
* Changes since a watermark: the same created_at window, ordered ``updated_at desc``; the first
  item older than the watermark ends the query (everything after it is older still) and is not
  passed on. A record updated while we page jumps to the top and is left for the next run, whose
  watermark is earlier than that update.
* A cursor is a feedback id, and the API refuses (400) an id whose feedback was deleted. A stored
  cursor refused that way becomes :class:`StaleCursor` (the engine restarts the query); mid-run,
  the ids of the items before the last one on the page are tried first (a few re-read records are
  harmless: the engine dedupes).
* Resume values: ``{"mode": "window" | "changes", "after": <feedback_id>}``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import jwt

from ..http import BadPage, HttpClient, ProviderRequestError, ProviderUnavailable, RetryPolicy
from ..normalize import FeedbackBatch, parse_optional_timestamp, split
from .base import Page, Provider, Query, StaleCursor
from .spec import ProviderResource, ProviderSpec, Setting

UTC = timezone.utc
PAGE_SIZE = 100  # the documented maximum of ``limit``
DEFAULT_BASE_URL = "https://platform.usersnap.com/v0.1"
TOKEN_LIFETIME = 300  # seconds; short-lived on purpose (a leaked token is soon useless)
RENEW_MARGIN = 60  # re-mint when fewer seconds than this are left
# Unified column -> Usersnap field (category, body, rating and page_url are worked out in
# normalize); everything but these fields goes to attributes.
FIELDS = {
    "feedback_id": "feedback_id",
    "collected_at": "created_at",
    "updated_at": "updated_at",
    "provider_status": "status_type",
    "user_email": "email",
}


class UsersnapJWTAuth(httpx.Auth):
    """Signs each request with a short-lived HS256 JWT, minting a new one near expiry.

    ``clock`` returns epoch seconds (injectable for tests). ``minted`` lists ``(iat, exp)`` of
    every token made (never the token itself), so renewal can be observed.
    """

    algorithm = "HS256"  # usersnap.md: "Please, use HS256 as algorithm. Don't use HS512."

    def __init__(self, secret: str, kid: str, *, clock: Callable[[], float] = time.time, lifetime: int = TOKEN_LIFETIME, renew_margin: int = RENEW_MARGIN):
        self._secret = secret
        self._kid = kid
        self._clock = clock
        self._lifetime = lifetime
        self._margin = renew_margin
        self._token: str | None = None
        self._exp = 0
        self._lock = threading.Lock()
        self.minted: list[tuple[int, int]] = []

    def token(self) -> str:
        with self._lock:
            now = int(self._clock())
            if self._token is None or now >= self._exp - self._margin:
                exp = now + self._lifetime
                self._token = jwt.encode({"iat": now, "exp": exp}, self._secret, algorithm=self.algorithm, headers={"kid": self._kid})
                self._exp = exp
                self.minted.append((now, exp))
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request

    def __repr__(self) -> str:  # never show the secret
        return f"UsersnapJWTAuth(kid={self._kid!r})"


def iso_z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_list(body: Any) -> None:
    """The documented ProjectFeedbackList envelope, or :class:`BadPage`."""
    if not isinstance(body, dict) or body.get("status") is not True:
        raise BadPage("expected {'status': true, 'data': {...}}")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("feedbacks"), list):
        raise BadPage("expected 'data.feedbacks' to be an array")
    if not isinstance(data.get("has_more"), bool):
        raise BadPage("expected 'data.has_more' to be a boolean")
    if data["has_more"] and _next_cursor(data) is None:
        raise BadPage("'has_more' is true but there is no cursor to continue from")


def _next_cursor(data: dict[str, Any]) -> str | None:
    cursors = _cursors(data)
    return cursors[0] if cursors else None


def _cursors(data: dict[str, Any], fallbacks: int = 5) -> list[str]:
    """``after`` values for the next page, best first: the last item's feedback_id (usersnap.md:
    "the feedback_id of the last feedback item in the current page"), else ``next.after``, then
    the ids of a few items before the last one."""
    feedbacks = data.get("feedbacks") or []
    nxt = data.get("next")
    after = nxt.get("after") if isinstance(nxt, dict) and isinstance(nxt.get("after"), str) and nxt["after"] else None
    last = feedbacks[-1] if feedbacks else None
    last_id = last.get("feedback_id") if isinstance(last, dict) else None
    ids: list[str] = []
    if after and not (isinstance(last_id, str) and last_id):
        ids.append(after)  # the last item has no usable id: trust next.after
    for record in reversed(feedbacks[-(fallbacks + 1):]):
        fid = record.get("feedback_id") if isinstance(record, dict) else None
        if isinstance(fid, str) and fid and fid not in ids:
            ids.append(fid)
    if after and after not in ids:
        ids.append(after)
    return ids


class UsersnapProvider(Provider):
    supports_changes = True

    def __init__(self, config: ProviderResource, *, policy: RetryPolicy | None = None, clock: Callable[[], float] = time.time):
        super().__init__(config, policy=policy)
        self.clock = clock
        self.auth: UsersnapJWTAuth | None = None

    @property
    def url(self) -> str:
        base = self.config.get("base_url").rstrip("/")
        return f"{base}/projects/{self.config.project_id}/feedbacks/filter"

    def open(self) -> HttpClient:
        self.auth = UsersnapJWTAuth(self.config.jwt_secret or "", self.config.jwt_kid or "", clock=self.clock)
        return self.http_client(auth=self.auth)

    # -- fetch ----------------------------------------------------------------------------

    def fetch(self, query: Query, http: HttpClient) -> Iterator[Page]:
        changes = query.changes_since
        mode = "window" if changes is None else "changes"
        body = {
            "order_by": (
                {"direction": "asc", "order_by_type": "created_at"}
                if changes is None
                else {"direction": "desc", "order_by_type": "updated_at"}
            ),
            "query": [
                {"filter_type": "created_at", "operator": "gte", "value": iso_z(query.window.start)},
                {"filter_type": "created_at", "operator": "lt", "value": iso_z(query.window.end)},
            ],
        }
        resume = dict(query.resume or {})
        stored = resume.get("after") if resume.get("mode") == mode else None
        # Cursors to try, best first: the stored one, or the ids of the last page from its end
        # (if the last item was deleted meanwhile, the one before it is as good a place to resume).
        cursors: list[str] = [stored] if isinstance(stored, str) and stored else []
        resumed = bool(cursors)
        used: set[str] = set()
        while True:
            payload = self._request(http, body, cursors, resumed)
            resumed = False
            data = payload["data"]
            records = data["feedbacks"]
            done = not data["has_more"]
            if changes is not None:
                records, past = _until_watermark(records, changes)
                done = done or past
            cursors = [] if done else _cursors(data)
            if cursors and cursors[0] in used:
                raise ProviderUnavailable(f"usersnap: paging did not advance (cursor {cursors[0]} came back twice); try again later")
            used.update(cursors[:1])
            yield Page(records=records, resume=None if done else {"mode": mode, "after": cursors[0]})
            if done:
                return

    def _request(self, http: HttpClient, body: dict[str, Any], cursors: list[str], resumed: bool) -> dict[str, Any]:
        for position, after in enumerate(cursors or [None]):
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if after:
                params["after"] = after
            try:
                return http.request_json("POST", self.url, endpoint="filter feedbacks", params=params, json=body, validate=_check_list)
            except ProviderRequestError as exc:
                # The cursor is a feedback id: once that feedback is deleted the API refuses it
                # with HTTP 400. Mid-run, fall back to the item before it on the same page.
                if exc.status != 400 or not after:
                    raise
                if resumed or position == len(cursors) - 1:
                    origin = "stored" if resumed else "page"
                    raise StaleCursor(f"usersnap: the {origin} cursor was refused ({exc})") from exc
        raise AssertionError("unreachable")

    # -- normalize ------------------------------------------------------------------------

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        records = batch.objects(records)
        answered = [answers(r.get("ordered_inputs")) for r in records]
        columns, attributes = split(records, FIELDS)
        batch.extend(
            records,
            **columns,
            category=[_first_label(r.get("labels")) for r in records],
            body=[body for body, _ in answered],
            rating=[rating for _, rating in answered],
            page_url=[client.get("url") if type(client := r.get("client")) is dict else None for r in records],
            attributes=attributes,
        )


# NPS answers for the nps_daily view: of each record, the first ordered_inputs entry by
# `order` whose label mentions NPS (the ordering rule of answers() below; an entry without an
# order comes last), its numeric value. Written with list functions on each row, not unnest +
# a window over the table: a row-wise expression lets a date filter on the view reach the scan
# (the dashboard reads 26 weeks), and it costs a fifth of the window's time (26 weeks of a
# 1M-row warehouse with a 256 MB memory limit: 0.7 s against 3.2-4.5 s). `lambda` needs
# DuckDB 1.3+, within the snapshot's 1.4+ promise (CONTRACT.md section 4).
NPS_ANSWERS = """SELECT collected_date, try_cast(list_sort(nps)[1].value AS DOUBLE) AS score
FROM (
    SELECT f.collected_date,
           list_filter(
               list_transform(
                   CAST(f.attributes -> '$.ordered_inputs' AS JSON[]),
                   lambda e: {'o': coalesce(try_cast(e ->> 'order' AS INTEGER), 2147483647), 'label': e ->> 'label', 'value': e ->> 'value'}),
               lambda e: lower(e.label) LIKE '%nps%') AS nps
    FROM feedback f
    WHERE f.provider = 'usersnap')
WHERE len(nps) > 0"""

SPEC = ProviderSpec(
    name="usersnap",
    asset_name="usersnap_feedback",
    description="Widget feedback from Usersnap projects (comments, ratings, NPS).",
    settings=(
        Setting("USERSNAP_JWT_SECRET", secret=True),  # Settings > REST API (Enterprise/Premium plans)
        Setting("USERSNAP_JWT_KID"),
        Setting("USERSNAP_PROJECT_ID"),
        Setting("USERSNAP_BASE_URL", required=False, default=DEFAULT_BASE_URL, url=True),
    ),
    account="project_id",
    statuses={"open": "open", "in_progress": "in_progress", "done": "resolved"},
    hints={
        400: "Usersnap rejected the filter request; check USERSNAP_PROJECT_ID and the date range",
        401: (
            "Usersnap refused the JWT; check USERSNAP_JWT_SECRET (the secret generated under Settings > REST API) "
            "and USERSNAP_JWT_KID (the JWT ID shown next to it), and that this machine's clock is right"
        ),
        403: "the JWT may not read this project; check USERSNAP_PROJECT_ID and USERSNAP_JWT_KID",
        404: "no such project or endpoint; check USERSNAP_PROJECT_ID and USERSNAP_BASE_URL (it includes /v0.1)",
    },
    provider=UsersnapProvider,
    page_size=PAGE_SIZE,
    nps_answers=NPS_ANSWERS,
    # At most 100 items a page, chained by an id cursor: a long window is read as four
    # created_at ranges at once (each one more request at most: its last, partial page).
    concurrent_windows=4,
)


def _first_label(labels: Any) -> Any:
    """The first label's name: the category (CONTRACT.md)."""
    first = labels[0] if isinstance(labels, list) and labels else None
    return first.get("name") if isinstance(first, dict) else None


def _until_watermark(records: list[Any], since: datetime) -> tuple[list[Any], bool]:
    """Records of an ``updated_at desc`` page up to the first one older than ``since``, and
    whether such a record was seen (the query is then finished)."""
    for position, record in enumerate(records):
        updated = parse_optional_timestamp(record.get("updated_at")) if isinstance(record, dict) else None
        if updated is not None and updated < since:
            return records[:position], True
    return records, False


def answers(inputs: Any) -> tuple[Any, Any]:
    """(comment text, rating value) from ``ordered_inputs`` per CONTRACT.md: the first entry by
    ``order`` whose label contains "comment" (``text_value``, else ``value``), and the ``value``
    of the first whose label contains "rating", "nps" or "score" (the batch makes it numeric)."""
    if not isinstance(inputs, list):
        return None, None
    # Usually every entry is an object with an integer order, already ascending: a stable sort
    # would change nothing, so it is skipped.
    entries = inputs
    previous = None
    try:
        for entry in inputs:
            order = entry["order"]
            if type(order) is not int or (previous is not None and order < previous):
                raise TypeError
            previous = order
    except (TypeError, KeyError, IndexError):
        entries = [e for e in inputs if isinstance(e, dict)]
        entries.sort(key=_order_key)  # stable: entries without a usable order keep list order, last
    body: Any = None
    rating: Any = None
    found_body = found_rating = False
    for entry in entries:
        label = entry.get("label")
        if not isinstance(label, str):
            continue
        lowered = label.lower()
        if not found_body and "comment" in lowered:
            found_body = True
            text = entry.get("text_value")
            body = text if text is not None else entry.get("value")
        if not found_rating and ("rating" in lowered or "nps" in lowered or "score" in lowered):
            found_rating = True
            rating = entry.get("value")
        if found_body and found_rating:
            break
    return body, rating


def _order_key(entry: dict[str, Any]) -> tuple[int, float]:
    order = entry.get("order")
    if isinstance(order, (int, float)) and not isinstance(order, bool) and math.isfinite(order):
        return (0, float(order))
    return (1, 0.0)
