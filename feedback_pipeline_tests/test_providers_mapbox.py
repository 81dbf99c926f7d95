"""The Mapbox connector against the sandbox over loopback (real HTTP, fast retries)."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from feedback_pipeline.http import BadPage, ProviderRequestError, ProviderUnavailable
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import get_spec
from feedback_pipeline.providers.base import ConfigurationError, Query, StaleCursor, Window
from feedback_pipeline.providers.mapbox import (
    CHANGES_MARGIN,
    SPEC,
    AccessTokenTransport,
    MapboxProvider,
    _check_envelope,
    _env_proxy,
)
from feedback_pipeline.schema import RejectReason
from feedback_pipeline.sandbox import mapbox as sm
from feedback_pipeline.sandbox.core import Fault

from .conftest import FAST_RETRIES, fetch_all, module_sandbox, recent_window

UTC = timezone.utc
TOKEN = sm.ACCESS_TOKEN


server = module_sandbox("mapbox")


@pytest.fixture
def sb(server):
    return server.reset()


def make_provider(sb, **overrides) -> MapboxProvider:
    return SPEC.provider_from_env(sb.env(), policy=FAST_RETRIES, overrides=overrides)


def store_records(sb):
    return list(sb.sandbox.emulators["mapbox"].store.records.values())


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def in_window(batch: FeedbackBatch, window: Window) -> list[dict]:
    """The rows the engine keeps: collected in the window (it drops the margin's extras)."""
    return [r for r in batch.rows().to_pylist() if window.contains(r["collected_at"])]


def expected_for(sb, window: Window):
    """(ids that must become rows, ids that must be rejected) for a window read."""
    rows, rejected = set(), set()
    for r in store_records(sb):
        created = r["created_at"]
        if created is None:
            # Filed by the API under received_at: served, and must be rejected.
            if window.contains(ts(r["received_at"])):
                rejected.add(r["id"])
        elif window.contains(ts(created)):
            (rows if r["id"] else rejected).add(r["id"])
    return rows, rejected


def logged_params(sb):
    return [dict(e.query) for e in sb.sandbox.state.requests_for("mapbox")]


# -- settings ----------------------------------------------------------------------------


def test_registry_points_at_this_class():
    assert get_spec("mapbox").provider is MapboxProvider
    assert MapboxProvider.supports_changes is True


def test_missing_token_fails_before_any_request_naming_the_variable():
    with pytest.raises(ConfigurationError, match="MAPBOX_ACCESS_TOKEN"):
        MapboxProvider(SPEC.resource(access_token=None))


def test_malformed_base_url_is_refused_naming_the_variable():
    with pytest.raises(ConfigurationError, match="MAPBOX_BASE_URL"):
        MapboxProvider(SPEC.resource(access_token="x", base_url="api.mapbox.com"))


def test_defaults_are_the_public_api_and_the_default_account():
    provider = MapboxProvider(SPEC.resource(access_token="x"))
    assert provider.url == "https://api.mapbox.com/user-feedback/v1/feedback"
    assert provider.account_id == "default"
    resource = SPEC.resource_from_env({"MAPBOX_ACCESS_TOKEN": "x"})
    assert resource.base_url == "https://api.mapbox.com" and resource.account == "default"
    assert SPEC.by_key["access_token"].secret
    assert SPEC.is_configured({"MAPBOX_ACCESS_TOKEN": "x"}) and not SPEC.is_configured({})


def test_account_id_is_mapbox_account_and_base_url_may_end_with_a_slash(sb):
    provider = make_provider(sb, base_url=sb.url + "/", account="acme")
    assert provider.account_id == "acme"
    assert provider.url == sb.url + "/user-feedback/v1/feedback"
    batch, _, _ = fetch_all(provider, Query(recent_window(1)))
    assert {r["account_id"] for r in batch.rows().to_pylist()} == {"acme"}


# -- window reads ------------------------------------------------------------------------


def test_window_returns_exactly_the_sandbox_records_collected_in_it(sb):
    window = recent_window(30)
    batch, resumes, stats = fetch_all(make_provider(sb), Query(window))
    rows, rejected = expected_for(sb, window)
    kept = in_window(batch, window)
    assert sorted(r["feedback_id"] for r in kept) == sorted(rows)
    rejects = batch.rejects().to_pylist()
    assert {r["feedback_id"] or "" for r in rejects} == rejected and len(rejects) == len(rejected) >= 2
    assert {r["reason"] for r in rejects} == {RejectReason.MISSING_COLLECTED_AT, RejectReason.MISSING_ID}
    assert resumes == [None] and stats.requests == 1


def test_window_request_uses_created_at_order_max_limit_and_a_margin_before_the_start(sb):
    window = Window.for_days(*(2 * [datetime.now(UTC).date() - timedelta(days=3)]))
    fetch_all(make_provider(sb), Query(window))
    (params,) = logged_params(sb)
    assert params["sort_by"] == "created_at" and params["order"] == "asc" and params["limit"] == "1000"
    assert ts(params["created_after"]) < window.start <= ts(params["created_after"]) + timedelta(seconds=5)
    assert ts(params["created_before"]) == window.end
    assert "updated_after" not in params and params["access_token"] == "***"


def test_midnight_boundaries_land_on_the_right_date(sb):
    day = datetime.now(UTC).date() - timedelta(days=2)
    window = Window.for_days(day, day)
    start = window.start
    base = {"status": "received", "category": "other_cat", "feedback": "edge", "metadata": {"userId": "u"}}
    cases = {
        "edge-start": start,  # exactly midnight: this day
        "edge-last-ms": window.end - timedelta(milliseconds=1),  # 23:59:59.999: this day
        "edge-next-day": window.end,  # next midnight: the next day
        "edge-prev-day": start - timedelta(milliseconds=1),  # 23:59:59.999 the day before
    }
    for rid, when in cases.items():
        iso = sm.data.iso_z(when)
        sb.sandbox.add("mapbox", {"id": rid, **base, "received_at": iso, "created_at": iso, "updated_at": iso})
    batch, _, _ = fetch_all(make_provider(sb), Query(window))
    kept = {r["feedback_id"]: r for r in in_window(batch, window)}
    assert {"edge-start", "edge-last-ms"} <= set(kept)
    assert not {"edge-next-day", "edge-prev-day"} & set(kept)
    assert kept["edge-start"]["collected_date"] == day == kept["edge-last-ms"]["collected_date"]
    # The emulator's created_after is strict: only the margin brings the midnight record in.
    assert "edge-start" in {r["feedback_id"] for r in batch.rows().to_pylist()}


def test_paging_across_many_pages_returns_each_record_once(sb):
    state = sb.sandbox.state
    state.per_day = 100
    sb.sandbox.generate()
    window = recent_window(30)
    batch, resumes, stats = fetch_all(make_provider(sb), Query(window))
    rows, rejected = expected_for(sb, window)
    ids = [r["feedback_id"] for r in in_window(batch, window)]
    assert len(ids) == len(set(ids)) == len(rows) and set(ids) == rows
    total = len(rows) + len(rejected)
    assert stats.requests == len(resumes) == -(-total // 1000) >= 3
    assert all(r and r["after"] for r in resumes[:-1]) and resumes[-1] is None
    assert [p.get("after") for p in logged_params(sb)][1:] == [r["after"] for r in resumes[:-1]]


def test_resume_from_a_committed_page_fetches_only_the_rest(sb):
    sb.sandbox.state.per_day = 100
    sb.sandbox.generate()
    window = recent_window(30)
    provider = make_provider(sb)
    full, resumes, _ = fetch_all(provider, Query(window))
    # Pretend the run died after committing page 1.
    with provider.open() as http:
        pages = provider.fetch(Query(window), http)
        first = next(pages)
        pages.close()
    assert first.resume == resumes[0]
    sb.sandbox.state.clear_log()
    rest, rest_resumes, stats = fetch_all(provider, Query(window, resume=first.resume))
    first_ids = [r.get("id") for r in first.records]
    rest_ids = [r["feedback_id"] for r in rest.rows().to_pylist()]
    assert not set(first_ids) & set(rest_ids)
    assert len(first_ids) + len(rest_ids) + rest.reject_count == len(full) + full.reject_count
    assert stats.requests == len(resumes) - 1 and rest_resumes == resumes[1:]
    assert logged_params(sb)[0]["after"] == first.resume["after"]


def test_a_refused_stored_cursor_raises_stale_cursor(sb):
    query = Query(recent_window(3), resume={"sort_by": "created_at", "after": "bm90IGEgY3Vyc29y"})
    with pytest.raises(StaleCursor) as info:
        fetch_all(make_provider(sb), query)
    assert TOKEN not in str(info.value)


def test_a_resume_value_of_the_other_mode_is_not_reused(sb):
    window = recent_window(3)
    batch, _, _ = fetch_all(make_provider(sb), Query(window, changes_since=datetime.now(UTC) - timedelta(days=1), resume={"sort_by": "created_at", "after": "x"}))
    assert "after" not in logged_params(sb)[0]


def test_an_empty_page_ends_the_query_even_if_has_after_says_more():
    def handler(request):
        return httpx.Response(200, json={"has_before": False, "start_cursor": None, "has_after": True, "end_cursor": None, "items": []})

    provider = MapboxProvider(SPEC.resource(access_token=TOKEN, base_url="http://mapbox.test"), policy=FAST_RETRIES, inner_transport=httpx.MockTransport(handler))
    batch, resumes, stats = fetch_all(provider, Query(recent_window(1)))
    assert len(batch) == 0 and resumes == [None] and stats.requests == 1


def test_envelope_check_refuses_wrong_shapes():
    _check_envelope({"has_before": False, "start_cursor": None, "has_after": False, "end_cursor": None, "items": []})
    for body in ([], {"items": {}}, {"items": [], "has_after": "no"}, {"items": [{}], "has_after": True, "end_cursor": None}, {"type": "FeatureCollection", "features": []}):
        with pytest.raises(BadPage):
            _check_envelope(body)


# -- changes -----------------------------------------------------------------------------


def test_changes_read_only_records_updated_since_within_the_window(sb):
    window = recent_window(10)
    old = {r["id"] for r in store_records(sb)}
    since = datetime.now(UTC) + timedelta(minutes=5)  # nothing generated is this recent
    batch, _, _ = fetch_all(make_provider(sb), Query(window, changes_since=since))
    assert len(batch) == 0
    inside = [r for r in store_records(sb) if r["id"] and r["created_at"] and window.contains(ts(r["created_at"]))][:3]
    outside = next(r for r in store_records(sb) if r["id"] and r["created_at"] and ts(r["created_at"]) < window.start)
    for r in [*inside, outside]:
        sb.sandbox.update("mapbox", r["id"], {"status": "fixed"})
    sb.sandbox.state.clear_log()
    since = datetime.now(UTC) - timedelta(seconds=1)
    batch, resumes, _ = fetch_all(make_provider(sb), Query(window, changes_since=since))
    got = {r["feedback_id"]: r for r in in_window(batch, window)}
    # The query reaches CHANGES_MARGIN back (the boundary is re-read): records the sandbox
    # generated within that minute (today's, just after midnight) come back too.
    margin = {
        r["id"] for r in store_records(sb)
        if r["id"] and r["created_at"] and window.contains(ts(r["created_at"])) and ts(r["updated_at"]) >= since - CHANGES_MARGIN
    }
    assert {r["id"] for r in inside} <= set(got) == margin and outside["id"] not in got and old >= set(got)
    assert all(got[r["id"]]["status"] == "resolved" and got[r["id"]]["provider_status"] == "fixed" for r in inside)
    (params,) = logged_params(sb)
    assert params["sort_by"] == "updated_at" and params["order"] == "asc" and params["limit"] == "1000"
    assert ts(params["updated_after"]) < since and ts(params["created_before"]) == window.end
    assert ts(params["created_after"]) < window.start


def test_changes_page_and_resume_like_windows(sb):
    sb.sandbox.state.per_day = 100
    sb.sandbox.generate()
    window = recent_window(30)
    since = datetime.now(UTC) - timedelta(days=40)
    provider = make_provider(sb)
    full, resumes, _ = fetch_all(provider, Query(window, changes_since=since))
    assert len(resumes) >= 3 and all(r["sort_by"] == "updated_at" for r in resumes[:-1])
    rest, _, _ = fetch_all(provider, Query(window, changes_since=since, resume=resumes[0]))
    assert len(rest) + rest.reject_count == len(full) + full.reject_count - 1000


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, "0", "1"])
def test_429_is_retried_with_and_without_retry_after(sb, retry_after):
    sb.sandbox.state.add_fault("mapbox", Fault("rate_limit", count=2, retry_after=retry_after))
    window = recent_window(5)
    batch, _, stats = fetch_all(make_provider(sb), Query(window))
    assert stats.by_status.get("429") == 2 and stats.retries == 2
    assert len(in_window(batch, window)) == len(expected_for(sb, window)[0])
    if retry_after == "1":
        assert stats.wait_seconds >= 2.0


