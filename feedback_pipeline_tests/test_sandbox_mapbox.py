"""The Mapbox Feedback API emulator behaves like shared/providers/mapbox.md says.

There is no OpenAPI file for this API: the documented shapes (envelope, item, error body) are
checked by hand in ``_check_item`` / ``_check_envelope`` below.
"""

from __future__ import annotations

import base64
import random
import re
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import httpx
import orjson
import pytest

from feedback_pipeline.sandbox import mapbox as sm
from feedback_pipeline.sandbox.core import Fault

from .conftest import module_sandbox

UTC = timezone.utc
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ENVELOPE_KEYS = {"has_before", "start_cursor", "has_after", "end_cursor", "items"}


server = module_sandbox("mapbox")


@pytest.fixture
def sb(server):
    return server.reset()


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def get(client, sb, *, path=sm.PATH, token=sm.ACCESS_TOKEN, params=None):
    items = list(params.items()) if isinstance(params, dict) else list(params or [])
    if token is not None:
        items.append(("access_token", token))
    return client.get(sb.url + path, params=items)


def records(sb):
    return list(sb.sandbox.emulators["mapbox"].store.records.values())


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def page_all(client, sb, params, *, limit=1000):
    """Every item of a query, following end_cursor; also the number of requests."""
    out, cursor, n = [], None, 0
    base = list(params.items()) if isinstance(params, dict) else list(params)
    while True:
        p = base + [("limit", limit)] + ([("after", cursor)] if cursor else [])
        r = get(client, sb, params=p)
        assert r.status_code == 200, r.text
        body = r.json()
        n += 1
        out.extend(body["items"])
        if not body["has_after"]:
            return out, n
        cursor = body["end_cursor"]


def _check_envelope(body):
    assert set(body) == ENVELOPE_KEYS
    assert isinstance(body["has_before"], bool) and isinstance(body["has_after"], bool)
    assert isinstance(body["items"], list)
    for key in ("start_cursor", "end_cursor"):
        assert body[key] is None if not body["items"] else isinstance(body[key], str)


def _check_item(item):
    assert set(item) <= {"id", "status", "category", "feedback", "location", "trace_id", "metadata", "received_at", "created_at", "updated_at"}
    assert {"id", "status", "category", "feedback", "received_at", "created_at", "updated_at"} <= set(item)
    if item["id"]:
        uuid.UUID(item["id"])
    assert isinstance(item["status"], str) and isinstance(item["category"], str)
    assert item["feedback"] is None or isinstance(item["feedback"], str)
    for key in ("received_at", "updated_at"):
        assert ISO_MS.match(item[key]), item[key]
    assert item["created_at"] is None or ISO_MS.match(item["created_at"])
    if item.get("location") is not None:
        loc = item["location"]
        assert set(loc) == {"place_name", "lon", "lat"}
        assert isinstance(loc["lon"], float) and isinstance(loc["lat"], float)
    assert item.get("metadata") is None or isinstance(item["metadata"], dict)


# -- auth --------------------------------------------------------------------------------


@pytest.mark.parametrize("path_suffix", ["", "/some-id"])
def test_missing_token_is_401_with_message_body(sb, client, path_suffix):
    r = get(client, sb, path=sm.PATH + path_suffix, token=None)
    assert r.status_code == 401
    assert r.json() == {"message": "Not Authorized - No Token"}


@pytest.mark.parametrize("path_suffix", ["", "/some-id"])
def test_unknown_token_is_401(sb, client, path_suffix):
    r = get(client, sb, path=sm.PATH + path_suffix, token="pk.eyJ1Ijoibm9ib2R5In0.bad")
    assert r.status_code == 401
    assert r.json() == {"message": "Not Authorized - Invalid Token"}


@pytest.mark.parametrize("path_suffix", ["", "/some-id"])
def test_token_without_feedback_scope_is_403_naming_the_scope(sb, client, path_suffix):
    r = get(client, sb, path=sm.PATH + path_suffix, token=sm.NO_SCOPE_TOKEN)
    assert r.status_code == 403
    assert set(r.json()) == {"message"}
    assert "user-feedback:read" in r.json()["message"]


