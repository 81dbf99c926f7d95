"""The shared HTTP layer: retries, Retry-After, fail-fast 4xx, bad pages, redaction."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from feedback_pipeline.http import (
    BadPage,
    HttpClient,
    ProviderRequestError,
    ProviderUnavailable,
    RetryPolicy,
    parse_retry_after,
    redact_url,
    tls_context,
    utc_http_date,
)

UTC = timezone.utc
TOKEN = "pk.eyJ1IjoidGVzdC10b2tlbi1zZWNyZXQifQ.c2VjcmV0LXNpZ25hdHVyZQ"


def scripted(*responses: httpx.Response | Exception):
    """A transport answering with ``responses`` in order; records the requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def client(transport, *, sleeps=None, policy=None, **kw) -> HttpClient:
    recorded = sleeps if sleeps is not None else []
    return HttpClient("mapbox", transport=transport, sleep=recorded.append, policy=policy or RetryPolicy(max_attempts=4), secrets=[TOKEN], **kw)


def ok(body=b'{"items": []}') -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


def test_retry_after_in_seconds_is_honoured():
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    sleeps: list[float] = []
    assert client(transport, sleeps=sleeps).get_json("http://api/x", endpoint="list") == {"items": []}
    assert sleeps == [7.0] and len(seen) == 2


def test_retry_after_as_an_http_date_is_honoured():
    when = utc_http_date(datetime.now(UTC) + timedelta(seconds=30))
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": when}), ok())
    sleeps: list[float] = []
    client(transport, sleeps=sleeps).get_json("http://api/x", endpoint="list")
    assert 25 <= sleeps[0] <= 31


@pytest.mark.parametrize("header", [None, "0", "garbage"])
def test_a_429_with_zero_or_missing_retry_after_waits_at_least_the_floor(header):
    headers = {"Retry-After": header} if header is not None else {}
    transport, _ = scripted(httpx.Response(429, headers=headers), ok())
    sleeps: list[float] = []
    client(transport, sleeps=sleeps).get_json("http://api/x", endpoint="list")
    assert sleeps and sleeps[0] >= 1.0


def test_parse_retry_after_forms():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=datetime(2015, 10, 21, 7, 27, tzinfo=UTC).timestamp()) == 60.0


def test_a_5xx_storm_backs_off_then_fails_naming_provider_endpoint_status_and_body():
    html = httpx.Response(502, content=b"<html><body>Bad Gateway</body></html>", headers={"content-type": "text/html"})
    transport, seen = scripted(html)
    sleeps: list[float] = []
    with pytest.raises(ProviderUnavailable) as info:
        client(transport, sleeps=sleeps).get_json("http://api/x", endpoint="list feedback")
    message = str(info.value)
    assert "mapbox" in message and "list feedback" in message and "HTTP 502" in message and "Bad Gateway" in message
    assert len(seen) == 4 and len(sleeps) == 3
    assert all(0 < s for s in sleeps) and sleeps[2] > sleeps[0] / 2  # exponential with jitter


def test_dropped_connections_and_timeouts_are_retried():
    transport, seen = scripted(httpx.RemoteProtocolError("peer closed"), httpx.ReadTimeout("slow"), ok())
    assert client(transport).get_json("http://api/x", endpoint="list") == {"items": []}
    assert len(seen) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_fail_at_once_with_a_hint(status):
    transport, seen = scripted(httpx.Response(status, json={"message": "nope"}))
    with pytest.raises(ProviderRequestError) as info:
        client(transport, hints={403: "the token lacks the user-feedback:read scope; check MAPBOX_ACCESS_TOKEN"}).get_json("http://api/x", endpoint="list")
    assert len(seen) == 1 and info.value.status == status
    if status == 403:
        assert "user-feedback:read" in str(info.value) and "MAPBOX_ACCESS_TOKEN" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        httpx.Response(200, content=b"<html>maintenance</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"}),
    ],
)
def test_bad_pages_are_retried_then_fail_clearly(bad):
    transport, seen = scripted(bad)
    with pytest.raises(ProviderUnavailable, match="unexpected response body"):
        client(transport).get_json("http://api/x", endpoint="list")
    assert len(seen) == 4