def test_a_5xx_storm_of_html_pages_is_survived(sb):
    for status in (500, 502, 503, 504):
        sb.sandbox.state.add_fault("mapbox", Fault("server_error", status=status))
    window = recent_window(5)
    batch, _, stats = fetch_all(make_provider(sb), Query(window))
    assert stats.retries == 4 and len(in_window(batch, window)) == len(expected_for(sb, window)[0])


def test_an_endless_5xx_storm_fails_clearly_after_the_retries(sb):
    sb.sandbox.state.add_fault("mapbox", Fault("server_error", status=503, count=None))
    with pytest.raises(ProviderUnavailable, match="HTTP 503") as info:
        fetch_all(make_provider(sb), Query(recent_window(5)))
    assert "attempt" in str(info.value) and TOKEN not in str(info.value)


def test_a_dropped_connection_and_bad_pages_are_retried(sb):
    state = sb.sandbox.state
    state.per_day = 100
    sb.sandbox.generate()
    # Page 2 breaks three ways before it comes through.
    for kind in ("drop", "html_200", "bad_envelope"):
        state.add_fault("mapbox", Fault(kind, after=1 if kind == "drop" else 0))
    window = recent_window(30)
    batch, _, stats = fetch_all(make_provider(sb), Query(window))
    assert stats.retries == 3 and stats.by_status.get("network") == 1
    ids = [r["feedback_id"] for r in in_window(batch, window)]
    assert len(ids) == len(set(ids)) == len(expected_for(sb, window)[0])


