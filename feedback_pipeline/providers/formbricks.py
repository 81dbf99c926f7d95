"""Formbricks Hub connector: ``GET {FORMBRICKS_HUB_URL}/v1/feedback-records``.

API facts this module is built on (``shared/providers/formbricks-hub.md``):

* Keyset paging, order ``collected_at DESC, id ASC``; ``next_cursor`` is present only when
  another row exists, and every other parameter must stay identical across pages. The cursor
  encodes ``(collected_at, id)``, so records inserted while we page cannot shift a page edge.
* ``since`` and ``until`` are both *inclusive* bounds on ``collected_at``: the window end is sent
  as the last nanosecond before it, so a record collected exactly at the next midnight belongs
  to the next partition only.
* ``limit`` is at most 1000: we always ask for 1000 (fewest requests).
* ``tenant_id`` is asserted by the client and required on every request; a record of any other
  tenant is rejected without keeping its content.
* Newer Hub releases accept ``sort=updated_at&order=asc&updated_since=``. Unknown parameters are
  silently ignored, so a 200 proves nothing: the response is trusted as a change feed only if it
  really comes back in ``updated_at`` order with nothing older than ``updated_since``; otherwise
  it is the first page of a plain window read and paging simply continues.
* The end user's id is ``user_id`` on current servers and ``user_identifier`` on older ones.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from ..http import BadPage, HttpClient
from ..normalize import FeedbackBatch, parse_optional_timestamp, split
from ..schema import RejectReason
from .base import Page, Provider, Query
from .spec import ProviderSpec, Setting

UTC = timezone.utc
PAGE_SIZE = 1000
# Unified column -> Hub field (user_id is worked out in normalize); everything else goes to
# attributes.
FIELDS = {
    "feedback_id": "id",
    "collected_at": "collected_at",
    "updated_at": "updated_at",
    "category": "field_type",
    "title": "field_label",
    "body": "value_text",
    "rating": "value_number",
}
USER_ID_FIELDS = ("user_id", "user_identifier")  # worked out in normalize


def rfc3339_nano(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def window_until(end: datetime) -> str:
    """The inclusive ``until`` for an exclusive window end: the last nanosecond before it."""
    last = end - timedelta(microseconds=1)
    return last.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "999Z"


def _check_envelope(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadPage("expected an object with a 'data' array")
    cursor = body.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadPage("'next_cursor' is not a string")


class FormbricksProvider(Provider):
    supports_changes = True

    @property
    def url(self) -> str:
        return self.config.hub_url.rstrip("/") + "/v1/feedback-records"

    def open(self) -> HttpClient:
        return self.http_client(headers={"Authorization": f"Bearer {self.config.hub_api_key}"})

    def fetch(self, query: Query, http: HttpClient) -> Iterator[Page]:
        base = {
            "tenant_id": self.config.tenant_id,
            "limit": PAGE_SIZE,
            "since": rfc3339_nano(query.window.start),
            "until": window_until(query.window.end),
        }
        resume = dict(query.resume or {})
        by_updated = resume.get("mode") == "updated"
        if query.changes_since is not None and (not resume or by_updated):
            params = {**base, "sort": "updated_at", "order": "asc", "updated_since": rfc3339_nano(query.changes_since)}
            if resume.get("cursor"):
                params["cursor"] = resume["cursor"]
                by_updated = True
            else:
                body = http.get_json(self.url, endpoint="list feedback-records", params=params, validate=_check_envelope)
                by_updated = _is_change_feed(body["data"], query.changes_since)
                if not by_updated:
                    # An older Hub ignored sort/updated_since: this is page 1 of a window read,
                    # and its cursor continues that read - provided it really encodes the last
                    # record's collected_at (the documented cursor format); else start over.
                    params = dict(base)
                    if not _is_collected_cursor(body):
                        yield from self._pages(http, params, "window", resumed=None)
                        return
                yield self._page(body, "updated" if by_updated else "window")
                if not body.get("next_cursor"):
                    return
                params = {**params, "cursor": body["next_cursor"]}
        else:
            params = dict(base)
            if resume.get("cursor"):
                params["cursor"] = resume["cursor"]
        yield from self._pages(http, params, "updated" if by_updated else "window", resumed=resume.get("cursor"))

    def _pages(self, http: HttpClient, params: dict[str, Any], mode: str, *, resumed: str | None) -> Iterator[Page]:
        """Follow ``next_cursor`` from ``params`` to the end."""
        while True:
            first_of_resumed = bool(resumed) and params.get("cursor") == resumed
            body = self.get_page(http, self.url, endpoint="list feedback-records", params=params, validate=_check_envelope, resumed=first_of_resumed)
            yield self._page(body, mode)
            if not body.get("next_cursor"):
                return
            params["cursor"] = body["next_cursor"]

    @staticmethod
    def _page(body: dict[str, Any], mode: str) -> Page:
        cursor = body.get("next_cursor")
        return Page(records=body["data"], resume={"mode": mode, "cursor": cursor} if cursor else None)

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        tenant = self.config.tenant_id
        records = batch.objects(records)
        if [r.get("tenant_id") for r in records].count(tenant) != len(records):
            mine = []
            for record in records:
                if record.get("tenant_id") == tenant:
                    mine.append(record)
                else:
                    # Another tenant's content must not be kept anywhere: no payload.
                    batch.reject(record, RejectReason.FOREIGN_TENANT, feedback_id=record.get("id"), keep_payload=False)
            records = mine
        # Current servers send user_id, older ones user_identifier (formbricks-hub.md).
        user_id = [user if (user := r.get("user_id")) is not None else r.get("user_identifier") for r in records]
        columns, attributes = split(records, FIELDS, drop=USER_ID_FIELDS)
        batch.extend(records, **columns, user_id=user_id, attributes=attributes)


SPEC = ProviderSpec(
    name="formbricks",
    asset_name="formbricks_feedback",
    description="Survey responses from a self-hosted Formbricks Hub tenant.",
    settings=(
        Setting("FORMBRICKS_HUB_URL", url=True),  # self-hosted: the operator's own base URL
        Setting("FORMBRICKS_HUB_API_KEY", secret=True),
        Setting("FORMBRICKS_TENANT_ID"),
    ),
    account="tenant_id",
    statuses={},  # Hub records have no status
    hints={
        401: "the Hub rejected the key; check FORMBRICKS_HUB_API_KEY",
        403: "the key may not read this tenant; check FORMBRICKS_HUB_API_KEY and FORMBRICKS_TENANT_ID",
        404: "no feedback-records endpoint there; check FORMBRICKS_HUB_URL (the Hub's base URL, without /v1)",
        400: "the Hub rejected the parameters; check FORMBRICKS_TENANT_ID",
    },
    provider=FormbricksProvider,
    page_size=PAGE_SIZE,
    # Survey fields of type nps carry the score in value_number, i.e. the rating column.
    nps_answers="SELECT collected_date, rating AS score FROM feedback WHERE provider = 'formbricks' AND category = 'nps'",
)


def _is_collected_cursor(body: dict[str, Any]) -> bool:
    """True when ``next_cursor`` decodes to the last record's ``collected_at`` (or is absent)."""
    cursor = body.get("next_cursor")
    if not cursor:
        return True
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        last = body["data"][-1]
        return parse_optional_timestamp(decoded["t"]) == parse_optional_timestamp(last.get("collected_at")) and decoded["i"] == last.get("id")
    except Exception:  # noqa: BLE001 - an undecodable cursor proves nothing
        return False


def _is_change_feed(records: list[Any], since: datetime) -> bool:
    """True when the page is ordered by updated_at ascending with nothing older than ``since``."""
    previous: datetime | None = None
    for record in records:
        if not isinstance(record, dict):
            return False
        updated = parse_optional_timestamp(record.get("updated_at"))
        if updated is None or updated < since or (previous is not None and updated < previous):
            return False
        previous = updated
    return True