def test_a_wrong_envelope_is_a_bad_page():
    def validate(body):
        if "items" not in body:
            raise BadPage("no items")

    transport, seen = scripted(ok(b'{"data": []}'), ok())
    assert client(transport).get_json("http://api/x", endpoint="list", validate=validate) == {"items": []}
    assert len(seen) == 2


def test_a_bad_page_is_described_by_its_shape_never_by_its_records():
    # The failure's text reaches logs, run metadata and chat alerts; the page's records may hold
    # end users' personal data.
    page = {"feedback": [{"id": "fb-1", "contact": "ada.lovelace@example.com", "comment": "Call me on +44 7700 900123"}], "hasMore": "true"}

    def validate(body):
        if not isinstance(body.get("hasMore"), bool):
            raise BadPage("hasMore is not a boolean")

    transport, _ = scripted(httpx.Response(200, json=page))
    with pytest.raises(ProviderUnavailable) as info:
        client(transport).get_json("http://api/x", endpoint="list", validate=validate)
    message = str(info.value)
    assert "hasMore is not a boolean; body: a JSON object with keys feedback, hasMore" in message
    assert "ada.lovelace" not in message and "7700" not in message


def test_a_retry_after_beyond_the_wait_budget_fails_without_sleeping():
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": "3600"}))
    sleeps: list[float] = []
    with pytest.raises(ProviderUnavailable, match="asked to wait 3600s"):
        client(transport, sleeps=sleeps, policy=RetryPolicy(max_total_wait=300)).get_json("http://api/x", endpoint="list")
    assert sleeps == []


def test_tokens_in_urls_never_reach_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    failing = httpx.Response(500, content=f"error for access_token={TOKEN}".encode(), headers={"content-type": "text/plain"})
    transport, _ = scripted(failing)
    with pytest.raises(ProviderUnavailable) as info:
        client(transport).get_json("http://api/x", endpoint="list", params={"access_token": TOKEN})
    assert TOKEN not in str(info.value)
    assert TOKEN not in caplog.text
    assert "HTTP Request" not in caplog.text  # httpx's own URL logging is silenced


def test_redact_url_masks_secret_parameters_only():
    url = redact_url(f"https://api.mapbox.com/user-feedback/v1/feedback?limit=1000&access_token={TOKEN}&after=abc")
    assert TOKEN not in url and "access_token=***" in url and "limit=1000" in url and "after=abc" in url


# -- streaming a JSON array ----------------------------------------------------------------------


def array_response(items, *, chunk: int = 64, fail_after: int | None = None, content_type: str = "application/json") -> httpx.Response:
    """A 200 whose body arrives in ``chunk``-byte pieces; with ``fail_after`` the connection
    breaks once that many bytes were sent."""
    import orjson

    body = orjson.dumps(items)

    def stream():
        for start in range(0, len(body), chunk):
            if fail_after is not None and start >= fail_after:
                raise httpx.ReadError("connection reset by peer")
            yield body[start : start + chunk]

    return httpx.Response(200, content=stream(), headers={"content-type": content_type})


def streamed(http: HttpClient, **options) -> list[list]:
    return list(http.stream_json_items("http://api/x", endpoint="list items", **{"batch_size": 100, **options}))


def test_a_streamed_array_comes_in_lists_of_the_batch_size_in_order():
    items = [{"id": i, "day": i % 10} for i in range(1_050)]
    transport, seen = scripted(array_response(items))
    http = client(transport)
    stream = http.stream_json_items("http://api/x", endpoint="list items", params={"includeMerged": "true"}, batch_size=100, peek=("day",), keep=lambda p: p.day < 5)
    batches = list(stream)
    assert all(len(b) == 100 for b in batches[:-1]) and 0 < len(batches[-1]) <= 100
    assert [i for b in batches for i in b] == [i for i in items if i["day"] < 5]
    assert (stream.seen, stream.kept) == (1_050, 525)
    assert len(seen) == 1 and seen[0].url.params["includeMerged"] == "true"
    assert http.stats.by_status == {"200": 1}


def test_a_stream_broken_before_any_item_was_handed_over_is_retried_from_its_start():
    items = [{"id": i} for i in range(300)]
    transport, seen = scripted(array_response(items, fail_after=2_000), array_response(items, fail_after=2_000), array_response(items))
    http = client(transport)
    # batch_size above the item count: nothing is handed over before the body ends
    assert [i for b in streamed(http, batch_size=1_000) for i in b] == items
    assert len(seen) == 3 and http.stats.retries == 2 and http.stats.by_status == {"network": 2, "200": 1}