def test_401_fails_at_once_naming_mapbox_access_token(sb):
    with pytest.raises(ProviderRequestError) as info:
        fetch_all(make_provider(sb, access_token="pk.eyJ1IjoibWFsbG9yeSJ9.bad"), Query(recent_window(1)))
    assert info.value.status == 401 and "MAPBOX_ACCESS_TOKEN" in str(info.value)
    assert len(sb.sandbox.state.requests_for("mapbox")) == 1


def test_403_says_the_token_lacks_the_user_feedback_read_scope(sb):
    with pytest.raises(ProviderRequestError) as info:
        fetch_all(make_provider(sb, access_token=sm.NO_SCOPE_TOKEN), Query(recent_window(1)))
    message = str(info.value)
    assert info.value.status == 403 and "user-feedback:read" in message and "MAPBOX_ACCESS_TOKEN" in message
    assert sm.NO_SCOPE_TOKEN not in message


def test_404_points_at_the_base_url(sb):
    with pytest.raises(ProviderRequestError, match="MAPBOX_BASE_URL"):
        fetch_all(make_provider(sb, base_url=sb.url + "/nowhere"), Query(recent_window(1)))


# -- secrets -----------------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_the_token_appears_in_no_log_line_or_exception(sb, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "feedback_pipeline"):
        caplog.set_level(logging.DEBUG, logger=name)
    errors: list[BaseException] = []
    state = sb.sandbox.state
    window = recent_window(2)

    def attempt(provider, **fault):
        if fault:
            state.add_fault("mapbox", Fault(**fault))
        try:
            fetch_all(provider, Query(window))
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            errors.append(exc)
        state.clear_faults()

    secret_403 = sm.NO_SCOPE_TOKEN
    secret_401 = "pk.eyJ1IjoidW5rbm93bi11c2VyIiwiYSI6ImNsejhzYngwIn0.W1Xy2Zq9VvRr8sTt7UuKk"
    attempt(make_provider(sb))  # success
    attempt(make_provider(sb, access_token=secret_401))  # 401
    attempt(make_provider(sb, access_token=secret_403))  # 403
    attempt(make_provider(sb), kind="server_error", status=503, count=None)  # 5xx exhausted
    attempt(make_provider(sb), kind="drop", count=None)  # network exhausted
    attempt(make_provider(sb), kind="rate_limit", count=None, retry_after="0")  # 429 exhausted
    attempt(make_provider(sb, base_url=_closed_port_url()))  # connection refused
    attempt(make_provider(sb), kind="bad_envelope", count=None)  # bad pages exhausted
    assert len(errors) == 7
    # The httpx logger really was on: its request lines are here, without the token.
    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)
    texts = [caplog.text] + [r.getMessage() for r in caplog.records] + [repr(r.args) for r in caplog.records]
    for exc in errors:
        texts += [str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)]
    blob = "\n".join(texts)
    for secret in (TOKEN, secret_401, secret_403):
        assert secret not in blob
    assert "eyJ1Ijoi" not in blob


