"""The Formbricks Hub connector against the sandbox over loopback (CONTRACT.md section 4 mapping)."""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest

from feedback_pipeline.http import ProviderRequestError, ProviderUnavailable
from feedback_pipeline.normalize import FeedbackBatch, parse_timestamp
from feedback_pipeline.providers import formbricks as connector_module
from feedback_pipeline.providers.base import ConfigurationError, Query, StaleCursor, Window
from feedback_pipeline.providers.formbricks import SPEC, FormbricksProvider, window_until
from feedback_pipeline.sandbox import core
from feedback_pipeline.sandbox import formbricks as emulator_module
from feedback_pipeline.sandbox.formbricks import API_KEY, FOREIGN_TENANT, TENANT
from feedback_pipeline.schema import RejectReason

from .conftest import FAST_RETRIES, fetch_all, module_sandbox
from .test_sandbox_formbricks import OpenAPIRequest, hub_spec

UTC = timezone.utc
END = date(2026, 3, 15)  # a fixed dataset (its update times all lie long before "now")
FULL = Window.for_days(END - timedelta(days=29), END)
PATH = "/v1/feedback-records"


server = module_sandbox("formbricks", end=END)


@pytest.fixture
def hub(server):
    return reset(server)


def reset(server, *, days: int = 30, per_day: int = 20):
    return server.reset(days=days, per_day=per_day, end=END)


def provider_for(server, **overrides) -> FormbricksProvider:
    return SPEC.provider_from_env(server.env(), policy=FAST_RETRIES, overrides=overrides)


def store(server) -> dict[str, dict]:
    return server.sandbox.emulators["formbricks"].store.records


def in_window(server, window: Window, tenant: str | None = TENANT) -> set[str]:
    return {
        rid for rid, r in store(server).items()
        if (tenant is None or r["tenant_id"] == tenant) and window.contains(parse_timestamp(r["collected_at"]))
    }


def row_ids(batch: FeedbackBatch) -> list[str]:
    return [r["feedback_id"] for r in batch.rows().to_pylist()]


def rows_by_id(batch: FeedbackBatch) -> dict[str, dict]:
    return {r["feedback_id"]: r for r in batch.rows().to_pylist()}


def requests(server) -> list:
    return server.sandbox.state.requests_for("formbricks")


def add_fault(server, **fault) -> None:
    httpx.post(f"{server.url}/_control/formbricks/faults", json=fault).raise_for_status()


def z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(collected: datetime | str, **fields) -> dict:
    stamp = collected if isinstance(collected, str) else z(collected)
    base = {
        "id": str(uuid.uuid4()), "collected_at": stamp, "created_at": stamp, "updated_at": stamp,
        "source_type": "survey", "field_id": "q1", "field_type": "text", "tenant_id": TENANT,
        "submission_id": str(uuid.uuid4()),
    }
    return {**base, **fields}


# -- a window is exactly the sandbox's records of that window --------------------------------


def test_a_window_returns_exactly_the_sandbox_records_of_that_window(hub):
    # 11 days around the planted foreign record (20 days before the dataset's last day, END).
    window = Window.for_days(date(2026, 2, 18), date(2026, 2, 28))
    batch, resumes, stats = fetch_all(provider_for(hub), Query(window))
    ids = row_ids(batch)
    assert len(ids) == len(set(ids))
    assert set(ids) == in_window(hub, window)
    rejects = batch.rejects().to_pylist()
    foreign = in_window(hub, window, FOREIGN_TENANT)
    assert foreign and {r["feedback_id"] for r in rejects} == foreign
    for reject in rejects:
        assert reject["reason"] == RejectReason.FOREIGN_TENANT
        assert reject["payload"] is None, "another tenant's content is never kept"
        assert reject["account_id"] == TENANT
    assert not foreign & set(ids)
    assert resumes == [None] and stats.requests == 1


def test_every_request_asks_for_the_maximum_page_and_the_window_bounds(hub):
    window = Window.for_days(date(2026, 3, 1), date(2026, 3, 2))
    fetch_all(provider_for(hub), Query(window))
    (entry,) = requests(hub)
    assert dict(entry.query) == {
        "tenant_id": TENANT, "limit": "1000",
        "since": "2026-03-01T00:00:00.000000000Z", "until": "2026-03-02T23:59:59.999999999Z",
    }