def test_sandbox_tokens_look_like_long_mapbox_tokens():
    for token in (sm.ACCESS_TOKEN, sm.NO_SCOPE_TOKEN):
        assert token.startswith("pk.eyJ1Ijoi") and len(token) > 80
    assert sm.ACCESS_TOKEN != sm.NO_SCOPE_TOKEN


def test_env_points_the_pipeline_at_the_sandbox(sb):
    env = sb.sandbox.emulators["mapbox"].env("http://127.0.0.1:1")
    assert env == {"MAPBOX_ACCESS_TOKEN": sm.ACCESS_TOKEN, "MAPBOX_BASE_URL": "http://127.0.0.1:1", "MAPBOX_ACCOUNT": sm.ACCOUNT}


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "abc", "1.5", ""])
def test_limit_outside_1_to_1000_is_400(sb, client, limit):
    r = get(client, sb, params={"limit": limit})
    assert r.status_code == 400
    assert set(r.json()) == {"message"} and "limit" in r.json()["message"]


@pytest.mark.parametrize("limit", [1, 1000])
def test_limit_bounds_are_accepted(sb, client, limit):
    r = get(client, sb, params={"limit": limit})
    assert r.status_code == 200
    assert len(r.json()["items"]) == min(limit, len(records(sb)))


def test_default_limit_is_100(sb, client):
    assert len(get(client, sb).json()["items"]) == 100


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"sort_by": "id"}, "sort_by"),
        ({"sort_by": "CREATED_AT"}, "sort_by"),
        ({"order": "descending"}, "order"),
        ({"status": "open"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"updated_before": "2025-13-40T00:00:00Z"}, "updated_before"),
        ({"received_after": ""}, "received_after"),
        ({"after": "not-a-cursor!"}, "cursor"),
        ({"after": base64.b64encode(b'{"id": 1}').decode()}, "cursor"),
        ({"before": base64.b64encode(b"[1, 2]").decode()}, "cursor"),
    ],
)
def test_invalid_parameters_are_400_with_message(sb, client, params, word):
    r = get(client, sb, params=params)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"message"} and word in body["message"]


def test_after_and_before_together_is_400(sb, client):
    first = get(client, sb, params={"limit": 5}).json()
    r = get(client, sb, params={"after": first["end_cursor"], "before": first["start_cursor"]})
    assert r.status_code == 400 and "message" in r.json()


def test_unknown_parameters_are_ignored(sb, client):
    plain = get(client, sb, params={"limit": 10}).json()
    odd = get(client, sb, params={"limit": 10, "page": 3, "fields": "id"}).json()
    assert odd == plain


# -- envelope, items, ordering -----------------------------------------------------------


def test_envelope_and_items_have_the_documented_shape(sb, client):
    items, _ = page_all(client, sb, {})
    assert len(items) == len(records(sb))
    for item in items:
        _check_item(item)
    _check_envelope(get(client, sb, params={"limit": 3}).json())
    _check_envelope(get(client, sb, params={"search": "no such text anywhere"}).json())


def test_empty_result_has_null_cursors_and_no_more(sb, client):
    body = get(client, sb, params={"search": "no such text anywhere"}).json()
    assert body == {"has_before": False, "start_cursor": None, "has_after": False, "end_cursor": None, "items": []}


def test_default_order_is_received_at_ascending(sb, client):
    items = get(client, sb, params={"limit": 1000}).json()["items"]
    keys = [(ts(i["received_at"]), i["id"]) for i in items]
    assert keys == sorted(keys)