def test_the_token_reaches_the_api_but_not_the_request_httpx_sees():
    seen: list[str] = []

    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(200, json={"has_before": False, "start_cursor": None, "has_after": False, "end_cursor": None, "items": []})

    transport = AccessTokenTransport(TOKEN, inner=httpx.MockTransport(handler))
    with httpx.Client(transport=transport) as client:
        response = client.get("http://mapbox.test/user-feedback/v1/feedback", params={"limit": 1})
    assert parse_qs(urlsplit(seen[0]).query) == {"limit": ["1"], "access_token": [TOKEN]}
    assert TOKEN not in str(response.request.url)


def test_the_token_transport_verifies_servers_with_the_process_tls_context():
    from feedback_pipeline.http import tls_context

    transport = AccessTokenTransport(TOKEN)
    try:
        inner = transport._transport_for(httpx.URL("https://api.mapbox.com/user-feedback/v1/feedback"))
        assert inner._pool._ssl_context is tls_context()  # httpx 0.28's transport: no CA bundle of its own
    finally:
        transport.close()


def test_environment_proxies_are_still_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert _env_proxy(httpx.URL("https://api.mapbox.com/x")) == "http://proxy.internal:3128"
    assert _env_proxy(httpx.URL("http://127.0.0.1:8000/x")) is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy", raising=False)
    assert _env_proxy(httpx.URL("https://api.mapbox.com/x")) is None


