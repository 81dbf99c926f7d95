"""Usersnap platform API v0.1 emulator: project feedback list, filter and counts.

Follows ``shared/providers/usersnap.md`` and the vendored ``usersnap-v0.1.openapi.json``
(mounted under ``/v0.1``, so ``USERSNAP_BASE_URL`` is ``{sandbox}/v0.1``):

* ``GET  /v0.1/projects/{project_id}/feedbacks``: ``updated_at`` descending, ``limit`` 1..100
  (default 10), ``after`` / ``before`` cursors = the ``feedback_id`` of the last / first item of
  the current page.
* ``POST /v0.1/projects/{project_id}/feedbacks/filter``: a JSON body is required (``{}`` is
  fine, no body is a 400); ``limit`` and ``after`` (and ``before``) are query parameters, as the
  response's ``next.query_string`` suggests; body ``{"order_by": {"direction", "order_by_type"},
  "query": [{"filter_type", "operator", "value"}]}``. ``created_at``, ``state``, ``email``,
  ``assignee`` and ``feedback_number`` filters are applied with every operator that makes sense
  for them; ``nps``/``one_to_five``/``thumb`` compare the record's numeric rating answer.
  ``order_by_type`` ``rating`` orders by that answer; ``likes`` (not in the record) orders by id.
* ``POST .../feedbacks/filter/count`` and ``GET .../feedbacks/count``: ``{"total_count"}``.
* Envelope ``{"status": true, "data": {"has_more", "count", "feedbacks", "next"}}``; ``count`` is
  the number of items in the page (the published example is ambiguous; counting the whole
  project per page would make every request O(n)); ``next`` is null on an empty page.
* Errors ``{"status": false, "msg", "errortype", "errordata"}``: ``WRONG_AUTH`` (401: missing or
  malformed bearer token, ``alg`` other than HS256, ``kid`` not the configured JWT id, bad
  signature, no/expired ``exp``, ``exp`` more than 10 minutes ahead, ``iat`` in the future),
  ``PROJECT_NOT_FOUND`` (404), ``INVALID_BODY`` / ``VALIDATION_ERROR`` / ``INVALID_CURSOR`` (400).
  The cursor is an id: a cursor whose feedback no longer exists is refused (400).
* Paging is keyset on ``(sort key, feedback_id)``: the cursor record's *current* sort key is
  looked up, so a cursor over ``created_at`` is stable, and records inserted while paging never
  shift a page edge.

Data quirks served on purpose: ``ordered_inputs`` not listed in ``order`` order, ratings as
numbers, numeric strings or ``"N/A"``, comments in ``text_value`` or only in ``value``, nulls in
optional fields, a rare unknown ``status_type``, and one record per 30 days (``data.bad_record_day``) whose
``created_at`` is an epoch number (a legacy import) that the connector must reject.

Accounts: account k signs with ``JWT_KID-k`` / ``JWT_SECRET-k`` and owns project
``PROJECT_ID-k``; a token of one account gets ``PROJECT_NOT_FOUND`` for another's project.
"""

from __future__ import annotations

import bisect
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data
from .core import Emulator, account_value, json_response

UTC = timezone.utc
PROJECT_ID = "3f6d2c1e-8a4b-4c7d-9e21-5b0a7f3c9d18"
JWT_KID = "b7e4a2d9-1c3f-4e8a-9d6b-sandbox-jwt-id"
JWT_SECRET = "usersnap-sandbox-jwt-secret-4c9e1f7a2b8d6e3f0a5c7b19d2e84f6a03c5"
API = "/v0.1"
MAX_TOKEN_LIFETIME = 600  # seconds: tokens whose exp lies further ahead are refused
CLOCK_LEEWAY = 5
DEFAULT_LIMIT = 10
MAX_LIMIT = 100

