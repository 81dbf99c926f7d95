"""The Mintlify connector against the sandbox (real HTTP over loopback)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from feedback_pipeline.http import ProviderRequestError, ProviderUnavailable, RetryPolicy, utc_http_date
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import get_spec
from feedback_pipeline.providers.base import ConfigurationError, Query, StaleCursor, Window
from feedback_pipeline.providers.mintlify import SPEC, DEFAULT_BASE_URL, MintlifyProvider
from feedback_pipeline.sandbox import mintlify as mint
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.schema import RejectReason

from .conftest import FAST_RETRIES, fetch_all, module_sandbox, recent_window

UTC = timezone.utc


server = module_sandbox("mintlify")


@pytest.fixture
def sb(server: SandboxServer) -> SandboxServer:
    return server.reset()


def make_provider(sb: SandboxServer, policy: RetryPolicy = FAST_RETRIES, **overrides: Any) -> MintlifyProvider:
    return SPEC.provider_from_env(sb.env(), policy=policy, overrides=overrides)


def stored(sb: SandboxServer) -> dict[str, dict[str, Any]]:
    return sb.sandbox.emulators["mintlify"].store.records


def in_window(record: dict[str, Any], window: Window) -> bool:
    at = mint.stored_time(record)
    return at is not None and window.contains(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at))


def expected_ids(sb: SandboxServer, window: Window) -> tuple[set[str], set[str]]:
    """(ids that must become rows, ids that must be rejected) for ``window``."""
    rows, rejects = set(), set()
    for rid, record in stored(sb).items():
        if in_window(record, window):
            (rejects if record.get("createdAt") is None else rows).add(rid)
    return rows, rejects


def row_ids(batch: FeedbackBatch) -> list[str]:
    return batch.rows().column("feedback_id").to_pylist()


def feedback_requests(sb: SandboxServer) -> list[Any]:
    return sb.sandbox.state.requests_for("mintlify")


def run(provider: MintlifyProvider, query: Query, **client_kwargs: Any) -> tuple[FeedbackBatch, list[Any]]:
    batch = FeedbackBatch(provider.name, provider.account_id)
    resumes = []
    with provider.open(**client_kwargs) as http:
        for page in provider.fetch(query, http):
            provider.normalize(page.records, batch)
            resumes.append(page.resume)
    return batch, resumes


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# -- settings ----------------------------------------------------------------------------------


def test_registry_environment_and_account_id() -> None:
    assert get_spec("mintlify").provider is MintlifyProvider
    assert MintlifyProvider.supports_changes is False
    env = {"MINTLIFY_API_KEY": "mint_x", "MINTLIFY_PROJECT_ID": "proj-1"}
    assert SPEC.is_configured(env) and not SPEC.is_configured({"MINTLIFY_API_KEY": "mint_x"})
    resource = SPEC.resource(api_key="mint_x", project_id="proj-1")
    provider = MintlifyProvider(resource)
    assert provider.account_id == "proj-1"
    assert provider.url == f"{DEFAULT_BASE_URL}/api/external/v1/analytics/proj-1/feedback"
    assert SPEC.by_key["api_key"].secret and SPEC.by_key["base_url"].url
    assert resource.secret_values() == ["mint_x"]


def test_missing_settings_fail_before_any_request_naming_the_variables() -> None:
    with pytest.raises(ConfigurationError, match="MINTLIFY_API_KEY, MINTLIFY_PROJECT_ID"):
        MintlifyProvider(SPEC.resource())
    with pytest.raises(ConfigurationError, match="MINTLIFY_BASE_URL"):
        MintlifyProvider(SPEC.resource(api_key="mint_x", project_id="p", base_url="api.mintlify.com"))


def test_a_key_without_the_mint_prefix_is_refused_without_echoing_it() -> None:
    secret = "sk_live_SECRET_123456"
    with pytest.raises(ConfigurationError) as info:
        MintlifyProvider(SPEC.resource(api_key=secret, project_id="p"))
    assert "MINTLIFY_API_KEY" in str(info.value) and "mint_" in str(info.value)
    assert secret not in str(info.value)


def test_hints_name_the_variable_to_check() -> None:
    hints = SPEC.hints
    assert "MINTLIFY_PROJECT_ID" in hints[400]
    assert "MINTLIFY_API_KEY" in hints[401] and "MINTLIFY_API_KEY" in hints[403]
    assert "MINTLIFY_BASE_URL" in hints[404]


# -- windows -----------------------------------------------------------------------------------


def test_a_window_returns_exactly_the_sandbox_records_collected_in_it(sb: SandboxServer) -> None:
    window = recent_window(30)
    batch, _, stats = fetch_all(make_provider(sb), Query(window))
    rows, rejects = expected_ids(sb, window)
    ids = row_ids(batch)
    assert len(ids) == len(set(ids))
    assert set(ids) == rows and len(rows) >= 590
    reject_table = batch.rejects().to_pylist()
    assert {r["feedback_id"] for r in reject_table} == rejects and rejects
    assert {r["reason"] for r in reject_table} == {RejectReason.MISSING_COLLECTED_AT}
    assert all(orjson.loads(r["payload"])["createdAt"] is None for r in reject_table)
    assert stats.requests == math.ceil((len(rows) + len(rejects)) / 100)


def test_a_partial_window_returns_only_its_days(sb: SandboxServer) -> None:
    today = datetime.now(UTC).date()
    window = Window.for_days(today - timedelta(days=12), today - timedelta(days=5))
    batch, _, _ = fetch_all(make_provider(sb), Query(window))
    rows, rejects = expected_ids(sb, window)
    assert set(row_ids(batch)) == rows and 100 < len(rows) < 200
    assert {r["feedback_id"] for r in batch.rejects().to_pylist()} == rejects
    assert all(window.contains(t) for t in batch.rows().column("collected_at").to_pylist())


def test_one_range_query_per_window_with_the_largest_page(sb: SandboxServer) -> None:
    today = datetime.now(UTC).date()
    window = Window.for_days(today - timedelta(days=29), today)
    fetch_all(make_provider(sb), Query(window))
    log = feedback_requests(sb)
    assert len(log) == 6  # 600 records / 100, never one query per day
    for i, entry in enumerate(log):
        query = dict(entry.query)
        assert query["dateFrom"] == f"{window.first_day.isoformat()}T00:00:00Z"  # UTC days, whatever the API's zone
        assert query["dateTo"] == f"{(today + timedelta(days=1)).isoformat()}T00:00:00Z"  # exclusive upper limit
        assert query["limit"] == "100"
        assert ("cursor" in query) == (i > 0)


def test_changes_since_is_ignored_and_the_window_is_read_whole(sb: SandboxServer) -> None:
    window = recent_window(30)
    full, _, _ = fetch_all(make_provider(sb), Query(window))
    changed, _, _ = fetch_all(make_provider(sb), Query(window, changes_since=datetime.now(UTC) - timedelta(hours=1)))
    assert sorted(row_ids(changed)) == sorted(row_ids(full))


def test_midnight_boundaries_land_on_the_right_date(sb: SandboxServer) -> None:
    day = datetime.now(UTC).date() - timedelta(days=2)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    edges = {
        "edge-prev-last-ms": midnight - timedelta(milliseconds=1),
        "edge-start": midnight,
        "edge-last-ms": midnight + timedelta(days=1) - timedelta(milliseconds=1),
        "edge-next-start": midnight + timedelta(days=1),
    }
    for rid, at in edges.items():
        sb.sandbox.add("mintlify", {"id": rid, "path": "/", "comment": None, "createdAt": mint.data.iso_z(at), "source": "agent", "status": "pending", mint.HIDDEN: mint._epoch_us(at)})
    # A zone offset in createdAt: 01:30+02:00 is 23:30 UTC of the previous day.
    offset_at = midnight + timedelta(hours=1, minutes=30)
    sb.sandbox.add("mintlify", {"id": "edge-offset", "path": "/", "comment": None, "createdAt": (offset_at).strftime("%Y-%m-%dT%H:%M:%S+02:00"), "source": "agent", "status": "pending", mint.HIDDEN: mint._epoch_us(offset_at - timedelta(hours=2))})
    window = Window.for_days(day, day)
    batch, _, _ = fetch_all(make_provider(sb), Query(window))
    rows = {r["feedback_id"]: r for r in batch.rows().to_pylist()}
    assert "edge-start" in rows and "edge-last-ms" in rows
    assert "edge-prev-last-ms" not in rows and "edge-next-start" not in rows and "edge-offset" not in rows
    assert rows["edge-start"]["collected_date"] == day and rows["edge-last-ms"]["collected_date"] == day
    previous, _, _ = fetch_all(make_provider(sb), Query(Window.for_days(day - timedelta(days=1), day - timedelta(days=1))))
    prev_rows = {r["feedback_id"]: r for r in previous.rows().to_pylist()}
    assert prev_rows["edge-offset"]["collected_at"] == offset_at - timedelta(hours=2)
    assert prev_rows["edge-offset"]["collected_date"] == day - timedelta(days=1)
    assert prev_rows["edge-prev-last-ms"]["collected_date"] == day - timedelta(days=1)


def test_paging_across_many_pages(sb: SandboxServer) -> None:
    state = sb.sandbox.state
    state.per_day = 100
    sb.sandbox.generate()
    window = recent_window(30)
    batch, resumes, stats = fetch_all(make_provider(sb), Query(window))
    rows, rejects = expected_ids(sb, window)
    assert set(row_ids(batch)) == rows and len(row_ids(batch)) == len(rows) > 2900
    assert stats.requests == 30 and len(resumes) == 30
    assert all(r and isinstance(r["cursor"], str) for r in resumes[:-1]) and resumes[-1] is None
    assert len({r["cursor"] for r in resumes[:-1]}) == 29


def test_resuming_from_a_page_fetches_only_the_rest(sb: SandboxServer) -> None:
    window = recent_window(30)
    provider = make_provider(sb)
    pages: list[tuple[list[str], Any]] = []
    with provider.open() as http:
        for page in provider.fetch(Query(window), http):
            pages.append(([r["id"] for r in page.records], page.resume))
    assert len(pages) == 6
    resume = pages[2][1]
    sb.sandbox.state.clear_log()
    batch, resumes = run(provider, Query(window, resume=resume))
    rest = [rid for ids, _ in pages[3:] for rid in ids]
    got = row_ids(batch) + [r["feedback_id"] for r in batch.rejects().to_pylist()]
    assert sorted(got) == sorted(rest)
    log = feedback_requests(sb)
    assert len(log) == 3 and dict(log[0].query)["cursor"] == resume["cursor"]
    assert resumes[-1] is None


def test_resume_is_stable_when_records_arrive_between_runs(sb: SandboxServer) -> None:
    window = recent_window(30)
    provider = make_provider(sb)
    with provider.open() as http:
        first = next(iter(provider.fetch(Query(window), http)))
    seen = {r["id"] for r in first.records}
    now = datetime.now(UTC) - timedelta(seconds=1)
    sb.sandbox.add("mintlify", {"id": "late-newest", "path": "/", "comment": "new", "createdAt": mint.data.iso_z(now), "source": "agent", "status": "pending", mint.HIDDEN: mint._epoch_us(now)})
    batch, _ = run(provider, Query(window, resume=first.resume))
    rest = set(row_ids(batch)) | {r["feedback_id"] for r in batch.rejects().to_pylist()}
    rows, rejects = expected_ids(sb, window)
    assert not seen & rest  # committed pages are never fetched again
    assert (rows | rejects) - {"late-newest"} == seen | rest  # nothing skipped (the newest arrives on the next full read)


def test_a_refused_resume_cursor_raises_stale_cursor(sb: SandboxServer) -> None:
    provider = make_provider(sb)
    with provider.open() as http, pytest.raises(StaleCursor):
        list(provider.fetch(Query(recent_window(30), resume={"cursor": "not-a-cursor"}), http))
    assert [e.status for e in feedback_requests(sb)] == [400]


def test_a_400_without_a_resume_cursor_is_a_clear_failure_not_stale(sb: SandboxServer) -> None:
    provider = make_provider(sb, project_id="no-such-project")
    with provider.open() as http, pytest.raises(ProviderRequestError) as info:
        list(provider.fetch(Query(recent_window(30)), http))
    assert info.value.status == 400 and "MINTLIFY_PROJECT_ID" in str(info.value)
    assert len(feedback_requests(sb)) == 1


# -- failures ----------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(sb: SandboxServer) -> None:
    state = sb.sandbox.state
    state.add_fault("mintlify", Fault("rate_limit", count=1, retry_after="3"))
    state.add_fault("mintlify", Fault("rate_limit", count=1, after=1, retry_after=utc_http_date(datetime.now(UTC) + timedelta(seconds=30))))
    sleeper = SleepRecorder()
    batch, _ = run(make_provider(sb), Query(recent_window(30)), sleep=sleeper)
    assert sleeper.waits[0] == 3.0
    assert 25 <= sleeper.waits[1] <= 30
    assert len(row_ids(batch)) == len(expected_ids(sb, recent_window(30))[0])


def test_429_without_retry_after_waits_at_least_the_floor_and_is_retried(sb: SandboxServer) -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01, max_total_wait=10, retry_after_floor=0.25)
    # Mintlify documents no Retry-After: the emulator's own limiter sends none.
    sb.sandbox.state.mintlify_rate_limit = 2
    sleeper = SleepRecorder()

    def sleep(seconds: float) -> None:
        sleeper(seconds)
        sb.sandbox.state.extra.clear()  # the hour passes while we wait

    batch, _ = run(make_provider(sb, policy), Query(recent_window(30)), sleep=sleep)
    statuses = [e.status for e in feedback_requests(sb)]
    assert statuses.count(429) == 2 and statuses.count(200) == 6
    assert sleeper.waits == [0.25, 0.25]  # the floor, not the 1-10 ms exponential base
    assert len(row_ids(batch)) == len(expected_ids(sb, recent_window(30))[0])


def test_the_real_rate_limit_is_waited_out_in_real_time(sb: SandboxServer) -> None:
    sb.sandbox.state.mintlify_rate_limit = 3
    sb.sandbox.emulators["mintlify"].rate_window = 0.4
    policy = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=1, max_total_wait=10, retry_after_floor=0.1)
    batch, _, stats = fetch_all(make_provider(sb, policy), Query(recent_window(30)))
    assert len(row_ids(batch)) == len(expected_ids(sb, recent_window(30))[0])
    assert stats.by_status.get("429", 0) >= 1 and stats.by_status["200"] == 6
    # Each 429 was waited out by a real sleep of at least the floor (no Retry-After is sent).
    assert stats.retries == stats.by_status["429"] and stats.wait_seconds >= policy.retry_after_floor * stats.retries


def test_a_rate_limit_that_never_clears_fails_within_the_cap(sb: SandboxServer) -> None:
    sb.sandbox.state.mintlify_rate_limit = 1
    policy = RetryPolicy(max_attempts=4, base_delay=1, max_delay=60, max_total_wait=600, retry_after_floor=1)
    sleeper = SleepRecorder()
    provider = make_provider(sb, policy)
    with pytest.raises(ProviderUnavailable) as info:
        run(provider, Query(recent_window(30)), sleep=sleeper)
    assert "HTTP 429" in str(info.value) and "resumes" in str(info.value)
    assert [e.status for e in feedback_requests(sb)] == [200, 429, 429, 429, 429]
    assert len(sleeper.waits) == 3 and all(w >= 1 for w in sleeper.waits) and sum(sleeper.waits) <= 600


def test_a_5xx_storm_with_html_bodies_is_retried(sb: SandboxServer) -> None:
    sb.sandbox.state.add_fault("mintlify", Fault("server_error", count=3, status=502))
    sb.sandbox.state.add_fault("mintlify", Fault("server_error", count=1, after=4, status=500))
    batch, _, stats = fetch_all(make_provider(sb), Query(recent_window(30)))
    assert len(row_ids(batch)) == len(expected_ids(sb, recent_window(30))[0])
    assert stats.by_status == {"502": 3, "500": 1, "200": 6}


def test_an_endless_5xx_storm_fails_with_a_clear_message(sb: SandboxServer) -> None:
    sb.sandbox.state.add_fault("mintlify", Fault("server_error", count=None, status=503))
    with pytest.raises(ProviderUnavailable) as info:
        fetch_all(make_provider(sb), Query(recent_window(30)))
    message = str(info.value)
    assert "HTTP 503" in message and f"{FAST_RETRIES.max_attempts} attempt" in message
    assert len(message) < 800


@pytest.mark.parametrize("kind", ["html_200", "not_json", "bad_envelope", "drop"])
def test_bad_pages_and_dropped_connections_are_retried(sb: SandboxServer, kind: str) -> None:
    sb.sandbox.state.add_fault("mintlify", Fault(kind, count=2, after=1))
    batch, resumes, stats = fetch_all(make_provider(sb), Query(recent_window(30)))
    assert len(row_ids(batch)) == len(expected_ids(sb, recent_window(30))[0])
    assert stats.retries == 2 and len(resumes) == 6


def test_a_body_with_has_more_but_no_cursor_is_a_bad_page(sb: SandboxServer) -> None:
    from feedback_pipeline.http import BadPage
    from feedback_pipeline.providers.mintlify import _check_envelope

    _check_envelope({"feedback": [], "nextCursor": None, "hasMore": False})
    for body in ({"feedback": [], "nextCursor": None, "hasMore": True}, {"feedback": {}, "hasMore": False, "nextCursor": None}, {"feedback": [], "nextCursor": 5, "hasMore": True}, {"feedback": []}, []):
        with pytest.raises(BadPage):
            _check_envelope(body)


def test_auth_failure_fails_at_once_naming_the_variable(sb: SandboxServer) -> None:
    secret = "mint_WRONG_secret_value_0001"
    provider = make_provider(sb, api_key=secret)
    with pytest.raises(ProviderRequestError) as info:
        fetch_all(provider, Query(recent_window(30)))
    assert info.value.status == 401
    assert "MINTLIFY_API_KEY" in str(info.value) and secret not in str(info.value)
    assert len(feedback_requests(sb)) == 1


def test_the_secret_never_reaches_logs_or_exceptions(sb: SandboxServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state = sb.sandbox.state
    state.add_fault("mintlify", Fault("rate_limit", count=1))
    state.add_fault("mintlify", Fault("server_error", count=1, status=503))
    state.add_fault("mintlify", Fault("drop", count=1))
    provider = make_provider(sb)
    fetch_all(provider, Query(recent_window(30)))
    texts = [caplog.text]
    with pytest.raises(StaleCursor) as stale:
        fetch_all(provider, Query(recent_window(30), resume={"cursor": "garbage"}))
    texts += [str(stale.value), str(stale.value.__cause__)]
    wrong = "mint_other_secret_9f9f9f9f"
    with pytest.raises(ProviderRequestError) as refused:
        fetch_all(make_provider(sb, api_key=wrong), Query(recent_window(30)))
    texts += [str(refused.value), caplog.text]
    state.add_fault("mintlify", Fault("server_error", count=None))
    with pytest.raises(ProviderUnavailable) as unavailable:
        fetch_all(provider, Query(recent_window(30)))
    texts += [str(unavailable.value), caplog.text]
    assert "retrying" in caplog.text  # the log really was captured
    for text in texts:
        assert mint.API_KEY not in text and wrong not in text


# -- mapping -----------------------------------------------------------------------------------


VARIANTS: list[dict[str, Any]] = [
    {"id": "map-contextual", "path": "/quickstart", "comment": "Tabs\tand  spaces ", "createdAt": "2026-01-05T10:00:00.123Z", "source": "contextual", "status": "pending", "helpful": True, "contact": "ana@example.com"},
    {"id": "map-contextual-null-contact", "path": "/faq", "comment": "", "createdAt": "2026-01-05T10:00:01Z", "source": "contextual", "status": "resolved", "helpful": False, "contact": None},
    {"id": "map-contextual-no-contact", "path": "/faq", "comment": None, "createdAt": "2026-01-05T10:00:02Z", "source": "contextual", "status": "dismissed", "helpful": False},
    {"id": "map-code", "path": "https://docs.example.com/sdk", "comment": "fails", "createdAt": "2026-01-05T10:00:03Z", "source": "code_snippet", "status": "in_progress", "code": "print('x')", "filename": None, "lang": None},
    {"id": "map-agent", "path": "/", "comment": "bot said so", "createdAt": "2026-01-05T10:00:04Z", "source": "agent", "status": "pending"},
    {"id": "map-thumbs", "path": "/changelog", "comment": None, "createdAt": "2026-01-05T10:00:05Z", "source": "thumbs_only", "status": "archived", "helpful": True},
    {"id": "map-null-created", "path": "/", "comment": "x", "createdAt": None, "source": "agent", "status": "pending"},
]


def test_field_mapping_of_each_variant(sb: SandboxServer) -> None:
    at = datetime(2026, 1, 5, 10, tzinfo=UTC)
    for record in VARIANTS:
        sb.sandbox.add("mintlify", {**record, mint.HIDDEN: mint._epoch_us(at)})
    batch, _, _ = fetch_all(make_provider(sb), Query(Window.for_days(at.date(), at.date())))
    rows = {r["feedback_id"]: r for r in batch.rows().to_pylist()}
    assert set(rows) == {r["id"] for r in VARIANTS} - {"map-null-created"}
    c = rows["map-contextual"]
    assert c["provider"] == "mintlify" and c["account_id"] == mint.PROJECT_ID
    assert c["collected_at"] == datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=UTC)
    assert (c["category"], c["body"], c["user_email"], c["page_url"]) == ("contextual", "Tabs\tand  spaces ", "ana@example.com", "/quickstart")
    assert (c["status"], c["provider_status"], c["updated_at"], c["title"], c["rating"], c["user_id"]) == ("open", "pending", None, None, None, None)
    assert orjson.loads(c["attributes"]) == {"helpful": True}
    n = rows["map-contextual-null-contact"]
    assert n["body"] == "" and n["user_email"] is None and n["status"] == "resolved"
    assert orjson.loads(n["attributes"]) == {"helpful": False}
    assert rows["map-contextual-no-contact"]["body"] is None and rows["map-contextual-no-contact"]["status"] == "dismissed"
    code = rows["map-code"]
    assert (code["category"], code["status"], code["page_url"]) == ("code_snippet", "in_progress", "https://docs.example.com/sdk")
    assert orjson.loads(code["attributes"]) == {"code": "print('x')", "filename": None, "lang": None}
    agent = rows["map-agent"]
    assert agent["category"] == "agent" and orjson.loads(agent["attributes"]) == {}
    thumbs = rows["map-thumbs"]
    assert thumbs["category"] == "thumbs_only" and thumbs["body"] is None
    assert thumbs["status"] is None and thumbs["provider_status"] == "archived"  # not in the status table
    assert orjson.loads(thumbs["attributes"]) == {"helpful": True}
    rejects = {r["feedback_id"]: r for r in batch.rejects().to_pylist()}
    assert rejects["map-null-created"]["reason"] == RejectReason.MISSING_COLLECTED_AT
    assert orjson.loads(rejects["map-null-created"]["payload"])["comment"] == "x"


def test_normalize_never_crashes_on_odd_records() -> None:
    provider = MintlifyProvider(SPEC.resource(api_key="mint_x", project_id="p"))
    batch = FeedbackBatch("mintlify", "p")
    provider.normalize(
        [
            "a string",
            None,
            [1, 2],
            {"path": "/", "createdAt": "2026-01-01T00:00:00Z"},  # no id
            {"id": 42, "createdAt": "2026-01-01T00:00:00Z", "source": 7, "comment": {"nested": True}, "status": None, "extra": [1]},
            {"id": "bad-time", "createdAt": "yesterday"},
            {"id": "old", "createdAt": "1969-12-31T23:59:59Z"},
            {"id": "naive", "createdAt": "2026-01-01T12:00:00"},
        ],
        batch,
    )
    reasons = sorted(r["reason"] for r in batch.rejects().to_pylist())
    assert reasons == sorted([RejectReason.NOT_AN_OBJECT] * 3 + [RejectReason.MISSING_ID, RejectReason.UNPARSEABLE_COLLECTED_AT, RejectReason.COLLECTED_AT_OUT_OF_RANGE])
    rows = {r["feedback_id"]: r for r in batch.rows().to_pylist()}
    assert rows["42"]["category"] == "7" and rows["42"]["body"] == '{"nested":true}' and rows["42"]["status"] is None
    assert orjson.loads(rows["42"]["attributes"]) == {"extra": [1]}
    assert rows["naive"]["collected_at"] == datetime(2026, 1, 1, 12, tzinfo=UTC)