# -- field mapping -----------------------------------------------------------------------


FULL = {
    "id": "40eae4c7-b157-4b49-a091-7e1099bba77e",
    "status": "fixed",
    "category": "poi_details",
    "feedback": "  code 396 \u00a0",
    "location": {"place_name": "Financial District, Boston", "lon": -71.05011393295, "lat": 42.351484923828},
    "trace_id": "a35ab5db-dd99-45a6-966b-fc6bda2181b9",
    "metadata": {"userId": "user-123", "appVersion": "2.5.1", "sessionId": None},
    "received_at": "2025-07-28T14:10:30.123Z",
    "created_at": "2025-07-28T14:10:25.000Z",
    "updated_at": "2025-07-29T09:00:00.000Z",
}


def _normalize(records):
    batch = FeedbackBatch("mapbox", "acct")
    MapboxProvider(SPEC.resource(access_token="x", account="acct")).normalize(records, batch)
    return batch.rows().to_pylist(), batch.rejects().to_pylist()


def test_full_record_maps_per_contract():
    import orjson

    (row,), rejects = _normalize([FULL])
    assert not rejects
    assert row["provider"] == "mapbox" and row["account_id"] == "acct" and row["feedback_id"] == FULL["id"]
    assert row["collected_at"] == datetime(2025, 7, 28, 14, 10, 25, tzinfo=UTC)
    assert str(row["collected_date"]) == "2025-07-28"
    assert row["updated_at"] == datetime(2025, 7, 29, 9, 0, tzinfo=UTC)
    assert (row["status"], row["provider_status"], row["category"]) == ("resolved", "fixed", "poi_details")
    assert row["body"] == "  code 396 \u00a0" and row["user_id"] == "user-123"
    assert row["title"] is None and row["rating"] is None and row["user_email"] is None and row["page_url"] is None
    assert orjson.loads(row["attributes"]) == {
        "location": FULL["location"],
        "trace_id": FULL["trace_id"],
        "metadata": FULL["metadata"],
        "received_at": FULL["received_at"],
    }


