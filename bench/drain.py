"""Raw drain: every page of every provider with a bare httpx client, the bodies left alone.

The requests are the ones the connectors make for a window read of the whole range (same
endpoints, credentials, filters and the API's maximum page size), sent one provider after the
other, as the job's steps run. In ``bare`` mode nothing is done with a body except finding the
next cursor in its first or last bytes (orjson writes keys in insertion order and no spaces, so
the cursor sits at a fixed end of each envelope); ``parse`` mode parses each body with orjson and
counts the records (this gives the record counts the request minimum is computed from).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import orjson

from feedback_pipeline.providers.base import Window
from feedback_pipeline.providers.formbricks import rfc3339_nano, window_until
from feedback_pipeline.providers.mapbox import WINDOW_MARGIN, iso_ms
from feedback_pipeline.providers.usersnap import UsersnapJWTAuth
from feedback_pipeline.providers.usersnap import iso_z as usersnap_iso

from .common import PAGE_SIZES, PROVIDERS


def _tail(body: bytes, key: bytes, closing: int = 1) -> dict[str, Any]:
    """The last top-level keys of a compact JSON object, from ``,"key":`` to the end."""
    pos = body.rfind(b',"' + key + b'":')
    if pos < 0:
        raise ValueError(f"{key!r} not found")
    return orjson.loads(b"{" + body[pos + 1 : len(body) - closing] + b"}")


def _head(body: bytes, key: bytes) -> dict[str, Any]:
    """The first top-level keys of a compact JSON object, up to ``,"key":``."""
    pos = body.find(b',"' + key + b'":')
    if pos < 0:
        raise ValueError(f"{key!r} not found")
    return orjson.loads(body[:pos] + b"}")


class Drainer:
    """Drains one provider; ``run`` returns ``{seconds, requests, bytes, records}``."""

    def __init__(self, name: str, env: dict[str, str], window: Window, *, parse: bool):
        self.name = name
        self.env = env
        self.window = window
        self.parse = parse
        self.page_size = PAGE_SIZES[name]

    def run(self) -> dict[str, Any]:
        method = getattr(self, f"_{self.name}")
        with self._client() as client:
            return method(client)

    # -- clients ----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        env, timeout = self.env, httpx.Timeout(300.0, connect=10.0)
        if self.name == "mintlify":
            return httpx.Client(headers={"Authorization": f"Bearer {env['MINTLIFY_API_KEY']}"}, timeout=timeout)
        if self.name == "usersnap":
            return httpx.Client(auth=UsersnapJWTAuth(env["USERSNAP_JWT_SECRET"], env["USERSNAP_JWT_KID"]), timeout=timeout)
        if self.name == "formbricks":
            return httpx.Client(headers={"Authorization": f"Bearer {env['FORMBRICKS_HUB_API_KEY']}"}, timeout=timeout)
        if self.name == "feedbackkit":
            return httpx.Client(headers={"X-API-Key": env["FEEDBACKKIT_API_KEY"], "Accept": "application/json"}, timeout=timeout)
        return httpx.Client(timeout=timeout)

    def _loop(self, send: Callable[[Any], httpx.Response], next_of: Callable[[bytes], Any], records_of: Callable[[Any], list[Any]], cursor_of: Callable[[Any], Any]) -> dict[str, Any]:
        """Page until ``cursor`` is None. ``next_of`` (bare) reads the cursor from the raw bytes;
        in parse mode the body is parsed whole and ``records_of``/``cursor_of`` read it."""
        requests = size = records = 0
        cursor = None
        t0 = time.perf_counter()
        while True:
            response = send(cursor)
            response.raise_for_status()
            body = response.content
            requests += 1
            size += len(body)
            if self.parse:
                parsed = orjson.loads(body)
                records += len(records_of(parsed))
                cursor = cursor_of(parsed)
            else:
                cursor = next_of(body)
            if cursor is None:
                break
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "requests": requests, "bytes": size, "records": records if self.parse else None}

    # -- providers --------------------------------------------------------------------------

    def _mintlify(self, client: httpx.Client) -> dict[str, Any]:
        url = self.env["MINTLIFY_BASE_URL"].rstrip("/") + f"/api/external/v1/analytics/{self.env['MINTLIFY_PROJECT_ID']}/feedback"
        base = {"dateFrom": self.window.start.date().isoformat(), "dateTo": self.window.end.date().isoformat(), "limit": self.page_size}

        def send(cursor: Any) -> httpx.Response:
            return client.get(url, params={**base, "cursor": cursor} if cursor else base)

        def bare(body: bytes) -> Any:
            tail = _tail(body, b"nextCursor")
            return tail["nextCursor"] if tail["hasMore"] else None

        return self._loop(send, bare, lambda b: b["feedback"], lambda b: b["nextCursor"] if b["hasMore"] else None)

    def _usersnap(self, client: httpx.Client) -> dict[str, Any]:
        url = self.env["USERSNAP_BASE_URL"].rstrip("/") + f"/projects/{self.env['USERSNAP_PROJECT_ID']}/feedbacks/filter"
        payload = {
            "order_by": {"direction": "asc", "order_by_type": "created_at"},
            "query": [
                {"filter_type": "created_at", "operator": "gte", "value": usersnap_iso(self.window.start)},
                {"filter_type": "created_at", "operator": "lt", "value": usersnap_iso(self.window.end)},
            ],
        }

        def send(cursor: Any) -> httpx.Response:
            params = {"limit": self.page_size, **({"after": cursor} if cursor else {})}
            return client.post(url, params=params, json=payload)

        def bare(body: bytes) -> Any:
            if b'"has_more":true' not in body[:64]:
                return None
            return _tail(body, b"next", closing=2)["next"]["after"]

        def cursor_of(b: Any) -> Any:
            data = b["data"]
            return data["feedbacks"][-1]["feedback_id"] if data["has_more"] else None

        return self._loop(send, bare, lambda b: b["data"]["feedbacks"], cursor_of)

    def _formbricks(self, client: httpx.Client) -> dict[str, Any]:
        url = self.env["FORMBRICKS_HUB_URL"].rstrip("/") + "/v1/feedback-records"
        base = {
            "tenant_id": self.env["FORMBRICKS_TENANT_ID"],
            "limit": self.page_size,
            "since": rfc3339_nano(self.window.start),
            "until": window_until(self.window.end),
        }

        def send(cursor: Any) -> httpx.Response:
            return client.get(url, params={**base, "cursor": cursor} if cursor else base)

        def bare(body: bytes) -> Any:
            return _tail(body, b"limit").get("next_cursor")

        return self._loop(send, bare, lambda b: b["data"], lambda b: b.get("next_cursor"))

    def _mapbox(self, client: httpx.Client) -> dict[str, Any]:
        url = self.env["MAPBOX_BASE_URL"].rstrip("/") + "/user-feedback/v1/feedback"
        base = {
            "limit": self.page_size,
            "created_after": iso_ms(self.window.start - WINDOW_MARGIN),
            "created_before": iso_ms(self.window.end),
            "sort_by": "created_at",
            "order": "asc",
            "access_token": self.env["MAPBOX_ACCESS_TOKEN"],
        }

        def send(cursor: Any) -> httpx.Response:
            return client.get(url, params={**base, "after": cursor} if cursor else base)

        def bare(body: bytes) -> Any:
            head = _head(body, b"items")
            return head["end_cursor"] if head["has_after"] and head["end_cursor"] else None

        def cursor_of(b: Any) -> Any:
            return b["end_cursor"] if b["has_after"] and b["items"] else None

        return self._loop(send, bare, lambda b: b["items"], cursor_of)

    def _feedbackkit(self, client: httpx.Client) -> dict[str, Any]:
        url = self.env["FEEDBACKKIT_BASE_URL"].rstrip("/") + "/api/v1/feedbacks"

        def send(cursor: Any) -> httpx.Response:
            return client.get(url, params={"includeMerged": "true"})

        return self._loop(send, lambda body: None, lambda b: b, lambda b: None)


def drainable() -> list[str]:
    """The providers this reference client knows (a ``_<name>`` method of :class:`Drainer`); a
    provider added without one is benchmarked through the pipeline only."""
    return [name for name in PROVIDERS if hasattr(Drainer, f"_{name}")]


def drain_all(env: dict[str, str], first: date, last: date, *, parse: bool) -> dict[str, Any]:
    """Drain the five providers one after the other over ``[first, last]``."""
    window = Window.for_days(first, last)
    providers: dict[str, Any] = {}
    for name in drainable():
        providers[name] = Drainer(name, env, window, parse=parse).run()
    return {
        # The sum of the page loops: creating a client (SSL context) is not part of the drain.
        "seconds": sum(p["seconds"] for p in providers.values()),
        "requests": sum(p["requests"] for p in providers.values()),
        "bytes": sum(p["bytes"] for p in providers.values()),
        "records": sum(p["records"] for p in providers.values()) if parse else None,
        "providers": providers,
    }


def _first_page(drainer: Drainer, client: httpx.Client) -> None:
    """Send only the first request of ``drainer``'s query (index warm-up)."""

    class _Stop(Exception):
        pass

    original = drainer._loop

    def one(send: Callable[[Any], httpx.Response], *args: Any) -> dict[str, Any]:
        send(None).raise_for_status()
        raise _Stop

    drainer._loop = one  # type: ignore[method-assign]
    try:
        getattr(drainer, f"_{drainer.name}")(client)
    except _Stop:
        pass
    finally:
        drainer._loop = original  # type: ignore[method-assign]


