"""Mapbox Feedback API connector: ``GET {MAPBOX_BASE_URL}/user-feedback/v1/feedback``.

API facts this module is built on (``shared/providers/mapbox.md``):

* The token travels as the ``access_token`` *query parameter* (the only way the docs give) and
  needs the ``user-feedback:read`` scope: 401 = bad token, 403 = token without that scope.
  Because httpx logs every request URL (``HTTP Request: GET <url>`` at INFO), the token is not
  put in the URL the HTTP client sees at all: :class:`AccessTokenTransport` adds it below httpx's
  logging, so no log line, exception or ``response.request`` ever carries it, even with the
  ``httpx`` logger at DEBUG. The shared client's URL redaction stays as a second line.
* Keyset paging: ``after=end_cursor`` until ``has_after`` is false. The docs' polling advice
  says "repeat until you receive an empty items array", so an empty page also ends a query.
  Cursors encode ``(sort key, id)``, so records inserted while we page cannot shift page edges.
* ``limit`` is at most 1000: we always ask for 1000 (fewest requests).
* Whether ``*_after`` / ``*_before`` are strict is not documented, so the lower bounds are
  widened by a margin (a strict ``created_after=<midnight>`` would lose a record created exactly
  at midnight); the engine drops rows outside the window and dedupes on ``id``.
* ``created_at`` (the end user's time) is the collected time: windows filter on it with
  ``sort_by=created_at&order=asc``. Changes use the docs' recommended polling shape
  ``sort_by=updated_at&order=asc&updated_after=...``, still bounded to the window by
  ``created_after``/``created_before``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from ..http import HttpClient, ProviderError, RetryPolicy, tls_context
from ..normalize import FeedbackBatch, split
from .base import Page, Provider, Query, check_cursor_page
from .spec import ProviderResource, ProviderSpec, Setting

UTC = timezone.utc
DEFAULT_BASE_URL = "https://api.mapbox.com"
PAGE_SIZE = 1000
PATH = "/user-feedback/v1/feedback"
TOKEN_PARAM = "access_token"
# Lower bounds may be strict (undocumented): read a little before the window start.
WINDOW_MARGIN = timedelta(seconds=1)
# For changes: covers strict bounds plus a little clock skew / visibility lag at Mapbox.
CHANGES_MARGIN = timedelta(minutes=1)
# Unified column -> Mapbox field (user_id, from metadata.userId, is worked out in normalize);
# everything else (location, trace_id, received_at, metadata - kept whole, userId included) goes
# to ``attributes``.
FIELDS = {
    "feedback_id": "id",
    "collected_at": "created_at",
    "updated_at": "updated_at",
    "provider_status": "status",
    "category": "category",
    "body": "feedback",
}


def iso_ms(when: datetime) -> str:
    """``YYYY-MM-DDTHH:mm:ss.SSSZ``, the format the docs ask for."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _env_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment (HTTPS_PROXY, NO_PROXY, ...) sets for ``url``, if any.

    A custom transport turns off httpx's own environment proxy support, so it is redone here."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(url.host, proxies):
        return None
    return proxy