def test_the_connector_requests_validate_against_the_spec(hub, monkeypatch):
    monkeypatch.setattr(connector_module, "PAGE_SIZE", 50)
    provider = provider_for(hub)
    fetch_all(provider, Query(FULL))
    hub.sandbox.state.hub_supports_updated_sort = False
    fetch_all(provider, Query(FULL, changes_since=datetime(2026, 3, 14, tzinfo=UTC)))
    entries = requests(hub)
    assert len(entries) > 20 and any(dict(e.query).get("cursor") for e in entries)
    spec = hub_spec(relaxed=False)
    for entry in entries:
        headers = {"Authorization": "Bearer ***"}  # the log never holds the key; any bearer satisfies the scheme
        spec.validate_request(OpenAPIRequest(hub.url, entry.path, entry.query, headers))


# -- midnight -----------------------------------------------------------------------------------


def test_midnight_boundaries(hub):
    window = Window.for_days(date(2026, 3, 5), date(2026, 3, 6))
    start, end = window.start, window.end
    cases = {
        "at-start": (record(start), date(2026, 3, 5)),
        "last-microsecond": (record(end - timedelta(microseconds=1)), date(2026, 3, 6)),
        "last-millisecond-offset": (record("2026-03-07T01:59:59.999+02:00"), date(2026, 3, 6)),
        "next-midnight": (record(end), None),
        "next-midnight-offset": (record("2026-03-07T02:00:00+02:00"), None),
        "just-before-start": (record(start - timedelta(microseconds=1)), None),
    }
    for rec, _ in cases.values():
        hub.sandbox.add("formbricks", rec)
    batch, _, _ = fetch_all(provider_for(hub), Query(window))
    rows = rows_by_id(batch)
    for name, (rec, expected) in cases.items():
        if expected is None:
            assert rec["id"] not in rows, f"{name} belongs to another partition"
        else:
            assert rows[rec["id"]]["collected_date"] == expected, name
    assert window_until(end) == "2026-03-06T23:59:59.999999999Z"


# -- paging and resume --------------------------------------------------------------------------


def test_paging_across_many_pages(server):
    reset(server, days=15, per_day=100)
    try:
        window = Window.for_days(END - timedelta(days=14), END)
        batch, resumes, stats = fetch_all(provider_for(server), Query(window))
        total = len(store(server))
        assert total == 1500
        expected_pages = math.ceil(total / 1000)
        assert stats.requests == expected_pages == len(resumes) and resumes[-1] is None
        assert all(r is not None and r["mode"] == "window" and r["cursor"] for r in resumes[:-1])
        ids = row_ids(batch)
        assert len(ids) == len(set(ids)) and set(ids) == in_window(server, window)
        assert len(ids) + batch.reject_count == total
        assert all(dict(e.query)["limit"] == "1000" for e in requests(server))
    finally:
        reset(server)


def test_resume_from_a_page_resume_value_fetches_only_the_rest(server):
    reset(server, days=15, per_day=100)
    try:
        window = Window.for_days(END - timedelta(days=14), END)
        provider = provider_for(server)
        with provider.open() as http:
            first = next(iter(provider.fetch(Query(window), http)))
        assert first.resume and len(first.records) == 1000
        server.sandbox.state.clear_log()
        rest, resumes, stats = fetch_all(provider_for(server), Query(window, resume=first.resume))
        assert stats.requests == 1 and resumes == [None]
        assert dict(requests(server)[0].query)["cursor"] == first.resume["cursor"], "continues right after the page"
        first_ids = {r["id"] for r in first.records}
        rest_ids = set(row_ids(rest)) | {r["feedback_id"] for r in rest.rejects().to_pylist()}
        assert not first_ids & rest_ids
        assert first_ids | rest_ids == set(store(server))
    finally:
        reset(server)