FILTER_TYPES = ("assignee", "created_at", "email", "feedback_number", "nps", "one_to_five", "state", "thumb")
OPERATORS = ("eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "like", "ilike")
ORDER_TYPES = ("created_at", "rating", "updated_at", "likes")
STATUSES = ("open", "in_progress", "done")
UNKNOWN_STATUS = "waiting_for_customer"
LABELS = (
    ("bug", "Bug", "#f71007"),
    ("feature-request", "Feature request", "#2f80ed"),
    ("question", "Question", "#f2c94c"),
    ("ux", "UX", None),
    ("praise", "Lob & Dank", "#27ae60"),
)
_LABEL_IDS = {ident: f"5392d1a5-925a-49a1-9168-{i:012d}" for i, (ident, _, _) in enumerate(LABELS)}
CITIES = (("Linz", "Austria"), ("Berlin", "Germany"), ("Tokyo", "Japan"), ("São Paulo", "Brazil"), (None, None))
BROWSERS = (
    ("Firefox 128 (macOS Sonoma)", "Macintosh", "Firefox", "128.0"),
    ("Chrome 126 (Windows 11)", "Windows", "Chrome", "126.0.6478"),
    ("Safari 17 (iOS 17)", "iPhone", "Mobile Safari", "17.5"),
)


# -- helpers ------------------------------------------------------------------------------------


def _ts(value: Any) -> datetime:
    """A served timestamp (ISO text, or an epoch number on legacy records) as an aware datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _epoch_us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_UNUSABLE = -(1 << 62)  # sort key of a timestamp that cannot be read (sorts first)


def _time_key(value: Any) -> int:
    try:
        return _epoch_us(_ts(value))
    except (TypeError, ValueError, OverflowError, OSError):
        return _UNUSABLE


def _order_of(entry: dict[str, Any]) -> int:
    order = entry.get("order")
    return order if isinstance(order, int) and not isinstance(order, bool) else 1 << 30


def rating_of(record: dict[str, Any]) -> float | None:
    """The record's numeric rating answer (first input labelled rating/NPS/score), if any."""
    inputs = record.get("ordered_inputs") or []
    if not isinstance(inputs, list):
        return None
    for entry in sorted((e for e in inputs if isinstance(e, dict)), key=_order_of):
        label = str(entry.get("label") or "").lower()
        if "rating" in label or "nps" in label or "score" in label:
            try:
                number = float(entry.get("value"))
            except (TypeError, ValueError):
                return None
            return number if math.isfinite(number) else None
    return None


def error(status: int, msg: str, errortype: str, errordata: dict[str, Any] | None = None) -> Response:
    return json_response({"status": False, "msg": msg, "errortype": errortype, "errordata": errordata or {}}, status)


def unauthorized(reason: str) -> Response:
    # The published UnauthorizedError example; the reason helps an operator and holds no secret.
    return error(401, "Authorization failed", "WRONG_AUTH", {"reason": reason})


class InvalidRequest(Exception):
    def __init__(self, msg: str, errortype: str = "VALIDATION_ERROR", **errordata: Any):
        super().__init__(msg)
        self.msg = msg
        self.errortype = errortype
        self.errordata = errordata

    def response(self) -> Response:
        return error(400, self.msg, self.errortype, self.errordata)


def _like(pattern: str, insensitive: bool) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if insensitive else 0))


# -- filters ------------------------------------------------------------------------------------

Predicate = Callable[[dict[str, Any]], bool]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [v.strip() for v in value.split(",")]
    return [value]


def _compare(op: str, actual: Any, wanted: Any) -> bool:
    """SQL-like comparison: NULL never matches (except neq / not_in, which also exclude it)."""
    if actual is None:
        return False
    if op == "eq":
        return actual == wanted
    if op == "neq":
        return actual != wanted
    if op == "in":
        return actual in wanted
    if op == "not_in":
        return actual not in wanted
    if op == "gt":
        return actual > wanted
    if op == "gte":
        return actual >= wanted
    if op == "lt":
        return actual < wanted
    if op == "lte":
        return actual <= wanted
    if op in ("like", "ilike"):
        return isinstance(actual, str) and wanted.fullmatch(actual) is not None
    return False