@pytest.mark.parametrize("sort_by", ["received_at", "created_at", "updated_at"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sort_by_and_order(sb, client, sort_by, order):
    items = get(client, sb, params={"limit": 1000, "sort_by": sort_by, "order": order}).json()["items"]
    assert len(items) == len(records(sb))
    # A record without created_at is filed under its received_at.
    keys = [(ts(i[sort_by] or i["received_at"]), i["id"]) for i in items]
    assert keys == sorted(keys, reverse=order == "desc")


def test_get_single_item_by_id(sb, client):
    record = next(r for r in records(sb) if r["id"])
    r = get(client, sb, path=f"{sm.PATH}/{record['id']}")
    assert r.status_code == 200 and r.json() == record
    missing = get(client, sb, path=f"{sm.PATH}/{uuid.uuid4()}")
    assert missing.status_code == 404 and set(missing.json()) == {"message"}


# -- filters -----------------------------------------------------------------------------


def test_repeated_status_matches_any_value(sb, client):
    items, _ = page_all(client, sb, [("status", "fixed"), ("status", "reviewed")])
    expected = {r["id"] for r in records(sb) if r["status"] in ("fixed", "reviewed")}
    assert {i["id"] for i in items} == expected and expected
    assert len(items) == len(expected)


def test_repeated_category_feedback_id_and_trace_id_match_any_value(sb, client):
    recs = records(sb)
    cats = sorted({r["category"] for r in recs})[:2]
    items, _ = page_all(client, sb, [("category", c) for c in cats])
    assert {i["id"] for i in items} == {r["id"] for r in recs if r["category"] in cats}
    ids = [r["id"] for r in recs if r["id"]][:3]
    items, _ = page_all(client, sb, [("feedback_id", i) for i in ids])
    assert sorted(i["id"] for i in items) == sorted(ids)
    traces = [r["trace_id"] for r in recs if r.get("trace_id")][:2]
    items, _ = page_all(client, sb, [("trace_id", t) for t in traces])
    assert {i["trace_id"] for i in items} == set(traces)


def test_filters_combine_with_and(sb, client):
    items, _ = page_all(client, sb, [("status", "received"), ("category", "poi_details")])
    expected = {r["id"] for r in records(sb) if r["status"] == "received" and r["category"] == "poi_details"}
    assert {i["id"] for i in items} == expected


def test_search_is_a_substring_of_feedback(sb, client):
    items, _ = page_all(client, sb, {"search": "drop table"})
    expected = {r["id"] for r in records(sb) if isinstance(r["feedback"], str) and "drop table" in r["feedback"].lower()}
    assert expected and {i["id"] for i in items} == expected


@pytest.mark.parametrize("field", ["created", "received", "updated"])
@pytest.mark.parametrize("sort_by", ["created_at", "updated_at"])
def test_time_bounds_are_strict(sb, client, field, sort_by):
    recs = [r for r in records(sb) if r["created_at"] and r["id"]]
    target = recs[len(recs) // 2]
    at = target[f"{field}_at"]
    ms = timedelta(milliseconds=1)

    def ids(**bounds):
        params = {"sort_by": sort_by, **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in bounds.items()}}
        return {i["id"] for i in page_all(client, sb, params)[0]}

    assert target["id"] not in ids(**{f"{field}_after": at})
    assert target["id"] not in ids(**{f"{field}_before": at})
    assert target["id"] in ids(**{f"{field}_after": ts(at) - ms, f"{field}_before": ts(at) + ms})
    # A bound without a zone is read as UTC.
    assert target["id"] in ids(**{f"{field}_after": (ts(at) - ms).replace(tzinfo=None).isoformat()})


def test_created_window_matches_the_store(sb, client):
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    end = start + timedelta(days=2)
    items, _ = page_all(client, sb, {"sort_by": "created_at", "created_after": start.isoformat(), "created_before": end.isoformat()})
    expected = {r["id"] for r in records(sb) if r["created_at"] and start < ts(r["created_at"]) < end}
    assert {i["id"] for i in items if i["created_at"]} == expected


# -- paging ------------------------------------------------------------------------------


@pytest.mark.parametrize("sort_by", ["received_at", "created_at", "updated_at"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_returns_every_record_exactly_once(sb, client, sort_by, order):
    items, requests = page_all(client, sb, {"sort_by": sort_by, "order": order}, limit=37)
    ids = [i["id"] for i in items]
    assert Counter(ids) == Counter(r["id"] for r in records(sb))
    assert requests == -(-len(ids) // 37)


def test_paging_with_inserts_between_pages_returns_each_record_once(sb, client):
    original = {r["id"] for r in records(sb)}
    rng = random.Random(3)
    emulator = sb.sandbox.emulators["mapbox"]
    now = datetime.now(UTC)
    seen, cursor, inserted_after = [], None, set()
    while True:
        params = {"limit": 50, "sort_by": "received_at", **({"after": cursor} if cursor else {})}
        body = get(client, sb, params=params).json()
        seen.extend(i["id"] for i in body["items"])
        if not body["has_after"]:
            break
        cursor = body["end_cursor"]
        edge = ts(body["items"][-1]["received_at"])
        # One record before the page edge (must not shift the next page) and one after it.
        for when in (edge - timedelta(hours=rng.uniform(1, 48)), edge + timedelta(minutes=rng.uniform(1, 60))):
            record = emulator.generate_day(rng, when.date(), 1, now)[0]
            record.update(id=str(uuid.uuid4()), received_at=sm.data.iso_z(min(when, now)))
            sb.sandbox.add("mapbox", record)
            if ts(record["received_at"]) > edge:
                inserted_after.add(record["id"])
    counts = Counter(seen)
    assert max(counts.values()) == 1
    assert original <= set(seen)
    assert inserted_after <= set(seen)


def test_cursor_is_base64_json_of_id_and_sort_timestamp(sb, client):
    body = get(client, sb, params={"limit": 2, "sort_by": "updated_at"}).json()
    raw = orjson.loads(base64.b64decode(body["end_cursor"]))
    last = body["items"][-1]
    assert raw == {"id": last["id"], "timestamp": last["updated_at"]}
    first = orjson.loads(base64.b64decode(body["start_cursor"]))
    assert first == {"id": body["items"][0]["id"], "timestamp": body["items"][0]["updated_at"]}


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_before_cursor_returns_the_previous_page_and_flags(sb, client, order):
    p1 = get(client, sb, params={"limit": 10, "order": order}).json()
    assert p1["has_before"] is False and p1["has_after"] is True
    p2 = get(client, sb, params={"limit": 10, "order": order, "after": p1["end_cursor"]}).json()
    assert p2["has_before"] is True and p2["has_after"] is True
    assert not {i["id"] for i in p1["items"]} & {i["id"] for i in p2["items"]}
    back = get(client, sb, params={"limit": 10, "order": order, "before": p2["start_cursor"]}).json()
    assert back["items"] == p1["items"]
    assert back["has_before"] is False and back["has_after"] is True
    last = get(client, sb, params={"limit": 1000, "order": order, "after": p1["end_cursor"]}).json()
    assert last["has_after"] is False and last["has_before"] is True


# -- faults and the request log ----------------------------------------------------------


def test_rate_limit_fault_answers_429_the_mapbox_way_with_and_without_retry_after(sb, client):
    sb.sandbox.state.add_fault("mapbox", Fault("rate_limit", retry_after="7"))
    sb.sandbox.state.add_fault("mapbox", Fault("rate_limit"))
    r = get(client, sb)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json() == {"message": "Too Many Requests"}
    assert r.headers["x-rate-limit-interval"] == "60" and int(r.headers["x-rate-limit-limit"]) > 0
    assert int(r.headers["x-rate-limit-reset"]) > time.time()
    r = get(client, sb)
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert get(client, sb).status_code == 200


def test_server_error_fault_is_html_with_the_status(sb, client):
    sb.sandbox.state.add_fault("mapbox", Fault("server_error", status=502, count=2))
    for _ in range(2):
        r = get(client, sb)
        assert r.status_code == 502 and "text/html" in r.headers["content-type"]
    assert get(client, sb).status_code == 200


def test_bad_envelope_fault_is_a_200_of_the_wrong_shape(sb, client):
    sb.sandbox.state.add_fault("mapbox", Fault("bad_envelope"))
    r = get(client, sb)
    assert r.status_code == 200 and "items" not in r.json()


def test_drop_fault_breaks_the_connection_after_n_requests(sb, client):
    sb.sandbox.state.add_fault("mapbox", Fault("drop", after=1))
    assert get(client, sb).status_code == 200
    with pytest.raises(httpx.TransportError):
        get(client, sb)
    assert get(client, sb).status_code == 200


def test_request_log_masks_the_access_token(sb, client):
    get(client, sb, params={"limit": 3})
    get(client, sb, token=sm.NO_SCOPE_TOKEN)
    log = sb.sandbox.state.requests_for("mapbox")
    assert [e.status for e in log] == [200, 403]
    assert ("access_token", "***") in log[0].query and ("limit", "3") in log[0].query
    text = repr(sb.sandbox.state.log)
    assert sm.ACCESS_TOKEN not in text and sm.NO_SCOPE_TOKEN not in text
    assert "pk.eyJ" not in client.get(sb.url + "/_control/requests").text


# -- generated data ----------------------------------------------------------------------


def _generate(days=90, per_day=20, seed=7):
    from feedback_pipeline.sandbox.core import SandboxState

    emulator = sm.MapboxEmulator(SandboxState())
    rng = random.Random(f"{seed}:mapbox")
    now = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    out = []
    for i in range(days):
        out.extend(emulator.generate_day(rng, date(2026, 3, 15) - timedelta(days=days - 1 - i), per_day, now))
    return out, now


def test_generation_is_deterministic():
    assert _generate(days=10)[0] == _generate(days=10)[0]
    assert _generate(days=10)[0] != _generate(days=10, seed=8)[0]


def test_generated_records_cover_the_variants_and_rejects_are_rare():
    recs, now = _generate()
    for r in recs:
        _check_item(r)
        assert ts(r["received_at"]) <= now and ts(r["updated_at"]) <= now
        assert ts(r["updated_at"]) >= ts(r["received_at"])
        if r["created_at"]:
            assert ts(r["created_at"]) <= ts(r["received_at"])
    statuses = Counter(r["status"] for r in recs)
    assert set(statuses) == {*sm.STATUSES, sm.UNDOCUMENTED_STATUS}
    assert statuses[sm.UNDOCUMENTED_STATUS] < statuses["fixed"]
    assert any("location" not in r for r in recs) and any(r.get("location") is None and "location" in r for r in recs)
    assert any("trace_id" not in r for r in recs) and any(r.get("trace_id") is None and "trace_id" in r for r in recs)
    metas = [r.get("metadata") for r in recs]
    assert any(m is None for m in metas) and any(isinstance(m, dict) and "userId" not in m for m in metas)
    assert any(isinstance(m, dict) and m.get("userId") is None and "userId" in m for m in metas)
    assert any(isinstance(m, dict) and None in m.values() for m in metas)
    assert any(r["feedback"] == "" for r in recs) and any(r["feedback"] is None for r in recs)
    # Midnight edge cases on created_at (the collected time).
    created = [ts(r["created_at"]) for r in recs if r["created_at"]]
    assert any(c.time() == datetime.min.time() for c in created)
    assert any(c.hour == 23 and c.minute == 59 and c.second == 59 and c.microsecond == 999_000 for c in created)
    # Records the connector must reject: two per 30 days, none in the last 20 (data.bad_record_day).
    bad = [r for r in recs if not r["id"] or not r["created_at"]]
    assert len(bad) == 2 * 90 // 30  # _generate: 90 days


def test_touch_bumps_updated_at(sb, client):
    record = next(r for r in records(sb) if r["id"])
    before = record["updated_at"]
    time.sleep(0.002)
    updated = sb.sandbox.update("mapbox", record["id"], {"status": "fixed"})
    assert ISO_MS.match(updated["updated_at"]) and ts(updated["updated_at"]) > ts(before)
    items = get(client, sb, params={"sort_by": "updated_at", "order": "desc", "limit": 1}).json()["items"]
    assert items[0]["id"] == record["id"] and items[0]["status"] == "fixed"


def test_6000_records_page_through_in_full_1000_record_pages(server, client):
    # Throughput is measured by `make bench` (sandbox rates), not here.
    state = server.sandbox.state
    state.per_day = 200
    server.sandbox.generate()
    try:
        items, _ = page_all(client, server, {"sort_by": "created_at"})
        assert len(items) == 6000 and len({i["id"] for i in items}) == 6000
    finally:
        state.per_day = 20
        server.sandbox.generate()