def test_a_resume_cursor_the_hub_refuses_raises_stale_cursor(hub):
    with pytest.raises(StaleCursor):
        fetch_all(provider_for(hub), Query(FULL, resume={"mode": "window", "cursor": "not-a-cursor!"}))


# -- change feed --------------------------------------------------------------------------------


def touch_some(server, window: Window, count: int) -> list[str]:
    ids = sorted(in_window(server, window))[:count]
    for rid in ids:
        server.sandbox.update("formbricks", rid, {"value_text": "edited"})
    return ids


def test_change_feed_is_used_when_the_hub_honours_sort_updated_at(hub):
    window = Window.for_days(date(2026, 3, 1), date(2026, 3, 10))
    since = datetime.now(UTC) - timedelta(minutes=5)
    touched = touch_some(hub, window, 5)
    outside = sorted(in_window(hub, Window.for_days(date(2026, 2, 20), date(2026, 2, 21))))[0]
    hub.sandbox.update("formbricks", outside, {"value_text": "edited"})  # changed, but outside the window
    batch, resumes, stats = fetch_all(provider_for(hub), Query(window, changes_since=since))
    assert set(row_ids(batch)) == set(touched)
    assert stats.requests == 1 and resumes == [None]
    query = dict(requests(hub)[0].query)
    assert query["sort"] == "updated_at" and query["order"] == "asc"
    assert parse_timestamp(query["updated_since"]) == since


def test_change_feed_pages_and_resumes_in_updated_order(hub, monkeypatch):
    monkeypatch.setattr(connector_module, "PAGE_SIZE", 2)
    window = Window.for_days(date(2026, 3, 1), date(2026, 3, 10))
    since = datetime.now(UTC) - timedelta(minutes=5)
    touched = touch_some(hub, window, 5)
    provider = provider_for(hub)
    with provider.open() as http:
        first = next(iter(provider.fetch(Query(window, changes_since=since), http)))
    assert first.resume["mode"] == "updated" and len(first.records) == 2
    hub.sandbox.state.clear_log()
    rest, resumes, _ = fetch_all(provider_for(hub), Query(window, changes_since=since, resume=first.resume))
    assert resumes[-1] is None and len(resumes) == 2
    assert all(dict(e.query).get("sort") == "updated_at" for e in requests(hub))
    assert {r["id"] for r in first.records} | set(row_ids(rest)) == set(touched)
    assert not {r["id"] for r in first.records} & set(row_ids(rest))


@pytest.mark.parametrize(
    ("updated", "trusted"),
    [
        (["2026-03-05T10:00:00Z", "2026-03-05T11:00:00Z"], True),
        (["2026-03-05T11:00:00Z", "2026-03-05T10:00:00Z"], False),  # not in updated order: a window page
        (["2026-03-05T10:00:00Z", "yesterday"], False),  # an unreadable time proves no order
        (["2026-03-05T10:00:00Z", None], False),
        (["2026-03-04T23:00:00Z"], False),  # older than updated_since: the filter was ignored
    ],
)
def test_a_first_page_is_trusted_as_a_change_feed_only_when_every_time_proves_it(updated, trusted):
    """A Hub that ignores ``sort``/``updated_since`` answers 200 with a window page; only a page whose
    every ``updated_at`` is readable, ascending and not older than ``updated_since`` counts as the
    change feed, so a record with an unreadable time sends the read back to the whole window."""
    records = [{"id": str(i), "updated_at": value} for i, value in enumerate(updated)]
    assert connector_module._is_change_feed(records, datetime(2026, 3, 5, tzinfo=UTC)) is trusted


def test_the_window_is_re_read_when_the_hub_ignores_sort_updated_at(hub, monkeypatch):
    monkeypatch.setattr(connector_module, "PAGE_SIZE", 40)
    hub.sandbox.state.hub_supports_updated_sort = False
    window = Window.for_days(date(2026, 3, 1), date(2026, 3, 10))
    since = datetime.now(UTC) - timedelta(minutes=5)
    touch_some(hub, window, 3)
    batch, resumes, stats = fetch_all(provider_for(hub), Query(window, changes_since=since))
    ids = row_ids(batch)
    assert len(ids) == len(set(ids)) and set(ids) == in_window(hub, window), "the whole window, each record once"
    assert stats.requests == math.ceil((len(in_window(hub, window)) + len(in_window(hub, window, FOREIGN_TENANT))) / 40)
    assert all(r["mode"] == "window" for r in resumes[:-1]) and resumes[-1] is None
    later = [dict(e.query) for e in requests(hub)[1:]]
    assert later and all("sort" not in q and "updated_since" not in q for q in later), "plain window paging after the probe"