def build_filter(item: Any, position: int, created_key: Callable[[dict[str, Any]], int] | None = None) -> tuple[Predicate, tuple[str, str, Any] | None]:
    """A predicate for one ``query`` item, plus ``(field, op, value)`` when it bounds created_at."""
    if not isinstance(item, dict):
        raise InvalidRequest("each query item must be an object", position=position)
    ftype, op, raw = item.get("filter_type"), item.get("operator"), item.get("value")
    if ftype not in FILTER_TYPES:
        raise InvalidRequest(f"unknown filter_type {ftype!r}", filter_type=ftype, allowed=list(FILTER_TYPES))
    if op not in OPERATORS:
        raise InvalidRequest(f"unknown operator {op!r}", operator=op, allowed=list(OPERATORS))
    if raw is None:
        raise InvalidRequest(f"filter {ftype} needs a value", filter_type=ftype)
    multi = op in ("in", "not_in")
    textual = op in ("like", "ilike")

    if ftype == "created_at":
        if textual:
            raise InvalidRequest("like/ilike cannot be used with created_at", filter_type=ftype, operator=op)
        try:
            values = [_epoch_us(_ts(v)) for v in _as_list(raw)] if multi else _epoch_us(_ts(raw))
        except (TypeError, ValueError, OverflowError, OSError):
            raise InvalidRequest("created_at filter value must be an ISO 8601 date-time", filter_type=ftype, value=str(raw)) from None

        key_of = created_key or (lambda r: _time_key(r.get("created_at")))

        def created(record: dict[str, Any]) -> bool:
            actual = key_of(record)
            return actual != _UNUSABLE and _compare(op, actual, values)

        return created, ("created_at", op, values)

    if ftype in ("feedback_number", "nps", "one_to_five", "thumb"):
        if textual:
            raise InvalidRequest(f"like/ilike cannot be used with {ftype}", filter_type=ftype, operator=op)
        try:
            number = [float(v) for v in _as_list(raw)] if multi else float(raw)
        except (TypeError, ValueError):
            raise InvalidRequest(f"{ftype} filter value must be a number", filter_type=ftype, value=str(raw)) from None
        if ftype == "feedback_number":
            return (lambda r: _compare(op, r.get("feedback_number"), number)), None
        return (lambda r: _compare(op, rating_of(r), number)), None

    field = {"state": "status_type", "email": "email", "assignee": "assignee_id"}[ftype]
    if textual:
        if not isinstance(raw, str):
            raise InvalidRequest(f"{op} needs a string pattern", filter_type=ftype)
        wanted: Any = _like(raw, op == "ilike")
    elif multi:
        wanted = [str(v) for v in _as_list(raw)]
    else:
        wanted = str(raw)
    return (lambda r: _compare(op, r.get(field), wanted)), None


# -- emulator -----------------------------------------------------------------------------------