def test_a_stream_broken_after_items_were_handed_over_fails_at_once(monkeypatch):
    from feedback_pipeline import arraystream

    monkeypatch.setattr(arraystream, "PIECE_BYTES", 8_192)
    items = [{"id": i, "pad": "x" * 50} for i in range(3_000)]
    transport, seen = scripted(array_response(items, chunk=4_096, fail_after=100_000), array_response(items))
    http = client(transport)
    received = []
    with pytest.raises(ProviderUnavailable) as info:
        for batch in http.stream_json_items("http://api/x", endpoint="list items", batch_size=100):
            received.extend(batch)
    assert received and received == items[: len(received)]
    message = str(info.value)
    assert "mapbox" in message and "list items" in message and "broke off after" in message and "network error" in message
    assert len(seen) == 1, "not retried: the items handed over were already used"


@pytest.mark.parametrize(
    "bad",
    [
        httpx.Response(200, content=b"<html>maintenance</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"}),
        httpx.Response(200, content=b'{"items": []}', headers={"content-type": "application/json"}),
        httpx.Response(503, content=b"<html>Service Unavailable</html>", headers={"content-type": "text/html"}),
    ],
    ids=["html", "not json", "not an array", "503"],
)
def test_a_stream_answered_with_a_bad_body_or_a_5xx_is_retried(bad):
    transport, seen = scripted(bad, array_response([{"id": 1}]))
    http = client(transport)
    assert streamed(http) == [[{"id": 1}]]
    assert len(seen) == 2 and http.stats.retries == 1


def test_a_stream_answered_with_429_honours_retry_after():
    transport, _ = scripted(httpx.Response(429, headers={"Retry-After": "7"}), array_response([1, 2]))
    sleeps: list[float] = []
    assert streamed(client(transport, sleeps=sleeps)) == [[1, 2]]
    assert sleeps == [7.0]


def test_a_refused_stream_fails_at_once_with_a_hint_and_no_secret():
    refusal = httpx.Response(401, content=f'{{"error": true, "reason": "bad key {TOKEN}"}}'.encode(), headers={"content-type": "application/json"})
    transport, seen = scripted(refusal)
    with pytest.raises(ProviderRequestError) as info:
        streamed(client(transport, hints={401: "check MAPBOX_ACCESS_TOKEN"}))
    assert info.value.status == 401 and len(seen) == 1
    assert "check MAPBOX_ACCESS_TOKEN" in str(info.value) and "bad key" in str(info.value) and TOKEN not in str(info.value)


def test_a_stream_that_never_becomes_an_array_fails_clearly_after_the_attempts():
    transport, seen = scripted(httpx.Response(200, content=b"null", headers={"content-type": "application/json"}))
    with pytest.raises(ProviderUnavailable, match="expected a JSON array") as info:
        streamed(client(transport))
    assert len(seen) == 4 and "failed after 4 attempt(s)" in str(info.value)


def test_clients_opened_at_the_same_moment_build_the_tls_context_once(monkeypatch):
    import threading
    import time

    import feedback_pipeline.http as http_module

    built = []

    def slow_context():
        built.append(threading.get_ident())
        time.sleep(0.05)  # as long as loading a CA bundle, so the threads overlap
        return object()

    monkeypatch.setattr(http_module, "_tls", None)
    monkeypatch.setattr(http_module.httpx, "create_ssl_context", slow_context)
    start = threading.Barrier(6)
    seen = []

    def open_client():
        start.wait()
        seen.append(http_module.tls_context())

    threads = [threading.Thread(target=open_client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(seen) == 6 and all(c is seen[0] for c in seen)


def test_every_client_of_a_process_verifies_servers_with_one_shared_tls_context():
    import ssl

    first, second = HttpClient("one"), HttpClient("two")
    try:
        contexts = [client._client._transport._pool._ssl_context for client in (first, second)]  # httpx 0.28's transport
    finally:
        first.close()
        second.close()
    assert contexts[0] is contexts[1] is tls_context()  # built once, not once per client
    # sharing it does not weaken it: certificates are required and host names checked
    assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