def test_a_window_read_resumed_during_a_change_query_stays_a_window_read(hub, monkeypatch):
    monkeypatch.setattr(connector_module, "PAGE_SIZE", 40)
    hub.sandbox.state.hub_supports_updated_sort = False
    window = Window.for_days(date(2026, 3, 1), date(2026, 3, 10))
    since = datetime.now(UTC) - timedelta(minutes=5)
    provider = provider_for(hub)
    with provider.open() as http:
        first = next(iter(provider.fetch(Query(window, changes_since=since), http)))
    assert first.resume["mode"] == "window"
    rest, _, _ = fetch_all(provider_for(hub), Query(window, changes_since=since, resume=first.resume))
    got = {r["id"] for r in first.records} | set(row_ids(rest)) | {r["feedback_id"] for r in rest.rejects().to_pylist()}
    assert got == in_window(hub, window) | in_window(hub, window, FOREIGN_TENANT)


# -- mapping ------------------------------------------------------------------------------------


def test_field_mapping_of_a_full_record(hub):
    rec = record(
        "2026-03-05T10:30:00.123456789Z", updated_at="2026-03-06T08:00:00Z", field_type="nps",
        field_label="How likely are you to recommend us?", value_text="  verbatim\u0000 ", value_number=9,
        user_id="user-1", source_id="survey-1", source_name="NPS", metadata={"browser": {"name": "firefox"}},
        language="en", field_group_id="g", value_boolean=True,
    )
    hub.sandbox.add("formbricks", rec)
    batch, _, _ = fetch_all(provider_for(hub), Query(FULL))
    row = rows_by_id(batch)[rec["id"]]
    assert row["provider"] == "formbricks" and row["account_id"] == TENANT
    assert row["collected_at"] == datetime(2026, 3, 5, 10, 30, 0, 123456, tzinfo=UTC)
    assert row["collected_date"] == date(2026, 3, 5)
    assert row["updated_at"] == datetime(2026, 3, 6, 8, tzinfo=UTC)
    assert row["status"] is None and row["provider_status"] is None
    assert row["category"] == "nps"
    assert row["title"] == "How likely are you to recommend us?"
    assert row["body"] == "  verbatim\ufffd "
    assert row["rating"] == 9.0
    assert row["user_id"] == "user-1" and row["user_email"] is None and row["page_url"] is None
    assert json.loads(row["attributes"]) == {
        "created_at": rec["created_at"], "source_type": "survey", "field_id": "q1", "tenant_id": TENANT,
        "submission_id": rec["submission_id"], "source_id": "survey-1", "source_name": "NPS",
        "metadata": {"browser": {"name": "firefox"}}, "language": "en", "field_group_id": "g", "value_boolean": True,
    }


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"user_id": "new-style"}, "new-style"),
        ({"user_identifier": "old-style"}, "old-style"),
        ({"user_id": "new-style", "user_identifier": "old-style"}, "new-style"),
        ({}, None),
    ],
    ids=["user_id", "user_identifier", "both", "neither"],
)
def test_user_id_is_user_id_else_user_identifier(hub, fields, expected):
    rec = record("2026-03-05T10:30:00Z", **fields)
    hub.sandbox.add("formbricks", rec)
    batch, _, _ = fetch_all(provider_for(hub), Query(FULL))
    row = rows_by_id(batch)[rec["id"]]
    assert row["user_id"] == expected
    assert not {"user_id", "user_identifier"} & set(json.loads(row["attributes"]))


