"""Formbricks Hub emulator: ``GET /v1/feedback-records`` (keyset-cursor release).

Follows ``shared/providers/formbricks-hub.md`` and the vendored Hub OpenAPI file: Bearer key,
``tenant_id`` required, NULL bytes refused, ``limit`` 1..1000 (default 100), ``since``/``until``
inclusive on ``collected_at`` within 1970-01-01..2080-12-31, order ``collected_at DESC, id ASC``,
cursor = URL-safe base64 of ``{"t": <collected_at RFC 3339 nano>, "i": <id>}``, ``next_cursor``
only when another row exists, RFC 9457 ``application/problem+json`` errors, unknown parameters
ignored. Newer releases' ``sort=updated_at&order=asc&updated_since=`` is served when
``state.hub_supports_updated_sort`` is on (and silently ignored otherwise, as an older Hub does).
Accounts: account k is tenant ``TENANT-k`` of the same Hub, read with the Hub's one key ("one key
per server; ``tenant_id`` is asserted by the client"); each tenant has its own records.
"""

from __future__ import annotations

import base64
import random
import re
import uuid
from datetime import date, datetime, timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data
from .core import Emulator, account_value, json_response, seek

UTC = timezone.utc
API_KEY = "hub_sandbox_key_5e1f9c"
TENANT = "tenant-sandbox"
FOREIGN_TENANT = "tenant-other"
PATH = "/v1/feedback-records"
_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_MAX = datetime(2080, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
STRING_FILTERS = ("submission_id", "source_type", "source_id", "field_id", "field_group_id", "field_type", "user_identifier", "user_id")
# The Hub parses RFC 3339 date-times strictly: a date alone or a missing zone is a 400.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE)
FIELD_TYPES = ("text", "categorical", "nps", "csat", "ces", "rating", "number", "boolean", "date")


def _ts(value: str) -> datetime:
    return _parse(value)


def _strict_ts(value: str) -> datetime:
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    return _parse(value)


def _parse(value: str) -> datetime:
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _nano(value: datetime) -> str:
    # Hub writes RFC 3339 with nanoseconds in its cursor; Python carries microseconds.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def encode_cursor(t: datetime, i: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"t": _nano(t), "i": i})).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return _ts(raw["t"]), str(raw["i"])


def problem(status: int, title: str, detail: str, instance: str, invalid: list[tuple[str, str]] | None = None, code: str = "validation") -> Response:
    body: dict[str, Any] = {
        "type": "about:blank" if status != 400 else "https://hub.formbricks.com/problems/validation",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "request_id": str(uuid.uuid4()),
    }
    if invalid:
        body["invalid_params"] = [{"name": n, "reason": r} for n, r in invalid]
    return json_response(body, status, media_type="application/problem+json")


class FormbricksEmulator(Emulator):
    name = "formbricks"

    def settings(self, base_url: str, account: int = 1) -> dict[str, str]:
        return {"hub_url": base_url, "hub_api_key": API_KEY, "tenant_id": account_value(TENANT, account)}

    def account_of(self, request: Request) -> int | None:
        return self.find_account(TENANT, request.query_params.get("tenant_id"))

    # -- data -----------------------------------------------------------------------------

    def generate_day(self, rng: random.Random, day: date, count: int, now: datetime, account: int = 1) -> list[dict[str, Any]]:
        records = []
        for i, when in enumerate(data.day_times(rng, day, count, now)):
            field_type = rng.choice(FIELD_TYPES)
            updated = data.later(rng, when, now)
            record: dict[str, Any] = {
                "id": data.uuid7(rng, when),
                "collected_at": data.iso_z(when, rng.choice((0, 3, 6))),
                "created_at": data.iso_z(when, 6),
                "updated_at": data.iso_z(updated, 6),
                "source_type": rng.choice(("survey", "review", "support")),
                "field_id": f"q{rng.randrange(1, 6)}",
                "field_type": field_type,
                "tenant_id": account_value(TENANT, account),
                "submission_id": data.uuid4(rng),
            }
            if rng.random() < 0.8:
                record["field_label"] = rng.choice(("How likely are you to recommend us?", "What can we improve?", "Rate this release", "¿Qué podemos mejorar?"))
            if field_type in ("nps", "csat", "ces", "rating", "number"):
                record["value_number"] = rng.randrange(0, 11) if field_type == "nps" else rng.randrange(1, 6)
            elif field_type == "boolean":
                record["value_boolean"] = rng.random() < 0.5
            elif field_type == "date":
                record["value_date"] = data.iso_z(when, 0)
            else:
                record["value_text"] = data.comment(rng)
            if rng.random() < 0.3:
                record["source_id"] = f"survey-{rng.randrange(100)}"
                record["source_name"] = "Quarterly NPS"
            if rng.random() < 0.6:
                # Current servers send user_id; older ones user_identifier (both appear in the wild).
                record["user_id" if rng.random() < 0.7 else "user_identifier"] = data.user_id(rng)
            if rng.random() < 0.2:
                record["metadata"] = {"browser": "firefox", "locale": rng.choice(("en", "de", "ja"))}
            if rng.random() < 0.1:
                record["language"] = rng.choice(("en", "de", "ar"))
            if i == 0 and data.bad_record_day(day, self.state.last_day(now)) is not None:
                # A record of another tenant leaking through: the connector must reject it.
                record["tenant_id"] = FOREIGN_TENANT
            records.append(record)
        return records

    def touch(self, record: dict[str, Any], now: datetime) -> None:
        record["updated_at"] = data.iso_z(now, 6)

    def bad_envelope(self) -> Any:
        return {"items": [], "count": 0}

    # -- API ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [Route(PATH, self.endpoint(self.list_records), methods=["GET"])]

    async def list_records(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {API_KEY}":
            return problem(401, "Unauthorized", "Missing or invalid API key", PATH, code="unauthorized")
        params = request.query_params
        invalid: list[tuple[str, str]] = []
        for name, value in params.multi_items():
            if "\x00" in value:
                invalid.append((name, "NULL bytes are not allowed"))
        tenant = params.get("tenant_id")
        if not tenant:
            invalid.append(("tenant_id", "is required"))
        limit = 100
        if "limit" in params:
            try:
                if not re.fullmatch(r"[+-]?\d+", params["limit"]):
                    raise ValueError(params["limit"])
                limit = int(params["limit"])
                if not 1 <= limit <= 1000:
                    invalid.append(("limit", "must be between 1 and 1000"))
            except ValueError:
                invalid.append(("limit", "must be an integer"))
        bounds: dict[str, datetime] = {}
        # An older Hub does not know updated_since and ignores it like any unknown parameter.
        bound_names = ("since", "until", "updated_since") if self.state.hub_supports_updated_sort else ("since", "until")
        for name in bound_names:
            if name in params:
                try:
                    value = _strict_ts(params[name])
                except ValueError:
                    invalid.append((name, "must be an RFC 3339 date-time"))
                    continue
                if not _MIN <= value <= _MAX:
                    invalid.append((name, "must be between 1970-01-01 and 2080-12-31"))
                bounds[name] = value
        if params.get("field_type") and params["field_type"] not in FIELD_TYPES:
            invalid.append(("field_type", "must be one of " + ", ".join(FIELD_TYPES)))
        by_updated = self.state.hub_supports_updated_sort and params.get("sort") == "updated_at"
        cursor: tuple[datetime, str] | None = None
        if params.get("cursor"):
            try:
                cursor = decode_cursor(params["cursor"])
            except Exception:  # noqa: BLE001 - any malformed cursor is the client's error
                return problem(400, "Bad Request", "invalid cursor", PATH)
        if invalid:
            return problem(400, "Validation Error", "One or more request parameters are invalid", PATH, invalid)

        if by_updated:
            page, more = self._page_by_updated(tenant, params, bounds, cursor, limit)
        else:
            page, more = self._page_by_collected(tenant, params, bounds, cursor, limit)
        body: dict[str, Any] = {"data": page, "limit": limit}
        if more and page:
            last = page[-1]
            key = "updated_at" if by_updated else "collected_at"
            body["next_cursor"] = encode_cursor(_ts(last[key]), last["id"])
        return json_response(body)

    def _matches(self, record: dict[str, Any], tenant: str, params: Any) -> bool:
        # tenant_id is asserted by the client; the sandbox still serves a few foreign-tenant rows
        # (see generate_day) so the connector's tenant guard is exercised.
        if record.get("tenant_id") not in (tenant, FOREIGN_TENANT):
            return False
        for name in STRING_FILTERS:
            wanted = params.get(name)
            if wanted is not None:
                actual = record.get("user_id", record.get("user_identifier")) if name in ("user_identifier", "user_id") else record.get(name)
                if actual != wanted:
                    return False
        return True

    def _page_by_collected(self, tenant: str, params: Any, bounds: dict[str, datetime], cursor: tuple[datetime, str] | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        # Order collected_at DESC, id ASC == ascending by (-epoch_us, id).
        index = self.store.index("collected_desc", lambda r: -_epoch_us(_ts(r["collected_at"])))
        if cursor is not None:
            start = seek(index, (-_epoch_us(cursor[0]), cursor[1]), inclusive=False)
        elif "until" in bounds:
            start = seek(index, (-_epoch_us(bounds["until"]), ""), inclusive=True)
        else:
            start = 0
        since_key = -_epoch_us(bounds["since"]) if "since" in bounds else None
        until_key = -_epoch_us(bounds["until"]) if "until" in bounds else None
        return self._collect(index, start, limit, tenant, params, stop=lambda k: since_key is not None and k > since_key, skip=lambda k: until_key is not None and k < until_key)

    def _page_by_updated(self, tenant: str, params: Any, bounds: dict[str, datetime], cursor: tuple[datetime, str] | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        index = self.store.index("updated_asc", lambda r: _epoch_us(_ts(r["updated_at"])))
        if cursor is not None:
            start = seek(index, (_epoch_us(cursor[0]), cursor[1]), inclusive=False)
        elif "updated_since" in bounds:
            start = seek(index, (_epoch_us(bounds["updated_since"]), ""), inclusive=True)
        else:
            start = 0
        since = bounds.get("since")
        until = bounds.get("until")

        def in_collected_range(record: dict[str, Any]) -> bool:
            collected = _ts(record["collected_at"])
            return (since is None or collected >= since) and (until is None or collected <= until)

        return self._collect(index, start, limit, tenant, params, extra=in_collected_range)

    def _collect(self, index, start, limit, tenant, params, *, stop=lambda k: False, skip=lambda k: False, extra=lambda r: True):  # noqa: ANN001
        records = self.store.records
        page: list[dict[str, Any]] = []
        for pos in range(start, len(index)):
            key, rid = index[pos]
            if stop(key):
                return page, False
            if skip(key):
                continue
            record = records.get(rid)
            if record is None or not self._matches(record, tenant, params) or not extra(record):
                continue
            if len(page) == limit:
                return page, True
            page.append(record)
        return page, False


def _epoch_us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


EMULATOR = FormbricksEmulator