class AccessTokenTransport(httpx.BaseTransport):
    """Adds ``access_token`` to each outgoing URL *below* httpx's request logging.

    httpx logs ``request.url`` after the transport returns, using the request it handed over;
    this transport sends a copy with the token, so the logged URL, ``response.request`` and
    exceptions raised by httpx only ever see the URL without it."""

    def __init__(self, token: str, *, inner: httpx.BaseTransport | None = None):
        self._token = token
        self._inner = inner
        self._by_proxy: dict[str | None, httpx.BaseTransport] = {}

    def _transport_for(self, url: httpx.URL) -> httpx.BaseTransport:
        if self._inner is not None:
            return self._inner
        proxy = _env_proxy(url)
        if proxy not in self._by_proxy:
            # The process's one TLS context (http.tls_context), not a CA bundle loaded per transport.
            self._by_proxy[proxy] = httpx.HTTPTransport(proxy=proxy, verify=tls_context())
        return self._by_proxy[proxy]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        signed = httpx.Request(
            request.method,
            request.url.copy_merge_params({TOKEN_PARAM: self._token}),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._transport_for(request.url).handle_request(signed)

    def close(self) -> None:
        transports = [self._inner] if self._inner is not None else list(self._by_proxy.values())
        for transport in transports:
            transport.close()


def _check_envelope(body: Any) -> None:
    # An empty page ends a query (the polling advice), so it needs no cursor.
    check_cursor_page(body, items="items", more="has_after", cursor="end_cursor", empty_page_ends=True)


class MapboxProvider(Provider):
    supports_changes = True

    def __init__(self, config: ProviderResource, *, policy: RetryPolicy | None = None, inner_transport: httpx.BaseTransport | None = None):
        super().__init__(config, policy=policy)
        self._inner_transport = inner_transport

    @property
    def url(self) -> str:
        return self.config.get("base_url").rstrip("/") + PATH

    def open(self) -> HttpClient:
        return self.http_client(transport=AccessTokenTransport(self.config.access_token or "", inner=self._inner_transport))

    def params(self, query: Query) -> dict[str, Any]:
        """The request parameters of ``query`` (without cursor and token)."""
        params: dict[str, Any] = {
            "limit": PAGE_SIZE,
            "created_after": iso_ms(query.window.start - WINDOW_MARGIN),
            # Strict or not, the window end is exclusive: nothing past it is needed.
            "created_before": iso_ms(query.window.end),
        }
        if query.changes_since is None:
            params.update(sort_by="created_at", order="asc")
        else:
            # The docs' recommended way to poll for updates: sort_by=updated_at&order=asc.
            params.update(sort_by="updated_at", order="asc", updated_after=iso_ms(query.changes_since - CHANGES_MARGIN))
        return params

    def fetch(self, query: Query, http: HttpClient) -> Iterator[Page]:
        params = self.params(query)
        mode = params["sort_by"]
        resume = dict(query.resume or {})
        cursor = resume.get("after") if resume.get("sort_by") == mode else None
        resumed = bool(cursor)
        while True:
            request = dict(params)
            if cursor:
                request["after"] = cursor
            body = self.get_page(http, self.url, endpoint="list feedback", params=request, validate=_check_envelope, resumed=resumed)
            resumed = False
            items = body["items"]
            next_cursor = body.get("end_cursor")
            more = bool(body["has_after"] and items)
            if more and next_cursor == cursor:
                raise ProviderError(f"{self.name}: the API returned the same cursor twice; stopping to avoid a loop")
            yield Page(records=items, resume={"sort_by": mode, "after": next_cursor} if more else None)
            if not more:
                return
            cursor = next_cursor

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        records = batch.objects(records)
        columns, attributes = split(records, FIELDS)
        batch.extend(
            records,
            **columns,
            user_id=[meta.get("userId") if type(meta := r.get("metadata")) is dict else None for r in records],
            attributes=attributes,
        )


SPEC = ProviderSpec(
    name="mapbox",
    asset_name="mapbox_feedback",
    description="End-user map and navigation feedback from the Mapbox Feedback API.",
    settings=(
        Setting("MAPBOX_ACCESS_TOKEN", secret=True),  # scope user-feedback:read
        Setting("MAPBOX_BASE_URL", required=False, default=DEFAULT_BASE_URL, url=True),
        Setting("MAPBOX_ACCOUNT", required=False, default="default"),
    ),
    account="account",
    statuses={"received": "open", "fixed": "resolved", "reviewed": "resolved", "out_of_scope": "dismissed"},
    hints={
        400: "Mapbox rejected the request parameters; check MAPBOX_BASE_URL points at the Mapbox API",
        401: "Mapbox rejected the access token; check MAPBOX_ACCESS_TOKEN (a current token of the account)",
        403: (
            "the access token lacks the user-feedback:read scope; create a token with the "
            "user-feedback:read scope and set it in MAPBOX_ACCESS_TOKEN"
        ),
        404: "no Feedback API there; check MAPBOX_BASE_URL (default " + DEFAULT_BASE_URL + ", without /user-feedback/v1)",
    },
    provider=MapboxProvider,
    page_size=PAGE_SIZE,
)
