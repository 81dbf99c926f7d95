"""Mapbox Feedback API emulator: ``GET /user-feedback/v1/feedback`` and ``.../feedback/{id}``.

Follows ``shared/providers/mapbox.md`` (the published page plus its "Facts beyond this page"):

* ``access_token`` query parameter on every request. No token or an unknown token: 401; a valid
  token without the ``user-feedback:read`` scope (:data:`NO_SCOPE_TOKEN`): 403. Errors are
  ``{"message": "..."}`` as every Mapbox API sends them.
* ``limit`` 1..1000 (default 100, not documented), ``sort_by`` ``received_at`` (default) |
  ``created_at`` | ``updated_at``, ``order`` ``asc`` (default) | ``desc``; anything else is a 400.
* Repeated array filters ``status``, ``category``, ``feedback_id``, ``trace_id`` (at least one
  value must match), ``search`` (substring of ``feedback``, case-insensitive) and the six
  ``{created,received,updated}_{after,before}`` ISO 8601 bounds. The docs do not say whether the
  bounds are inclusive: this emulator makes them **strict** (``>``/``<``), the pessimistic case a
  client has to survive. A value without a zone is read as UTC.
* Keyset paging on ``(sort key, id)``: ``after=end_cursor`` continues, ``before=start_cursor``
  goes back one page; cursors are standard base64 of compact JSON ``{"id", "timestamp"}`` where
  ``timestamp`` is the record's sort-key value. Envelope ``{has_before, start_cursor, has_after,
  end_cursor, items}``; both cursors are null on an empty page. Unknown parameters are ignored.
* A record whose ``created_at`` is missing (a device that sent no time) is filed under its
  ``received_at`` for sorting and ``created_*`` filters, so the connector sees, and must reject, it.

Served from :meth:`ProviderStore.index` (one per sort key) plus ``bisect``; records inserted
between page requests never shift a page edge.

Accounts: account k's token is ``ACCESS_TOKEN-k`` (same scopes), and a token reads only its own
account's records, by list or by id.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data
from .core import Emulator, account_value, json_response, seek

UTC = timezone.utc
# Realistic, long Mapbox public tokens ("pk." + base64 JSON + "." + signature) so redaction tests
# look for a string that cannot appear by accident.
ACCESS_TOKEN = "pk.eyJ1IjoiZmVlZGJhY2stc2FuZGJveCIsImEiOiJjbHo4c2J4MHIwcTJrMmxxdjl1dDNoN3dkIn0.Xq3vR8mK2pLw9sT4nYb6Zg"
# A valid token of the same account that lacks the user-feedback:read scope (answers 403).
NO_SCOPE_TOKEN = "pk.eyJ1IjoiZmVlZGJhY2stc2FuZGJveCIsImEiOiJjbHo4c2J4OW0xbjRwN3J0cTJ3czV5OGtjIn0.H7dN1cQe5uJ0rVx3kFo8Ww"
TOKEN_SCOPES: dict[str, frozenset[str]] = {
    ACCESS_TOKEN: frozenset({"styles:read", "fonts:read", "user-feedback:read"}),
    NO_SCOPE_TOKEN: frozenset({"styles:read", "fonts:read"}),
}
SCOPE = "user-feedback:read"
ACCOUNT = "sandbox-org"
PATH = "/user-feedback/v1/feedback"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
RATE_LIMIT = 600  # requests per minute, as announced in X-Rate-Limit-Limit on a 429
SORT_FIELDS = ("received_at", "created_at", "updated_at")
STATUSES = ("received", "fixed", "reviewed", "out_of_scope")
# Rarely an item carries a status the docs do not list yet (it maps to a NULL unified status).
UNDOCUMENTED_STATUS = "in_review"
ARRAY_FILTERS = ("status", "category", "feedback_id", "trace_id")
TIME_BOUNDS = tuple(f"{f[:-3]}_{side}" for f in SORT_FIELDS for side in ("after", "before"))
CATEGORIES = ("poi_details", "routing_issue", "incorrect_address", "missing_road", "speed_limit", "traffic_incident", "map_display", "other_cat")
PLACES = (
    ("Financial District, Boston, Massachusetts, United States", -71.05011393295, 42.351484923828),
    ("123 Main St, Anytown, USA", -122.4194, 37.7749),
    ("Alexanderplatz, 10178 Berlin, Germany", 13.41322, 52.52192),
    ("渋谷駅, 東京都渋谷区, 日本", 139.7016, 35.6580),
    ("Rue de Rivoli, 75001 Paris, France", 2.3417, 48.8606),
    ("Avenida Paulista, São Paulo - SP, Brasil", -46.6544, -23.5631),
    ("شارع الشيخ زايد، دبي، الإمارات العربية المتحدة", 55.2708, 25.2048),
)
APPS = (("com.mapbox.dash.app", "0.46.0.1122714.67f83f3.2025.07.25.Handheld.devRelease"), ("com.example.rides", "3.12.0"), ("com.example.fleet", "1.4.2-beta"))


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _epoch_us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _us_to_iso(us: int) -> str:
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return data.iso_z(when, 3 if us % 1000 == 0 else 6)


def _field_us(record: dict[str, Any], field: str) -> int:
    """The record's ``field`` as epoch microseconds, as the API files it (see module docstring)."""
    for name in (field, "received_at", "updated_at"):
        value = record.get(name)
        if isinstance(value, str):
            try:
                return _epoch_us(_parse_time(value))
            except ValueError:
                continue
    return 0