class UsersnapEmulator(Emulator):
    name = "usersnap"
    id_field = "feedback_id"

    def settings(self, base_url: str, account: int = 1) -> dict[str, str]:
        return {
            "jwt_secret": account_value(JWT_SECRET, account),
            "jwt_kid": account_value(JWT_KID, account),
            "project_id": account_value(PROJECT_ID, account),
            "base_url": base_url.rstrip("/") + API,
        }

    def account_of(self, request: Request) -> int | None:
        # The token's kid (the JWT ID of one account's API key) names the account.
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            kid = jwt.get_unverified_header(token.strip()).get("kid")
        except jwt.PyJWTError:
            return None
        return self.find_account(JWT_KID, kid) if isinstance(kid, str) else None

    # -- data -----------------------------------------------------------------------------

    def generate_day(self, rng: random.Random, day: date, count: int, now: datetime, account: int = 1) -> list[dict[str, Any]]:
        records = []
        base_number = (day.toordinal() - date(2020, 1, 1).toordinal()) * 10_000
        for i, when in enumerate(data.day_times(rng, day, count, now)):
            fid = data.uuid4(rng)
            updated = data.later(rng, when, now) if rng.random() < 0.7 else when
            roll = rng.random()
            status = UNKNOWN_STATUS if roll < 0.02 else STATUSES[0] if roll < 0.55 else STATUSES[1] if roll < 0.75 else STATUSES[2]
            record: dict[str, Any] = {
                "feedback_id": fid,
                "feedback_number": base_number + i + 1,
                "public_link": f"https://app.usersnap.com/l/feedback/{fid}",
                "project_id": account_value(PROJECT_ID, account),
                "created_at": data.iso_z(when, 6),
                "updated_at": data.iso_z(updated, 6),
                "status_type": status,
                "priority": rng.choice(("low", "medium", "high", "urgent", None)),
                "assignee_id": data.uuid4(rng) if rng.random() < 0.5 else None,
                "is_demo": rng.random() < 0.03,
            }
            roll = rng.random()
            if roll < 0.6:
                record["email"] = data.email(rng)
            elif roll < 0.9:
                record["email"] = None
            record["client"] = self._client(rng)
            record["custom_data"] = rng.choice(({}, {"plan": "pro", "release": "2.4.1"}, {"System": "Staging", "Release Version": "0.2"}, None))
            record["screenshot"] = (
                {"annotated_image_url": f"https://resources.usersnap.com/screens/{fid}.png", "comments": [{"label": "1", "comment": data.comment(rng)}] if rng.random() < 0.3 else []}
                if rng.random() < 0.6
                else None
            )
            record["screen_recording"] = {"file_resource_url": f"https://resources.usersnap.com/rec/{fid}.webm", "mime_type": "video/webm"} if rng.random() < 0.1 else None
            record["ordered_inputs"] = self._inputs(rng)
            picks = rng.sample(LABELS, k=rng.choice((0, 0, 1, 1, 2)))
            record["labels"] = [{"company_label_id": _LABEL_IDS[ident], "identifier": ident, "name": name, "color": color} for ident, name, color in picks]
            if data.bad_record_day(day, self.state.last_day(now)) is not None and i == count // 2:
                # A legacy import whose created_at is an epoch number: unusable, the connector rejects it.
                record["created_at"] = round(when.timestamp(), 3)
            records.append(record)
        return records

    @staticmethod
    def _client(rng: random.Random) -> dict[str, Any] | None:
        if rng.random() < 0.05:
            return None
        city, country = rng.choice(CITIES)
        full, os_name, browser, version = rng.choice(BROWSERS)
        client: dict[str, Any] = {
            "client_type": "browser",
            "city_name": city,
            "country_name": country,
            "screen_width": rng.choice((1920, 1728, 390)),
            "screen_height": rng.choice((1080, 1117, 844)),
            "browser_full_name": full,
            "browser_os": os_name,
            "browser_name": browser,
            "browser_version": version,
        }
        roll = rng.random()
        if roll < 0.85:
            client["url"] = "https://app.example.com" + rng.choice(data.PAGES) + rng.choice(("", "?tab=billing&x=%20y"))
        elif roll < 0.95:
            client["url"] = None
        return client

    @staticmethod
    def _inputs(rng: random.Random) -> list[dict[str, Any]] | None:
        def entry(order: int, label: str, *, text: Any = None, value: Any = None, boolean: Any = None) -> dict[str, Any]:
            return {"order": order, "label": label, "boolean_value": boolean, "text_value": text, "value": value}

        def rating(top: int) -> Any:
            roll = rng.random()
            number = rng.randrange(0 if top == 10 else 1, top + 1)
            if roll < 0.6:
                return number
            if roll < 0.95:
                return str(number)  # the API often sends the answer as a numeric string
            return "N/A"

        text = data.comment(rng)
        kind = rng.choice(("bug", "bug", "nps", "rating", "survey", "thumbs", "empty"))
        if kind == "bug":
            inputs = [entry(0, "Comment", text=text, value=text)]
            if rng.random() < 0.3:
                inputs.append(entry(1, "Severity", text="major", value="major"))
            return inputs
        if kind == "nps":
            return [
                entry(0, "How likely are you to recommend us? (NPS)", value=rating(10)),
                entry(1, "Additional comments", text=text, value=text),
            ]
        if kind == "rating":
            # The comment only in ``value`` (text_value null): connectors must fall back to it.
            return [entry(0, "Rating", value=rating(5)), entry(1, "Comment", value=text)]
        if kind == "survey":
            # Listed out of order: the first comment *by order* is "Your comment" (order 1).
            return [
                entry(2, "Comment (optional)", text="second comment field", value="second comment field"),
                entry(1, "Your COMMENT", text=text, value=text),
                entry(0, "Satisfaction score", value=rating(5)),
            ]
        if kind == "thumbs":
            up = rng.random() < 0.7
            return [entry(0, "Was this helpful? (thumbs rating)", value="1" if up else "-1", boolean=up), entry(1, "Comment", text=text, value=text)]
        return rng.choice(([], None))

    def touch(self, record: dict[str, Any], now: datetime) -> None:
        record["updated_at"] = data.iso_z(now, 6)

    def bad_envelope(self) -> Any:
        return {"status": True, "data": {"items": [], "total": 0}}

    # -- indexes --------------------------------------------------------------------------

    def _index(self, order_by: str) -> list[tuple[Any, str]]:
        if order_by == "created_at":
            return self.store.index("created_at", lambda r: _time_key(r.get("created_at")))
        if order_by == "updated_at":
            return self.store.index("updated_at", lambda r: _time_key(r.get("updated_at")))
        if order_by == "rating":
            return self.store.index("rating", lambda r: (lambda v: -1.0 if v is None else v)(rating_of(r)))
        return self.store.index("likes", lambda r: 0)  # records carry no likes: id order

    def _sort_key(self, order_by: str, record: dict[str, Any]) -> Any:
        if order_by in ("created_at", "updated_at"):
            return _time_key(record.get(order_by))
        if order_by == "rating":
            value = rating_of(record)
            return -1.0 if value is None else value
        return 0

    # -- API ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        base = f"{API}/projects/{{project_id}}/feedbacks"
        return [
            Route(base, self._api(self.list_feedbacks), methods=["GET"]),
            Route(f"{base}/count", self._api(self.count_feedbacks), methods=["GET"]),
            Route(f"{base}/filter", self._api(self.filter_feedbacks), methods=["POST"]),
            Route(f"{base}/filter/count", self._api(self.filter_count), methods=["POST"]),
        ]

    def _api(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Any]:
        """``handler`` as an endpoint behind what every Usersnap endpoint checks first (the
        bearer token, then the project in the path); an :class:`InvalidRequest` it raises is
        answered with its error envelope."""

        async def checked(request: Request) -> Response:
            refused = self.authorize(request) or self._project(request)
            if refused:
                return refused
            try:
                return await handler(request)
            except InvalidRequest as bad:
                return bad.response()

        return self.endpoint(checked)

    def authorize(self, request: Request) -> Response | None:
        """Verify the bearer JWT as the platform does; None when it is acceptable."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return unauthorized("missing bearer token")
        token = token.strip()
        try:
            head = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return unauthorized("malformed token")
        if head.get("alg") != "HS256":
            return unauthorized("only HS256 is accepted")
        account = self.account_of(request)
        if account is None:
            return unauthorized("unknown kid (JWT ID)")
        try:
            claims = jwt.decode(token, account_value(JWT_SECRET, account), algorithms=["HS256"], options={"require": ["exp"]}, leeway=CLOCK_LEEWAY)
        except jwt.ExpiredSignatureError:
            return unauthorized("token expired")
        except jwt.InvalidSignatureError:
            return unauthorized("signature verification failed")
        except jwt.MissingRequiredClaimError:
            return unauthorized("token has no exp claim")
        except jwt.ImmatureSignatureError:
            return unauthorized("token issued in the future")
        except jwt.PyJWTError:
            return unauthorized("invalid token")
        if claims["exp"] > time.time() + MAX_TOKEN_LIFETIME + CLOCK_LEEWAY:
            return unauthorized("token lifetime too long (exp at most 10 minutes ahead)")
        return None

    def _project(self, request: Request) -> Response | None:
        project = request.path_params["project_id"]
        if project != account_value(PROJECT_ID, self.account):
            return error(404, "Project does not exist", "PROJECT_NOT_FOUND", {"project_id": project})
        return None

    @staticmethod
    def _limit(request: Request) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return DEFAULT_LIMIT
        try:
            limit = int(raw)
        except ValueError:
            raise InvalidRequest("limit must be an integer between 1 and 100", field="limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest("limit must be an integer between 1 and 100", field="limit")
        return limit

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            raise InvalidRequest("a JSON body is required (send {} for no filter)", "INVALID_BODY")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("the request body is not valid JSON", "INVALID_BODY") from None
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object", "INVALID_BODY")
        request.state.log_body = body  # filters only: no secret travels in the body
        return body

    @staticmethod
    def _order(body: dict[str, Any]) -> tuple[str, bool]:
        order = body.get("order_by")
        if order is None:
            return "updated_at", True
        if not isinstance(order, dict):
            raise InvalidRequest("order_by must be an object", field="order_by")
        order_type = order.get("order_by_type", "updated_at")
        direction = order.get("direction", "desc")
        if order_type not in ORDER_TYPES:
            raise InvalidRequest(f"unknown order_by_type {order_type!r}", field="order_by.order_by_type", allowed=list(ORDER_TYPES))
        if direction not in ("asc", "desc"):
            raise InvalidRequest(f"unknown direction {direction!r}", field="order_by.direction", allowed=["asc", "desc"])
        return order_type, direction == "desc"

    def _created_key(self) -> Callable[[dict[str, Any]], int]:
        """created_at sort keys from the (cached) index, so filters never re-parse timestamps."""
        keys = self.store.derived("created_keys", lambda: {rid: key for key, rid in self._index("created_at")})

        def created_key(record: dict[str, Any]) -> int:
            key = keys.get(record.get("feedback_id"))  # type: ignore[arg-type]
            return key if key is not None else _time_key(record.get("created_at"))

        return created_key

    def _filters(self, body: dict[str, Any]) -> tuple[list[Predicate], list[tuple[str, str, Any]]]:
        query = body.get("query", [])
        if query is None:
            query = []
        if not isinstance(query, list):
            raise InvalidRequest("query must be a list of filters", field="query")
        predicates, bounds = [], []
        created_key = self._created_key() if query else None
        for position, item in enumerate(query):
            predicate, bound = build_filter(item, position, created_key)
            predicates.append(predicate)
            if bound:
                bounds.append(bound)
        return predicates, bounds

    async def list_feedbacks(self, request: Request) -> Response:
        return self._page(request, "updated_at", True, [], [], self._limit(request))

    async def count_feedbacks(self, request: Request) -> Response:
        return json_response({"status": True, "data": {"total_count": len(self.store.records)}})

    async def filter_feedbacks(self, request: Request) -> Response:
        body = await self._body(request)
        limit = self._limit(request)
        order_by, desc = self._order(body)
        predicates, bounds = self._filters(body)
        return self._page(request, order_by, desc, predicates, bounds, limit)

    async def filter_count(self, request: Request) -> Response:
        body = await self._body(request)
        self._order(body)
        predicates, _ = self._filters(body)
        records = list(self.store.records.values())
        total = sum(1 for r in records if all(p(r) for p in predicates))
        return json_response({"status": True, "data": {"total_count": total}})

    # -- paging ---------------------------------------------------------------------------

    def _page(self, request: Request, order_by: str, desc: bool, predicates: list[Predicate], bounds: list[tuple[str, str, Any]], limit: int) -> Response:
        params = request.query_params
        after, before = params.get("after"), params.get("before")
        index = self._index(order_by)
        records = self.store.records
        n = len(index)

        def cursor_position(rid: str, name: str) -> tuple[Any, str]:
            record = records.get(rid)
            if record is None:
                raise InvalidRequest(f"{name} cursor does not match any feedback of this project", "INVALID_CURSOR", **{name: rid})
            return (self._sort_key(order_by, record), rid)

        # Positions in the ascending index; a descending walk goes from high to low.
        lo_key, hi_key = self._created_range(order_by, bounds)
        if after:
            key = cursor_position(after, "after")
            start = bisect.bisect_left(index, key) - 1 if desc else bisect.bisect_right(index, key)
        elif desc:
            start = (bisect.bisect_left(index, (hi_key + 1, "")) if hi_key is not None else n) - 1
        else:
            start = bisect.bisect_left(index, (lo_key, "")) if lo_key is not None else 0
        step = -1 if desc else 1
        if before:
            # The ``limit`` items immediately preceding the cursor, served in the same order.
            key = cursor_position(before, "before")
            pos = bisect.bisect_right(index, key) if desc else bisect.bisect_left(index, key) - 1
            back: list[dict[str, Any]] = []
            while 0 <= pos < n and len(back) < limit:
                record = records.get(index[pos][1])
                if record is not None and all(p(record) for p in predicates):
                    back.append(record)
                pos += -step
            page, has_more = back[::-1], True
        else:
            page, has_more = [], False
            pos = start
            while 0 <= pos < n:
                sort_key = index[pos][0]
                if order_by == "created_at" and ((desc and lo_key is not None and sort_key < lo_key) or (not desc and hi_key is not None and sort_key > hi_key)):
                    break  # past the created_at range: nothing further can match
                record = records.get(index[pos][1])
                if record is not None and all(p(record) for p in predicates):
                    if len(page) == limit:
                        has_more = True
                        break
                    page.append(record)
                pos += step
        body: dict[str, Any] = {"has_more": has_more, "count": len(page), "feedbacks": page, "next": None}
        if page:
            last = page[-1]["feedback_id"]
            body["next"] = {"query_string": urlencode({"limit": limit, "after": last}), "limit": limit, "after": last}
            first = page[0]["feedback_id"]
            body["previous"] = {"query_string": urlencode({"limit": limit, "before": first}), "limit": limit, "before": first}
        return json_response({"status": True, "data": body})

    @staticmethod
    def _created_range(order_by: str, bounds: list[tuple[str, str, Any]]) -> tuple[int | None, int | None]:
        """Inclusive epoch-us bounds implied by created_at filters (only used to narrow the walk
        over the created_at index; every filter is still applied to each record)."""
        if order_by != "created_at":
            return None, None
        lo: int | None = None
        hi: int | None = None
        for _, op, value in bounds:
            if op in ("gt", "gte", "eq"):
                lo = value if lo is None else max(lo, value)
            if op in ("lt", "lte", "eq"):
                hi = value if hi is None else min(hi, value)
        return lo, hi


EMULATOR = UsersnapEmulator