@pytest.mark.parametrize(
    ("status", "unified"),
    [("received", "open"), ("fixed", "resolved"), ("reviewed", "resolved"), ("out_of_scope", "dismissed"), ("in_review", None), (None, None)],
)
def test_status_mapping(status, unified):
    (row,), _ = _normalize([{**FULL, "status": status}])
    assert row["status"] == unified and row["provider_status"] == status


@pytest.mark.parametrize(
    ("changes", "user_id"),
    [
        ({"metadata": None}, None),
        ({"metadata": {}}, None),
        ({"metadata": {"userId": None, "name": "com.mapbox.dash.app"}}, None),
        ({"metadata": {"userId": 12345}}, "12345"),
        ({"metadata": "not an object"}, None),
    ],
)
def test_user_id_comes_from_metadata_user_id(changes, user_id):
    import orjson

    (row,), _ = _normalize([{**FULL, **changes}])
    assert row["user_id"] == user_id
    assert orjson.loads(row["attributes"])["metadata"] == changes["metadata"]


def test_optional_fields_absent_or_null_are_kept_as_received():
    import orjson

    record = {k: v for k, v in FULL.items() if k not in ("location", "trace_id", "metadata")}
    rows, _ = _normalize([{**record, "feedback": None}, {**record, "id": "b", "feedback": "", "trace_id": None, "location": None}])
    assert rows[0]["body"] is None and orjson.loads(rows[0]["attributes"]) == {"received_at": FULL["received_at"]}
    assert rows[1]["body"] == "" and orjson.loads(rows[1]["attributes"]) == {"received_at": FULL["received_at"], "trace_id": None, "location": None}


def test_bad_records_are_rejected_never_crash():
    records = [
        "not an object",
        None,
        {**FULL, "id": ""},
        {k: v for k, v in FULL.items() if k != "id"},
        {**FULL, "id": "c1", "created_at": None},
        {**FULL, "id": "c2", "created_at": "yesterday"},
        {**FULL, "id": "c3", "created_at": "1969-12-31T23:59:59.000Z"},
        {**FULL, "id": 42, "updated_at": "garbage"},
        {**FULL, "id": "c4", "created_at": "2025-07-28T14:10:25"},
        {**FULL, "id": "c5", "feedback": "nul\x00 and \ud800"},
    ]
    rows, rejects = _normalize(records)
    assert [r["reason"] for r in rejects] == [
        RejectReason.NOT_AN_OBJECT,
        RejectReason.NOT_AN_OBJECT,
        RejectReason.MISSING_ID,
        RejectReason.MISSING_ID,
        RejectReason.MISSING_COLLECTED_AT,
        RejectReason.UNPARSEABLE_COLLECTED_AT,
        RejectReason.COLLECTED_AT_OUT_OF_RANGE,
    ]
    by_id = {r["feedback_id"]: r for r in rows}
    assert by_id["42"]["updated_at"] is None
    assert by_id["c4"]["collected_at"] == datetime(2025, 7, 28, 14, 10, 25, tzinfo=UTC)
    assert by_id["c5"]["body"] == "nul\ufffd and \ufffd"


def test_every_generated_variant_normalizes(sb):
    records = store_records(sb)
    rows, rejects = _normalize(records)
    assert len(rows) + len(rejects) == len(records)
    assert {r["status"] for r in rows} == {"open", "resolved", "dismissed", None}
    assert any(r["user_id"] is None for r in rows) and any(r["user_id"] for r in rows)