def encode_cursor(record_id: str, timestamp_us: int) -> str:
    return base64.b64encode(orjson.dumps({"id": record_id, "timestamp": _us_to_iso(timestamp_us)})).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(timestamp_us, id)`` of a cursor; ValueError when it is not one of ours."""
    text = cursor.strip().replace("-", "+").replace("_", "/")
    try:
        raw = orjson.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("timestamp"), str):
        raise ValueError("not a cursor")
    return _epoch_us(_parse_time(raw["timestamp"])), raw["id"]


def error(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


class MapboxEmulator(Emulator):
    name = "mapbox"

    def settings(self, base_url: str, account: int = 1) -> dict[str, str]:
        return {"access_token": account_value(ACCESS_TOKEN, account), "base_url": base_url, "account": account_value(ACCOUNT, account)}

    def account_of(self, request: Request) -> int | None:
        token = request.query_params.get("access_token")
        return 1 if token == NO_SCOPE_TOKEN else self.find_account(ACCESS_TOKEN, token)

    # -- data -----------------------------------------------------------------------------

    def generate_day(self, rng: random.Random, day: date, count: int, now: datetime, account: int = 1) -> list[dict[str, Any]]:
        records = []
        now_ms = now.replace(microsecond=(now.microsecond // 1000) * 1000)
        for i, when in enumerate(data.day_times(rng, day, count, now)):
            # The device stamps created_at; Mapbox stamps received_at a few seconds later (much
            # later when the device was offline), never in the future.
            lag = timedelta(seconds=rng.uniform(0.2, 20.0) if rng.random() < 0.95 else rng.uniform(600, 6 * 3600))
            received = min(now_ms, when + lag)
            received = received.replace(microsecond=(received.microsecond // 1000) * 1000)
            received = max(received, when)
            roll = rng.random()
            status = "received" if roll < 0.55 else "reviewed" if roll < 0.75 else "fixed" if roll < 0.9 else "out_of_scope" if roll < 0.98 else UNDOCUMENTED_STATUS
            if status != "received" or rng.random() < 0.1:
                updated = data.later(rng, received, now_ms)
                updated = max(received, updated.replace(microsecond=(updated.microsecond // 1000) * 1000))
            else:
                updated = received
            place, lon, lat = rng.choice(PLACES)
            record: dict[str, Any] = {
                "id": data.uuid7(rng, received),
                "status": status,
                "category": rng.choice(CATEGORIES),
                "feedback": data.comment(rng) if rng.random() < 0.97 else None,
            }
            loc_roll = rng.random()
            if loc_roll < 0.9:
                record["location"] = {
                    "place_name": place if rng.random() < 0.9 else None,
                    "lon": round(lon + rng.uniform(-0.01, 0.01), 9),
                    "lat": round(lat + rng.uniform(-0.01, 0.01), 9),
                }
            elif loc_roll < 0.95:
                record["location"] = None
            trace_roll = rng.random()
            if trace_roll < 0.7:
                record["trace_id"] = data.uuid4(rng)
            elif trace_roll < 0.8:
                record["trace_id"] = None
            meta_roll = rng.random()
            if meta_roll < 0.9:
                metadata: dict[str, Any] = {}
                if rng.random() < 0.5:
                    name, version = rng.choice(APPS)
                    metadata["name"] = name
                    metadata["version"] = version
                user_roll = rng.random()
                if user_roll < 0.75:
                    metadata["userId"] = data.uuid4(rng) if rng.random() < 0.5 else data.user_id(rng)
                elif user_roll < 0.85:
                    metadata["userId"] = None
                if rng.random() < 0.7:
                    metadata["appVersion"] = f"{rng.randrange(1, 4)}.{rng.randrange(10)}.{rng.randrange(10)}"
                if rng.random() < 0.4:
                    metadata["sessionId"] = data.uuid4(rng) if rng.random() < 0.5 else None
                record["metadata"] = metadata
            elif meta_roll < 0.95:
                record["metadata"] = None
            record["received_at"] = data.iso_z(received)
            record["created_at"] = data.iso_z(when)
            record["updated_at"] = data.iso_z(updated)
            # Rare records the connector must reject (data.bad_record_day); the id-less ones five
            # days older than the time-less ones, so a 30-day dataset has one of each.
            if i == 0 and data.bad_record_day(day, self.state.last_day(now)) is not None:
                record["created_at"] = None  # the device sent no time
            if i == 0 and data.bad_record_day(day, self.state.last_day(now), older_by=5) is not None:
                record["id"] = ""  # an item without an id
            records.append(record)
        return records

    def touch(self, record: dict[str, Any], now: datetime) -> None:
        record["updated_at"] = data.iso_z(now)

    def bad_envelope(self) -> Any:
        # A GeoJSON body, as other Mapbox endpoints answer: a plausible wrong envelope.
        return {"type": "FeatureCollection", "features": []}

    # -- API ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route(PATH, self.endpoint(self.list_feedback), methods=["GET"]),
            Route(PATH + "/{feedback_id}", self.endpoint(self.get_feedback), methods=["GET"]),
        ]

    async def guard(self, request: Request) -> Response | None:
        response = await super().guard(request)
        if response is not None and response.status_code == 429:
            # Mapbox's shape of a rate-limit answer: {"message"} plus X-Rate-Limit-* headers.
            reset = int(datetime.now(UTC).timestamp()) + 60
            headers = {"X-Rate-Limit-Interval": "60", "X-Rate-Limit-Limit": str(RATE_LIMIT), "X-Rate-Limit-Reset": str(reset)}
            if "retry-after" in response.headers:
                headers["Retry-After"] = response.headers["retry-after"]
            return json_response({"message": "Too Many Requests"}, 429, headers)
        return response

    def _auth(self, request: Request) -> Response | None:
        token = request.query_params.get("access_token")
        if not token:
            return error(401, "Not Authorized - No Token")
        # Account k's token carries account 1's scopes.
        scopes = TOKEN_SCOPES.get(ACCESS_TOKEN if self.find_account(ACCESS_TOKEN, token) else token)
        if scopes is None:
            return error(401, "Not Authorized - Invalid Token")
        if SCOPE not in scopes:
            return error(403, f"This endpoint requires a token with {SCOPE} scope")
        return None

    async def get_feedback(self, request: Request) -> Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        record = self.store.get(request.path_params["feedback_id"])
        if record is None:
            return error(404, "Feedback item not found")
        return json_response(record)

    async def list_feedback(self, request: Request) -> Response:
        refused = self._auth(request)
        if refused is not None:
            return refused
        params = request.query_params
        limit = DEFAULT_LIMIT
        if "limit" in params:
            try:
                limit = int(params["limit"])
            except ValueError:
                return error(400, "limit must be an integer")
            if not 1 <= limit <= MAX_LIMIT:
                return error(400, f"limit must be between 1 and {MAX_LIMIT}")
        sort_by = params.get("sort_by", "received_at")
        if sort_by not in SORT_FIELDS:
            return error(400, "sort_by must be one of: " + ", ".join(SORT_FIELDS))
        order = params.get("order", "asc")
        if order not in ("asc", "desc"):
            return error(400, "order must be one of: asc, desc")
        statuses = params.getlist("status")
        for value in statuses:
            if value not in STATUSES:
                return error(400, "status must be one of: " + ", ".join(STATUSES))
        bounds: dict[str, int] = {}
        for name in TIME_BOUNDS:
            if name in params:
                try:
                    bounds[name] = _epoch_us(_parse_time(params[name]))
                except (ValueError, OverflowError):
                    return error(400, f"{name} must be an ISO 8601 date-time (YYYY-MM-DDTHH:mm:ss.SSSZ)")
        if params.get("after") and params.get("before"):
            return error(400, "after and before cannot be used together")
        cursor: tuple[int, str] | None = None
        cursor_kind = "after" if params.get("after") else "before" if params.get("before") else None
        if cursor_kind:
            try:
                cursor = decode_cursor(params[cursor_kind])
            except (ValueError, OverflowError):
                return error(400, "Invalid cursor")

        match = self._matcher(params, statuses, bounds, sort_by)
        body = self._page(sort_by, order == "desc", bounds, match, cursor_kind, cursor, limit)
        return json_response(body)

    # -- paging ---------------------------------------------------------------------------

    def _times(self, field: str) -> dict[str, int]:
        """id -> ``field`` in epoch microseconds, rebuilt with the store's indexes."""
        store = self.store
        return store.derived(f"times:{field}", lambda: {rid: key for key, rid in store.index(field, lambda r: _field_us(r, field))})

    def _matcher(self, params: Any, statuses: list[str], bounds: dict[str, int], sort_by: str) -> Callable[[str, dict[str, Any]], bool]:
        wanted = {name: set(params.getlist(name)) for name in ARRAY_FILTERS if params.getlist(name)}
        if statuses:
            wanted["status"] = set(statuses)
        search = (params.get("search") or "").casefold()
        # Bounds on the sort key are applied by bisect; the others per record.
        others = [(self._times(f"{name.rsplit('_', 1)[0]}_at"), name.endswith("_after"), value) for name, value in bounds.items() if not name.startswith(sort_by[:-3] + "_")]

        def match(rid: str, record: dict[str, Any]) -> bool:
            for name, values in wanted.items():
                value = record.get("id" if name == "feedback_id" else name)
                if value is None or str(value) not in values:
                    return False
            if search:
                text = record.get("feedback")
                if not isinstance(text, str) or search not in text.casefold():
                    return False
            for times, is_after, value in others:
                at = times.get(rid)
                if at is None or (at <= value if is_after else at >= value):
                    return False
            return True

        return match

    def _page(self, sort_by: str, descending: bool, bounds: dict[str, int], match: Callable[[str, dict[str, Any]], bool], cursor_kind: str | None, cursor: tuple[int, str] | None, limit: int) -> dict[str, Any]:
        store = self.store
        with store.lock:
            index = store.index(sort_by, lambda r: _field_us(r, sort_by))
            records = store.records
        prefix = sort_by[:-3]
        # Strict bounds on the sort key: (after, before) -> index positions [lo, hi).
        lo = seek(index, (bounds[prefix + "_after"] + 1,), inclusive=True) if prefix + "_after" in bounds else 0
        hi = seek(index, (bounds[prefix + "_before"],), inclusive=True) if prefix + "_before" in bounds else len(index)

        def scan(start: int, forward: bool, want: int) -> list[str]:
            found: list[str] = []
            positions = range(max(start, lo), hi) if forward else range(min(start, hi - 1), lo - 1, -1)
            for pos in positions:
                rid = index[pos][1]
                record = records.get(rid)
                if record is not None and match(rid, record):
                    found.append(rid)
                    if len(found) == want:
                        break
            return found

        # In index (ascending) terms: "next" is the reading direction of the page.
        next_forward = not descending
        if cursor is None:
            first = lo if next_forward else hi - 1
            ids = scan(first, next_forward, limit + 1)
            has_next, ids = len(ids) > limit, ids[:limit]
            has_prev = False
        else:
            above = seek(index, cursor, inclusive=False)  # first entry > cursor
            below = seek(index, cursor, inclusive=True) - 1  # last entry < cursor
            # ``after`` reads on in the page direction, ``before`` reads back against it.
            reading_forward = next_forward if cursor_kind == "after" else not next_forward
            start = above if reading_forward else below
            ids = scan(start, reading_forward, limit + 1)
            more, ids = len(ids) > limit, ids[:limit]
            # Anything on the other side of the cursor (the cursor's own record included)?
            behind = bool(scan(below + 1 if not reading_forward else above - 1, not reading_forward, 1))
            if cursor_kind == "after":
                has_next, has_prev = more, behind
            else:
                ids.reverse()
                has_next, has_prev = behind, more
        items = [records[rid] for rid in ids if rid in records]
        key_of = self._times(sort_by)

        def cursor_of(record: dict[str, Any]) -> str:
            rid = str(record["id"])
            return encode_cursor(rid, key_of.get(rid, _field_us(record, sort_by)))

        return {
            "has_before": has_prev,
            "start_cursor": cursor_of(items[0]) if items else None,
            "has_after": has_next,
            "end_cursor": cursor_of(items[-1]) if items else None,
            "items": items,
        }


EMULATOR = MapboxEmulator
