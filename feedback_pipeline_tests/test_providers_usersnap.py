"""The Usersnap connector against the emulator over loopback: JWT auth and renewal, windows,
midnight boundaries, paging, resume, changes since a watermark, retries, auth failures,
redaction and the CONTRACT.md field mapping."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import pytest

from feedback_pipeline.http import BadPage, ProviderRequestError, ProviderUnavailable, RetryPolicy
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import get_spec
from feedback_pipeline.providers.base import ConfigurationError, Query, StaleCursor, Window
from feedback_pipeline.providers.spec import ProviderResource
from feedback_pipeline.providers.usersnap import (
    SPEC,
    DEFAULT_BASE_URL,
    PAGE_SIZE,
    UsersnapJWTAuth,
    UsersnapProvider,
    _check_list,
    answers,
)
from feedback_pipeline.sandbox import data as sdata
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.usersnap import JWT_KID, JWT_SECRET, PROJECT_ID, _ts

from .conftest import FAST_RETRIES, fetch_all, module_sandbox, recent_window

UTC = timezone.utc


def utc_today() -> date:
    """Today in UTC, the pipeline's (and the sandbox's) day: the machine's local date may differ."""
    return datetime.now(timezone.utc).date()


class Clock:
    """An injectable clock (epoch seconds) that tests move by hand."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


server = module_sandbox("usersnap")


@pytest.fixture
def sb(server):
    return server.reset()


def config(sb, **overrides: Any) -> ProviderResource:
    return SPEC.resource(**{**SPEC.values_from_env(sb.env()), **overrides})


def provider(sb, policy: RetryPolicy = FAST_RETRIES, clock=time.time, **overrides: Any) -> UsersnapProvider:
    return UsersnapProvider(config(sb, **overrides), policy=policy, clock=clock)


def store(sb) -> dict[str, dict[str, Any]]:
    return sb.sandbox.emulators["usersnap"].store.records


def usable(record: dict[str, Any]) -> bool:
    return isinstance(record.get("created_at"), str)


def expected_ids(sb, window: Window) -> set[str]:
    """Store records collected in ``window`` that the connector keeps (epoch created_at is rejected)."""
    return {i for i, r in store(sb).items() if usable(r) and window.contains(_ts(r["created_at"]))}


def expected_rejects(sb, window: Window) -> set[str]:
    return {i for i, r in store(sb).items() if not usable(r) and window.contains(_ts(r["created_at"]))}


def rows(batch: FeedbackBatch) -> list[dict[str, Any]]:
    return batch.rows().to_pylist()


def filter_requests(sb) -> list:
    return [e for e in sb.sandbox.state.requests_for("usersnap") if e.path.endswith("/feedbacks/filter")]


# -- configuration ----------------------------------------------------------------------------


def test_registry_and_settings():
    assert get_spec("usersnap").provider is UsersnapProvider
    env = {s.var for s in SPEC.by_key.values()}
    assert env == {"USERSNAP_JWT_SECRET", "USERSNAP_JWT_KID", "USERSNAP_PROJECT_ID", "USERSNAP_BASE_URL"}
    assert SPEC.by_key["jwt_secret"].secret and SPEC.by_key["base_url"].url
    assert not SPEC.by_key["base_url"].required and SPEC.by_key["base_url"].default == DEFAULT_BASE_URL == "https://platform.usersnap.com/v0.1"


def test_missing_settings_name_the_variables():
    with pytest.raises(ConfigurationError) as exc:
        UsersnapProvider(SPEC.resource(jwt_kid="k"))
    assert "USERSNAP_JWT_SECRET" in str(exc.value) and "USERSNAP_PROJECT_ID" in str(exc.value)
    assert "USERSNAP_JWT_KID" not in str(exc.value)
    with pytest.raises(ConfigurationError, match="USERSNAP_BASE_URL"):
        UsersnapProvider(SPEC.resource(jwt_secret="s", jwt_kid="k", project_id="p", base_url="platform.usersnap.com"))


def test_account_id_is_the_project_id_and_default_url(sb):
    p = UsersnapProvider(SPEC.resource(jwt_secret="s" * 40, jwt_kid="k", project_id="p-1"))
    assert p.account_id == "p-1"
    assert p.url == "https://platform.usersnap.com/v0.1/projects/p-1/feedbacks/filter"
    assert provider(sb).url == sb.env()["USERSNAP_BASE_URL"] + f"/projects/{PROJECT_ID}/feedbacks/filter"


# -- JWT ----------------------------------------------------------------------------------------


def test_minted_jwt_is_hs256_with_kid_iat_and_exp_at_most_five_minutes_ahead():
    clock = Clock(1_800_000_000)
    auth = UsersnapJWTAuth(JWT_SECRET, JWT_KID, clock=clock)
    request = next(auth.auth_flow(httpx.Request("POST", "https://platform.usersnap.com/v0.1/x")))
    scheme, token = request.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": JWT_KID}
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iat"] == 1_800_000_000 and 0 < claims["exp"] - claims["iat"] <= 300
    assert JWT_SECRET not in repr(auth)


def test_token_is_reused_while_fresh_and_reminted_close_to_expiry():
    clock = Clock(1_800_000_000)
    auth = UsersnapJWTAuth(JWT_SECRET, JWT_KID, clock=clock)
    first = auth.token()
    clock.advance(200)  # 100 s left: still fresh
    assert auth.token() == first
    clock.advance(45)  # 55 s left: inside the renewal margin
    second = auth.token()
    assert second != first
    claims = jwt.decode(second, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iat"] == 1_800_000_245 and claims["exp"] == 1_800_000_545
    assert auth.minted == [(1_800_000_000, 1_800_000_300), (1_800_000_245, 1_800_000_545)]
    clock.advance(1_000)  # long after expiry
    assert auth.token() not in (first, second) and len(auth.minted) == 3


def test_each_page_request_carries_a_token_the_sandbox_accepts_and_renews_midway(sb):
    # Start with a token that will be 10 s from expiry: the connector must re-mint before page 2.
    clock = Clock(time.time() - 290)
    p = provider(sb, clock=clock)
    window = recent_window(30)
    pages = 0
    with p.open() as http:
        for page in p.fetch(Query(window), http):
            pages += 1
            if pages == 1:
                clock.now = time.time()
    assert pages >= 6
    assert len(p.auth.minted) == 2 and p.auth.minted[1][0] > p.auth.minted[0][0]
    assert all(e.status == 200 for e in filter_requests(sb))


def test_a_retry_after_a_long_wait_is_signed_with_a_fresh_token(sb):
    # The first token is minted 40 s of clock before it expires; the 429 makes us wait 250 s
    # (a fake sleep moves the clock), so the retry must carry a newly minted token.
    clock = Clock(time.time() - 280)
    p = provider(sb, clock=clock, policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_total_wait=1_000, retry_after_floor=0.01))
    sb.sandbox.state.add_fault("usersnap", Fault(kind="rate_limit", retry_after="250"))
    p.open().close()
    http = p.http_client(auth=p.auth, sleep=clock.advance)
    window = Window.for_days(utc_today() - timedelta(days=2), utc_today())
    with http:
        pages = list(p.fetch(Query(window), http))
    assert pages and [e.status for e in filter_requests(sb)] == [429, 200]
    assert len(p.auth.minted) == 2 and p.auth.minted[1][0] - p.auth.minted[0][0] == 250


@pytest.mark.parametrize(
    ("overrides", "clock_offset", "algorithm"),
    [
        ({"jwt_secret": "not-the-secret-but-long-enough-to-be-plausible-0123456789abcdef"}, 0, "HS256"),
        ({"jwt_kid": "someone-elses-jwt-id"}, 0, "HS256"),
        ({}, -3_600, "HS256"),  # the machine clock is an hour slow: the token is already expired
        ({}, 0, "HS512"),
    ],
    ids=["bad-signature", "wrong-kid", "expired", "hs512"],
)
def test_refused_jwt_fails_at_once_with_a_message_naming_the_variables(sb, caplog, monkeypatch, overrides, clock_offset, algorithm):
    monkeypatch.setattr(UsersnapJWTAuth, "algorithm", algorithm)
    p = provider(sb, clock=lambda: time.time() + clock_offset, **overrides)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderRequestError) as exc, p.open() as http:
        list(p.fetch(Query(recent_window(3)), http))
    message = str(exc.value)
    assert exc.value.status == 401
    assert "USERSNAP_JWT_SECRET" in message and "USERSNAP_JWT_KID" in message and "WRONG_AUTH" in message
    assert len(filter_requests(sb)) == 1  # no retries on 401
    secret = p.config.jwt_secret
    assert secret not in message and secret not in caplog.text


def test_unknown_project_fails_naming_usersnap_project_id(sb):
    p = provider(sb, project_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(ProviderRequestError) as exc, p.open() as http:
        list(p.fetch(Query(recent_window(3)), http))
    assert exc.value.status == 404 and "USERSNAP_PROJECT_ID" in str(exc.value)


# -- windows, boundaries, paging --------------------------------------------------------------


def test_a_window_returns_exactly_the_sandbox_records_collected_in_it(sb):
    window = recent_window(30)
    p = provider(sb)
    batch, resumes, stats = fetch_all(p, Query(window))
    got = [r["feedback_id"] for r in rows(batch)]
    assert len(got) == len(set(got)) and set(got) == expected_ids(sb, window)
    rejected = batch.rejects().to_pylist()
    assert {r["feedback_id"] for r in rejected} == expected_rejects(sb, window) != set()
    assert {r["reason"] for r in rejected} == {"unparseable_collected_at"}
    assert resumes[-1] is None and all(r is not None for r in resumes[:-1])
    assert stats.requests == math.ceil(600 / PAGE_SIZE) == len(resumes)


def test_the_request_is_a_created_at_window_filter_with_the_maximum_page_size(sb):
    window = Window.for_days(utc_today() - timedelta(days=4), utc_today() - timedelta(days=2))
    fetch_all(provider(sb), Query(window))
    (entry,) = filter_requests(sb)
    assert entry.method == "POST" and dict(entry.query) == {"limit": "100"}
    assert entry.body == {
        "order_by": {"direction": "asc", "order_by_type": "created_at"},
        "query": [
            {"filter_type": "created_at", "operator": "gte", "value": window.start.strftime("%Y-%m-%dT00:00:00.000000Z")},
            {"filter_type": "created_at", "operator": "lt", "value": window.end.strftime("%Y-%m-%dT00:00:00.000000Z")},
        ],
    }


def _record(sb, created: datetime, **fields: Any) -> dict[str, Any]:
    rng = random.Random(created.timestamp())
    record = sb.sandbox.emulators["usersnap"].generate_day(rng, created.date(), 1, datetime.now(UTC))[0]
    record.update({"created_at": sdata.iso_z(created, 6), "updated_at": sdata.iso_z(created, 6), **fields})
    sb.sandbox.add("usersnap", record)
    return record


def test_midnight_boundaries_land_on_the_right_date(sb):
    day = utc_today() - timedelta(days=3)
    midnight = datetime.combine(day, datetime.min.time(), UTC)
    next_midnight = midnight + timedelta(days=1)
    at_start = _record(sb, midnight)
    last_micro = _record(sb, next_midnight - timedelta(microseconds=1))
    at_next = _record(sb, next_midnight)
    before = _record(sb, midnight - timedelta(microseconds=1))
    offset = _record(sb, midnight + timedelta(hours=1), created_at=(midnight + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))).isoformat())
    batch, _, _ = fetch_all(provider(sb), Query(Window.for_days(day, day)))
    by_id = {r["feedback_id"]: r for r in rows(batch)}
    assert at_start["feedback_id"] in by_id and last_micro["feedback_id"] in by_id and offset["feedback_id"] in by_id
    assert at_next["feedback_id"] not in by_id and before["feedback_id"] not in by_id
    assert {r["collected_date"] for r in by_id.values()} == {day}
    assert by_id[last_micro["feedback_id"]]["collected_at"] == next_midnight - timedelta(microseconds=1)
    assert by_id[offset["feedback_id"]]["collected_at"] == midnight + timedelta(hours=1)
    batch, _, _ = fetch_all(provider(sb), Query(Window.for_days(day + timedelta(days=1), day + timedelta(days=1))))
    assert at_next["feedback_id"] in {r["feedback_id"] for r in rows(batch)}


def test_paging_across_many_pages_uses_the_fewest_requests(sb):
    sb.reset(days=12, per_day=100)
    window = Window.for_days(utc_today() - timedelta(days=10), utc_today() - timedelta(days=1))
    batch, resumes, stats = fetch_all(provider(sb), Query(window))
    expected = expected_ids(sb, window)
    got = [r["feedback_id"] for r in rows(batch)]
    assert len(got) == len(set(got)) and set(got) == expected
    total = len(expected) + len(expected_rejects(sb, window))
    assert total == 1000 and stats.requests == len(resumes) == 10
    collected = [r["collected_at"] for r in rows(batch)]
    assert collected == sorted(collected)


def test_resume_from_a_page_fetches_only_the_rest(sb):
    sb.reset(days=12, per_day=100)
    window = Window.for_days(utc_today() - timedelta(days=10), utc_today() - timedelta(days=1))
    p = provider(sb)
    pages: list[tuple[list[str], Any]] = []
    with p.open() as http:
        for page in p.fetch(Query(window), http):
            pages.append(([r["feedback_id"] for r in page.records], page.resume))
    assert pages[3][1] == {"mode": "window", "after": pages[3][0][-1]}
    sb.sandbox.state.clear_log()
    batch, resumes, stats = fetch_all(provider(sb), Query(window, resume=pages[3][1]))
    rest = [i for ids, _ in pages[4:] for i in ids]
    assert stats.requests == len(pages) - 4 == len(resumes)
    assert {r["feedback_id"] for r in rows(batch)} | {r["feedback_id"] for r in batch.rejects().to_pylist()} == set(rest)
    assert dict(filter_requests(sb)[0].query)["after"] == pages[3][0][-1]


def test_resume_with_a_deleted_cursor_raises_stale_cursor(sb):
    window = recent_window(30)
    p = provider(sb)
    with p.open() as http:
        first = next(iter(p.fetch(Query(window), http)))
    sb.sandbox.delete("usersnap", first.resume["after"])
    with pytest.raises(StaleCursor), p.open() as http:
        list(p.fetch(Query(window, resume=first.resume), http))


def test_a_page_cursor_deleted_mid_run_falls_back_to_the_item_before_it(sb):
    window = recent_window(30)
    p = provider(sb)
    got: list[str] = []
    with p.open() as http:
        for number, page in enumerate(p.fetch(Query(window), http)):
            got.extend(r["feedback_id"] for r in page.records)
            if number == 1:
                sb.sandbox.delete("usersnap", page.resume["after"])
    assert set(got) >= {i for i in store(sb)} and len(set(got)) == len(store(sb)) + 1
    assert [e.status for e in filter_requests(sb)].count(400) == 1


def test_a_resume_of_the_other_mode_is_ignored(sb):
    window = recent_window(5)
    batch, _, _ = fetch_all(provider(sb), Query(window, resume={"mode": "changes", "after": "whatever"}))
    assert {r["feedback_id"] for r in rows(batch)} == expected_ids(sb, window)
    assert "after" not in dict(filter_requests(sb)[0].query)


# -- changes since a watermark ----------------------------------------------------------------


def test_changes_query_stops_once_past_the_watermark(sb):
    sb.reset(days=12, per_day=100)
    window = Window.for_days(utc_today() - timedelta(days=10), utc_today() - timedelta(days=1))
    in_window = sorted(expected_ids(sb, window))
    watermark = datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(1.1)
    touched = set(in_window[::6][:150])
    for fid in touched:
        sb.sandbox.update("usersnap", fid, {"status_type": "done"})
    outside = next(i for i, r in store(sb).items() if usable(r) and not window.contains(_ts(r["created_at"])))
    sb.sandbox.update("usersnap", outside, {"priority": "urgent"})
    batch, resumes, stats = fetch_all(provider(sb), Query(window, changes_since=watermark))
    got = [r["feedback_id"] for r in rows(batch)]
    assert set(got) == touched and len(got) == len(touched) == 150
    assert all(r["status"] == "resolved" for r in rows(batch))
    # 100 changed + (50 changed, then older ones): the second page ends the query.
    assert stats.requests == 2 and resumes[0] == {"mode": "changes", "after": got[99]} and resumes[-1] is None
    body = filter_requests(sb)[0].body
    assert body["order_by"] == {"direction": "desc", "order_by_type": "updated_at"}
    assert [q["operator"] for q in body["query"]] == ["gte", "lt"]


def test_changes_query_resumes_after_its_last_committed_page(sb):
    sb.reset(days=12, per_day=100)
    window = Window.for_days(utc_today() - timedelta(days=10), utc_today() - timedelta(days=1))
    watermark = datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(1.1)
    touched = sorted(expected_ids(sb, window))[:250]
    for fid in touched:
        sb.sandbox.update("usersnap", fid, {"priority": "low"})
    p = provider(sb)
    with p.open() as http:
        first = next(iter(p.fetch(Query(window, changes_since=watermark), http)))
    sb.sandbox.state.clear_log()
    batch, _, stats = fetch_all(provider(sb), Query(window, changes_since=watermark, resume=first.resume))
    rest = {r["feedback_id"] for r in rows(batch)}
    assert rest | {r["feedback_id"] for r in first.records} == set(touched) and not rest & {r["feedback_id"] for r in first.records}
    assert stats.requests == 2 and dict(filter_requests(sb)[0].query)["after"] == first.resume["after"]


def test_changes_with_nothing_changed_is_one_request_and_no_rows(sb):
    batch, resumes, stats = fetch_all(provider(sb), Query(recent_window(30), changes_since=datetime.now(UTC) + timedelta(seconds=5)))
    assert len(batch) == 0 and resumes == [None] and stats.requests == 1


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, "0", "1"])
def test_rate_limit_is_retried_with_and_without_retry_after(sb, retry_after):
    sb.sandbox.state.add_fault("usersnap", Fault(kind="rate_limit", count=2, retry_after=retry_after))
    sleeps: list[float] = []
    p = provider(sb, policy=RetryPolicy(max_attempts=5, base_delay=0.01, max_total_wait=30, retry_after_floor=0.01))
    p.open().close()
    http = p.http_client(auth=p.auth, sleep=sleeps.append)
    window = recent_window(30)
    batch = FeedbackBatch("usersnap", p.account_id)
    with http:
        for page in p.fetch(Query(window), http):
            p.normalize(page.records, batch)
    assert {r["feedback_id"] for r in rows(batch)} == expected_ids(sb, window)
    assert http.stats.by_status.get("429") == 2 and len(sleeps) == 2
    if retry_after == "1":
        assert sleeps == [1.0, 1.0]


def test_a_5xx_storm_with_html_bodies_is_survived(sb):
    sb.sandbox.state.add_fault("usersnap", Fault(kind="server_error", count=3, status=503))
    sb.sandbox.state.add_fault("usersnap", Fault(kind="html_200", count=1))
    window = recent_window(30)
    batch, _, stats = fetch_all(provider(sb), Query(window))
    assert {r["feedback_id"] for r in rows(batch)} == expected_ids(sb, window)
    assert stats.by_status["503"] == 3 and stats.retries == 4


def test_an_endless_5xx_storm_fails_clearly_without_leaking_the_secret(sb, caplog):
    caplog.set_level(logging.DEBUG)
    sb.sandbox.state.add_fault("usersnap", Fault(kind="server_error", count=None, status=502))
    p = provider(sb)
    with pytest.raises(ProviderUnavailable) as exc, p.open() as http:
        list(p.fetch(Query(recent_window(3)), http))
    assert "HTTP 502" in str(exc.value) and "after 5 attempt(s)" in str(exc.value)
    assert JWT_SECRET not in str(exc.value) and JWT_SECRET not in caplog.text
    assert "Bearer" not in caplog.text and "eyJ" not in caplog.text and "eyJ" not in str(exc.value)


def test_a_dropped_connection_and_a_bad_envelope_are_retried(sb):
    sb.sandbox.state.add_fault("usersnap", Fault(kind="drop", count=1, after=1))
    sb.sandbox.state.add_fault("usersnap", Fault(kind="bad_envelope", count=1))
    window = recent_window(30)
    batch, resumes, stats = fetch_all(provider(sb), Query(window))
    assert {r["feedback_id"] for r in rows(batch)} == expected_ids(sb, window)
    assert stats.by_status.get("network") == 1 and stats.retries == 2 and resumes[-1] is None


def test_has_more_without_a_cursor_is_a_bad_page():
    _check_list({"status": True, "data": {"has_more": False, "feedbacks": [], "next": None}})
    for body in (
        {"status": False, "msg": "x"},
        {"status": True, "data": {"has_more": True, "feedbacks": [], "next": None}},
        {"status": True, "data": {"has_more": "no", "feedbacks": []}},
        {"status": True, "data": {"feedbacks": {}}},
        [],
    ):
        with pytest.raises(BadPage):
            _check_list(body)


# -- field mapping ----------------------------------------------------------------------------


def _input(order: Any, label: Any, *, text: Any = None, value: Any = None, boolean: Any = None) -> dict[str, Any]:
    return {"order": order, "label": label, "boolean_value": boolean, "text_value": text, "value": value}


BASE = {
    "feedback_id": "f5150fc1-a7c9-4e33-8bd5-7a9cf3423e32",
    "feedback_number": 10,
    "public_link": "https://app.usersnap.com/l/feedback/f5150fc1",
    "project_id": PROJECT_ID,
    "created_at": "2024-08-04T10:22:34.127599Z",
    "updated_at": "2024-08-05T11:00:00.000001Z",
    "status_type": "in_progress",
    "priority": "high",
    "assignee_id": None,
    "is_demo": False,
    "email": "someone@example.com",
    "client": {"url": "https://app.example.com/x?y=1", "browser_name": "Firefox"},
    "custom_data": {"plan": "pro"},
    "screenshot": None,
    "screen_recording": None,
    "ordered_inputs": [_input(0, "Comment", text="The login button is broken", value="The login button is broken")],
    "labels": [{"company_label_id": "l1", "identifier": "bug", "name": "Bug", "color": "#f71007"}, {"company_label_id": "l2", "identifier": "ux", "name": "UX", "color": None}],
}


def normalize_one(record: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    p = UsersnapProvider(SPEC.resource(jwt_secret="s" * 40, jwt_kid="k", project_id=PROJECT_ID))
    batch = FeedbackBatch("usersnap", p.account_id)
    p.normalize([record], batch)
    return rows(batch), batch.rejects().to_pylist()


def test_mapping_of_a_bug_report():
    (row,), rejects = normalize_one(BASE)
    assert not rejects
    assert row == {
        **row,
        "provider": "usersnap",
        "account_id": PROJECT_ID,
        "feedback_id": BASE["feedback_id"],
        "collected_at": datetime(2024, 8, 4, 10, 22, 34, 127599, tzinfo=UTC),
        "collected_date": date(2024, 8, 4),
        "updated_at": datetime(2024, 8, 5, 11, 0, 0, 1, tzinfo=UTC),
        "status": "in_progress",
        "provider_status": "in_progress",
        "category": "Bug",
        "title": None,
        "body": "The login button is broken",
        "rating": None,
        "user_id": None,
        "user_email": "someone@example.com",
        "page_url": "https://app.example.com/x?y=1",
    }
    attributes = json.loads(row["attributes"])
    assert set(attributes) == set(BASE) - {"feedback_id", "created_at", "updated_at", "status_type", "email"}
    assert attributes["labels"] == BASE["labels"] and attributes["client"] == BASE["client"] and attributes["ordered_inputs"] == BASE["ordered_inputs"]


@pytest.mark.parametrize(
    ("inputs", "body", "rating"),
    [
        ([_input(0, "How likely are you to recommend us? (NPS)", value="9"), _input(1, "Additional comments", text="Nice", value="Nice")], "Nice", 9.0),
        ([_input(0, "How likely are you to recommend us? (NPS)", value=0)], None, 0.0),
        ([_input(0, "Rating", value=4), _input(1, "Comment", value="only in value")], "only in value", 4.0),
        ([_input(0, "Rating", value=" 3.5 "), _input(1, "Comment", text="", value="not this")], "", 3.5),
        ([_input(0, "Rating", value="N/A"), _input(1, "Score", value="5")], None, None),
        (
            [_input(2, "Comment (optional)", text="second"), _input(1, "Your COMMENT", text="first"), _input(0, "Satisfaction score", value="3")],
            "first",
            3.0,
        ),
        ([_input(None, "Comment", text="no order"), _input(5, "comment", text="ordered")], "ordered", None),
        ([_input(0, "Was this helpful? (thumbs rating)", value="-1", boolean=False), _input(1, "Comment", text="meh")], "meh", -1.0),
        ([_input(0, None, text="x"), "junk", _input(1, "Severity", text="major")], None, None),
        ([], None, None),
        (None, None, None),
        ("not a list", None, None),
    ],
    ids=["nps-string", "nps-zero", "rating-number-comment-in-value", "empty-comment-kept", "rating-not-a-number", "by-order", "missing-order-last", "thumbs", "junk-entries", "empty", "null", "wrong-type"],
)
def test_body_and_rating_from_ordered_inputs(inputs, body, rating):
    assert answers(inputs) == answers(inputs)  # pure
    (row,), _ = normalize_one({**BASE, "ordered_inputs": inputs})
    assert row["body"] == body and row["rating"] == rating


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status_type": "open"}, {"status": "open", "provider_status": "open"}),
        ({"status_type": "done"}, {"status": "resolved", "provider_status": "done"}),
        ({"status_type": "waiting_for_customer"}, {"status": None, "provider_status": "waiting_for_customer"}),
        ({"status_type": None}, {"status": None, "provider_status": None}),
        ({"labels": []}, {"category": None}),
        ({"labels": None}, {"category": None}),
        ({"labels": [{"identifier": "x"}]}, {"category": None}),
        ({"client": None}, {"page_url": None}),
        ({"client": {"url": None}}, {"page_url": None}),
        ({"email": None}, {"user_email": None}),
        ({"feedback_id": 12345}, {"feedback_id": "12345"}),
        ({"created_at": "2024-08-04T10:22:34"}, {"collected_at": datetime(2024, 8, 4, 10, 22, 34, tzinfo=UTC)}),
        ({"updated_at": None}, {"updated_at": None}),
        ({"ordered_inputs": [_input(0, "Comment", text="nul\x00 and \ud800")]}, {"body": "nul\ufffd and \ufffd"}),
    ],
)
def test_record_variants_map_per_contract(changes, expected):
    record = {**BASE, **changes}
    (row,), rejects = normalize_one(record)
    assert not rejects
    assert {k: row[k] for k in expected} == expected


def test_email_absent_maps_to_null():
    record = {k: v for k, v in BASE.items() if k != "email"}
    (row,), _ = normalize_one(record)
    assert row["user_email"] is None


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("a string", "record_not_an_object"),
        ([BASE], "record_not_an_object"),
        ({**BASE, "feedback_id": None}, "missing_id"),
        ({**BASE, "feedback_id": ""}, "missing_id"),
        ({k: v for k, v in BASE.items() if k != "feedback_id"}, "missing_id"),
        ({**BASE, "created_at": None}, "missing_collected_at"),
        ({**BASE, "created_at": 1722766954.127}, "unparseable_collected_at"),
        ({**BASE, "created_at": "yesterday"}, "unparseable_collected_at"),
        ({**BASE, "created_at": "1969-12-31T23:59:59Z"}, "collected_at_out_of_range"),
    ],
)
def test_bad_records_are_rejected_never_raised(record, reason):
    rows_, rejects = normalize_one(record)
    assert rows_ == [] and [r["reason"] for r in rejects] == [reason]
    assert rejects[0]["payload"] is not None