@pytest.mark.parametrize("value, expected", [(4, 4.0), (4.5, 4.5), ("7", 7.0), ("n/a", None), (None, None)])
def test_rating_is_value_number_whatever_the_field_type(hub, value, expected):
    rec = record("2026-03-05T10:30:00Z", field_type="text", value_number=value)
    hub.sandbox.add("formbricks", rec)
    batch, _, _ = fetch_all(provider_for(hub), Query(FULL))
    assert rows_by_id(batch)[rec["id"]]["rating"] == expected


def test_records_of_the_wrong_shape_are_rejected_without_crashing(hub):
    provider = provider_for(hub)
    batch = FeedbackBatch("formbricks", provider.account_id)
    provider.normalize(
        [1, None, ["x"], record("2026-03-05T10:30:00Z", id=""), record("2026-03-05T10:30:00Z", tenant_id=None),
         record("not-a-time"), record("2026-03-05T10:30:00Z", id=7)],
        batch,
    )
    reasons = sorted(r["reason"] for r in batch.rejects().to_pylist())  # rejects have no order
    assert reasons == sorted([RejectReason.NOT_AN_OBJECT] * 3 + [RejectReason.MISSING_ID, RejectReason.FOREIGN_TENANT, RejectReason.UNPARSEABLE_COLLECTED_AT])
    assert row_ids(batch) == ["7"]


# -- failures -----------------------------------------------------------------------------------


def record_sleeps(http) -> list[float]:
    sleeps: list[float] = []
    http._sleep = sleeps.append  # the client's injectable sleep: no real waiting in tests
    return sleeps


@pytest.mark.parametrize("retry_after, expected", [("4", 4.0), (None, FAST_RETRIES.retry_after_floor)], ids=["with-retry-after", "without"])
def test_429_is_retried_honouring_retry_after_when_given(hub, retry_after, expected):
    add_fault(hub, kind="rate_limit", count=1, retry_after=retry_after)
    provider = provider_for(hub)
    with provider.open() as http:
        sleeps = record_sleeps(http)
        pages = list(provider.fetch(Query(FULL), http))
        assert http.stats.by_status == {"429": 1, "200": 1}
    assert sleeps == [expected]
    assert {r["id"] for r in pages[0].records} == set(store(hub))


def test_a_5xx_storm_with_html_bodies_is_ridden_out_without_losing_a_page(hub, monkeypatch):
    monkeypatch.setattr(connector_module, "PAGE_SIZE", 100)
    for status in (502, 503, 504, 500):
        add_fault(hub, kind="server_error", status=status, count=1, after=2)  # in the middle of the paging
    batch, _, stats = fetch_all(provider_for(hub), Query(FULL))
    assert stats.retries == 4 and {"502", "503", "504", "500"} <= set(stats.by_status)
    assert len(batch) + batch.reject_count == len(store(hub)) and len(set(row_ids(batch))) == len(batch)


def test_an_endless_5xx_storm_fails_clearly(hub):
    add_fault(hub, kind="server_error", status=503, count=None)
    with pytest.raises(ProviderUnavailable) as failure:
        fetch_all(provider_for(hub), Query(FULL))
    message = str(failure.value)
    assert "formbricks" in message and "HTTP 503" in message and "Bad Gateway" in message
    assert len(requests(hub)) == FAST_RETRIES.max_attempts


def test_a_dropped_connection_is_retried(hub):
    add_fault(hub, kind="drop", count=1)
    batch, _, stats = fetch_all(provider_for(hub), Query(FULL))
    assert stats.by_status.get("network") == 1
    assert len(batch) + batch.reject_count == len(store(hub))


@pytest.mark.parametrize("kind", ["bad_envelope", "html_200", "not_json"])
def test_a_bad_200_body_is_retried(hub, kind):
    add_fault(hub, kind=kind, count=2)
    batch, _, stats = fetch_all(provider_for(hub), Query(FULL))
    assert stats.requests == 3 and stats.retries == 2
    assert len(batch) + batch.reject_count == len(store(hub))


@pytest.mark.parametrize("kind, words", [("bad_envelope", "'data' array"), ("html_200", "HTML instead of JSON")])
def test_a_bad_200_body_that_persists_fails_clearly(hub, kind, words):
    add_fault(hub, kind=kind, count=None)
    with pytest.raises(ProviderUnavailable) as failure:
        fetch_all(provider_for(hub), Query(FULL))
    message = str(failure.value)
    assert "unexpected response body" in message and words in message
    assert f"after {FAST_RETRIES.max_attempts} attempt" in message