def warm_up(env: dict[str, str], first: date, last: date) -> None:
    """Send one small request of every query shape the benchmark and the connectors use, so the
    sandbox's lazily built sorted indexes (rebuilt after every data change) are in place before
    anything is timed: a real API keeps its indexes up to date, the emulator builds them on the
    first request after a change."""
    from datetime import datetime, timezone

    window = Window.for_days(first, last)
    now = datetime.now(timezone.utc)
    for name in drainable():
        drainer = Drainer(name, env, window, parse=False)
        with drainer._client() as client:
            if name == "feedbackkit":
                client.get(env["FEEDBACKKIT_BASE_URL"].rstrip("/") + "/api/v1/feedbacks", params={"includeMerged": "true", "status": "pending"}).raise_for_status()
                continue
            _first_page(drainer, client)
            if name == "usersnap":
                url = env["USERSNAP_BASE_URL"].rstrip("/") + f"/projects/{env['USERSNAP_PROJECT_ID']}/feedbacks/filter"
                body = {
                    "order_by": {"direction": "desc", "order_by_type": "updated_at"},
                    "query": [
                        {"filter_type": "created_at", "operator": "gte", "value": usersnap_iso(window.start)},
                        {"filter_type": "created_at", "operator": "lt", "value": usersnap_iso(window.end)},
                    ],
                }
                client.post(url, params={"limit": 1}, json=body).raise_for_status()
            elif name == "formbricks":
                url = env["FORMBRICKS_HUB_URL"].rstrip("/") + "/v1/feedback-records"
                params = {
                    "tenant_id": env["FORMBRICKS_TENANT_ID"], "limit": 1, "since": rfc3339_nano(window.start),
                    "until": window_until(window.end), "sort": "updated_at", "order": "asc", "updated_since": rfc3339_nano(now),
                }
                client.get(url, params=params).raise_for_status()
            elif name == "mapbox":
                url = env["MAPBOX_BASE_URL"].rstrip("/") + "/user-feedback/v1/feedback"
                params = {
                    "limit": 1, "created_after": iso_ms(window.start - WINDOW_MARGIN), "created_before": iso_ms(window.end),
                    "sort_by": "updated_at", "order": "asc", "updated_after": iso_ms(now), "access_token": env["MAPBOX_ACCESS_TOKEN"],
                }
                client.get(url, params=params).raise_for_status()