def test_a_wrong_key_fails_at_once_naming_the_variable(hub):
    with pytest.raises(ProviderRequestError) as failure:
        fetch_all(provider_for(hub, hub_api_key="hub_wrong_key"), Query(FULL))
    assert failure.value.status == 401
    assert "FORMBRICKS_HUB_API_KEY" in str(failure.value)
    assert len(requests(hub)) == 1, "no retry on 401"


def test_a_wrong_hub_url_fails_at_once_naming_the_variable(hub):
    with pytest.raises(ProviderRequestError) as failure:
        fetch_all(provider_for(hub, hub_url=hub.url + "/v1"), Query(FULL))
    assert failure.value.status == 404 and "FORMBRICKS_HUB_URL" in str(failure.value)


def test_the_key_never_appears_in_logs_or_errors_even_when_the_hub_echoes_it(hub, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(core, "HTML_ERROR", b"<html><body>proxy saw Authorization: Bearer " + API_KEY.encode() + b"</body></html>")
    add_fault(hub, kind="server_error", status=502, count=None)
    with pytest.raises(ProviderUnavailable) as unavailable:
        fetch_all(provider_for(hub), Query(FULL))
    hub.sandbox.state.clear_faults()
    original = emulator_module.problem
    monkeypatch.setattr(emulator_module, "problem", lambda status, title, detail, *a, **k: original(status, title, f"{detail}: got Bearer {API_KEY}", *a, **k))
    monkeypatch.setattr(emulator_module, "API_KEY", "hub_rotated_key")  # the Hub now refuses our key and echoes it
    with pytest.raises(ProviderRequestError) as refused:
        fetch_all(provider_for(hub, hub_api_key=API_KEY), Query(FULL))
    assert "proxy saw" in caplog.text and "got Bearer" in str(refused.value), "the echo did reach the client"
    for text in (caplog.text, str(unavailable.value), str(refused.value), repr(refused.value)):
        assert API_KEY not in text


# -- settings -----------------------------------------------------------------------------------


def test_settings_name_the_contract_variables():
    env = SPEC.by_key
    assert {s.var for s in env.values()} == {"FORMBRICKS_HUB_URL", "FORMBRICKS_HUB_API_KEY", "FORMBRICKS_TENANT_ID"}
    assert all(s.required for s in env.values())
    assert env["hub_api_key"].secret and env["hub_url"].url
    with pytest.raises(ConfigurationError, match="FORMBRICKS_TENANT_ID"):
        FormbricksProvider(SPEC.resource(hub_url="http://h", hub_api_key="k"))
    with pytest.raises(ConfigurationError, match="FORMBRICKS_HUB_URL"):
        FormbricksProvider(SPEC.resource(hub_url="h:8080", hub_api_key="k", tenant_id="t"))
    provider = FormbricksProvider(SPEC.resource(hub_url="http://h:8080/hub/", hub_api_key="k", tenant_id="t"))
    assert provider.url == "http://h:8080/hub/v1/feedback-records" and provider.account_id == "t"


def test_a_probe_page_cursor_is_reused_only_when_it_encodes_collected_order():
    from feedback_pipeline.providers.formbricks import _is_collected_cursor
    from feedback_pipeline.sandbox.formbricks import encode_cursor

    last = {"id": "r2", "collected_at": "2026-03-01T10:00:00Z", "updated_at": "2026-03-05T09:00:00Z"}
    at = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))
    collected = {"data": [last], "next_cursor": encode_cursor(at(last["collected_at"]), "r2")}
    updated = {"data": [last], "next_cursor": encode_cursor(at(last["updated_at"]), "r2")}
    assert _is_collected_cursor(collected)
    assert not _is_collected_cursor(updated)
    assert not _is_collected_cursor({"data": [last], "next_cursor": "not-base64-json"})
    assert _is_collected_cursor({"data": [last]})
