"""The FeedbackKit connector against the sandbox over loopback (CONTRACT.md section 4 mapping)."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest

from feedback_pipeline import arraystream
from feedback_pipeline import sync as sync_module
from feedback_pipeline.http import ProviderRequestError, ProviderUnavailable
from feedback_pipeline.normalize import FeedbackBatch, parse_timestamp
from feedback_pipeline.providers import feedbackkit as feedbackkit_module
from feedback_pipeline.providers.base import ConfigurationError, Query, StaleCursor, Window
from feedback_pipeline.providers.feedbackkit import DEFAULT_BASE_URL, RESTART, SPEC, FeedbackKitProvider, camel_keys
from feedback_pipeline.sandbox import core
from feedback_pipeline.sandbox import feedbackkit as emulator_module
from feedback_pipeline.sandbox.core import json_response
from feedback_pipeline.sandbox.feedbackkit import API_KEY, PROJECT, STATUSES, snake
from feedback_pipeline.schema import RejectReason
from feedback_pipeline.sync import sync
from feedback_pipeline.warehouse import Warehouse, WarehouseCursor

from .conftest import FAST_RETRIES, fetch_all, module_sandbox, run_sync, uvicorn_errors_silenced, work_db

UTC = timezone.utc
END = date(2026, 3, 15)
WINDOW = Window.for_days(END - timedelta(days=29), END)


server = module_sandbox("feedbackkit", end=END)


@pytest.fixture
def kit(server):
    return server.reset(end=END)


def provider_for(server, **overrides) -> FeedbackKitProvider:
    return SPEC.provider_from_env(server.env(), policy=FAST_RETRIES, overrides=overrides)


def store(server) -> dict[str, dict]:
    return server.sandbox.emulators["feedbackkit"].store.records


def rows_by_id(batch: FeedbackBatch) -> dict[str, dict]:
    return {r["feedback_id"]: r for r in batch.rows().to_pylist()}


def add_fault(server, **fault) -> None:
    httpx.post(f"{server.url}/_control/feedbackkit/faults", json=fault).raise_for_status()


def collected(record: dict) -> datetime | None:
    try:
        when = parse_timestamp(record.get("createdAt"))
    except ValueError:
        return None
    return when if datetime(1970, 1, 1, tzinfo=UTC) <= when < datetime(2100, 1, 1, tzinfo=UTC) else None


def item(**fields) -> dict:
    base = {
        "id": str(uuid.uuid4()), "title": "Add dark mode", "description": "Please 🌙", "status": "approved",
        "category": "feature_request", "userId": "user-1", "voteCount": 3, "hasVoted": False, "commentCount": 1,
        "createdAt": "2026-03-10T10:30:00Z", "updatedAt": "2026-03-11T14:20:00Z",
    }
    return {**base, **fields}


# -- one request, complete snapshot -------------------------------------------------------------


def test_one_request_with_include_merged_yields_one_complete_snapshot_page(kit):
    provider = provider_for(kit)
    with provider.open() as http:
        pages = list(provider.fetch(Query(WINDOW), http))
        assert http.stats.requests == 1
    assert len(pages) == 1
    assert pages[0].complete_snapshot is True and pages[0].resume is None
    assert len(pages[0].records) == len(store(kit))
    (entry,) = kit.sandbox.state.requests_for("feedbackkit")
    assert entry.path == "/api/v1/feedbacks" and entry.query == [("includeMerged", "true")]


def test_changes_since_still_reads_the_whole_project_once(kit):
    provider = provider_for(kit)
    assert FeedbackKitProvider.supports_changes is False
    query = Query(WINDOW, changes_since=datetime(2026, 3, 14, tzinfo=UTC))
    batch, resumes, stats = fetch_all(provider, query)
    assert resumes == [None] and stats.requests == 1
    assert len(batch) + batch.reject_count == len(store(kit))


def test_a_resumed_query_is_refused_as_stale_without_a_request(kit):
    # A snapshot cannot be resumed part-way: the engine drops the cursor (and the keys the
    # interrupted run recorded) and restarts the query, which reads the whole array again.
    provider = provider_for(kit)
    with provider.open() as http, pytest.raises(StaleCursor):
        next(provider.fetch(Query(WINDOW, resume=RESTART), http))
    assert kit.sandbox.state.requests_for("feedbackkit") == []


def test_every_record_becomes_a_row_or_a_reject_and_the_window_matches_the_store(kit):
    batch, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    rows = rows_by_id(batch)
    good = {rid for rid, r in store(kit).items() if collected(r) is not None and r["id"]}
    assert set(rows) == good
    rejects = batch.rejects().to_pylist()
    assert {r["feedback_id"] or "" for r in rejects} == set(store(kit)) - good  # an empty id is rejected as missing
    assert 1 <= len(rejects) <= 4
    assert {r["reason"] for r in rejects} <= {
        RejectReason.UNPARSEABLE_COLLECTED_AT, RejectReason.MISSING_COLLECTED_AT, RejectReason.COLLECTED_AT_OUT_OF_RANGE, RejectReason.MISSING_ID,
    }
    for reject in rejects:
        assert json.loads(reject["payload"]) == store(kit)[reject["feedback_id"] or ""], "payload is the record as received"
    # what the engine keeps for the window: exactly the store's records collected in it
    in_window = {rid for rid, r in rows.items() if WINDOW.contains(r["collected_at"])}
    assert in_window == {rid for rid in good if WINDOW.contains(collected(store(kit)[rid]))}
    assert all(r["account_id"] == PROJECT for r in rows.values())


def test_merged_items_are_their_own_rows_with_merged_into_id_in_attributes(kit):
    batch, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    rows = rows_by_id(batch)
    merged = [r for r in store(kit).values() if r.get("mergedIntoId") and r["id"] in rows]
    assert merged
    for record in merged:
        attributes = json.loads(rows[record["id"]]["attributes"])
        assert attributes["mergedIntoId"] == record["mergedIntoId"]
        assert attributes["mergedAt"] == record["mergedAt"]
        target = json.loads(rows[record["mergedIntoId"]]["attributes"])
        assert record["id"] in target["mergedFeedbackIds"]


# -- mapping ------------------------------------------------------------------------------------


def test_field_mapping_of_a_full_record(kit):
    record = item(
        userEmail="ana@example.com", totalMrr=19.99, rejectionReason=None, status="rejected",
        mergedIntoId=str(uuid.uuid4()), mergedAt="2026-03-12T00:00:00Z", mergedFeedbackIds=[],
        title="", description="  kept verbatim\u0000 ", extraField={"nested": [1, 2]},
    )
    kit.sandbox.add("feedbackkit", record)
    batch, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    row = rows_by_id(batch)[record["id"]]
    assert row["provider"] == "feedbackkit" and row["account_id"] == PROJECT
    assert row["collected_at"] == datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
    assert row["collected_date"] == date(2026, 3, 10)
    assert row["updated_at"] == datetime(2026, 3, 11, 14, 20, tzinfo=UTC)
    assert (row["status"], row["provider_status"]) == ("dismissed", "rejected")
    assert row["category"] == "feature_request"
    assert row["title"] == ""
    assert row["body"] == "  kept verbatim\ufffd "
    assert row["user_id"] == "user-1" and row["user_email"] == "ana@example.com"
    assert row["rating"] is None and row["page_url"] is None
    assert json.loads(row["attributes"]) == {
        "voteCount": 3, "hasVoted": False, "commentCount": 1, "totalMrr": 19.99, "rejectionReason": None,
        "mergedIntoId": record["mergedIntoId"], "mergedAt": "2026-03-12T00:00:00Z", "mergedFeedbackIds": [],
        "extraField": {"nested": [1, 2]},
    }


def test_minimal_record_with_optional_fields_absent(kit):
    record = item()
    kit.sandbox.add("feedbackkit", record)
    batch, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    row = rows_by_id(batch)[record["id"]]
    assert row["user_email"] is None
    assert json.loads(row["attributes"]) == {"voteCount": 3, "hasVoted": False, "commentCount": 1}


@pytest.mark.parametrize("status", [*STATUSES, "archived"])
def test_status_is_unified_per_the_contract_table(kit, status):
    record = item(status=status)
    kit.sandbox.add("feedbackkit", record)
    batch, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    row = rows_by_id(batch)[record["id"]]
    assert row["provider_status"] == status
    assert row["status"] == SPEC.statuses.get(status)
    expected = {"pending": "open", "approved": "open", "in_progress": "in_progress", "testflight": "in_progress", "completed": "resolved", "rejected": "dismissed"}
    assert row["status"] == expected.get(status)


def test_snake_case_server_gives_identical_rows(kit):
    provider = provider_for(kit)
    camel_batch, _, _ = fetch_all(provider, Query(WINDOW))
    kit.sandbox.state.feedbackkit_snake_case = True
    snake_batch, _, _ = fetch_all(provider, Query(WINDOW))
    entries = kit.sandbox.state.requests_for("feedbackkit")
    assert entries[-1].query == [("includeMerged", "true")], "the parameter name stays camelCase"
    assert snake_batch.rows().to_pylist() == camel_batch.rows().to_pylist()
    assert len(snake_batch) > 500
    assert [r["reason"] for r in snake_batch.rejects().to_pylist()] == [r["reason"] for r in camel_batch.rejects().to_pylist()]


def test_snake_case_keys_are_normalised_to_the_documented_camel_case_names():
    record = {snake(k): v for k, v in item(userEmail="a@b.c", totalMrr=1.5, mergedIntoId="m").items()}
    assert camel_keys(record) == item(userEmail="a@b.c", totalMrr=1.5, mergedIntoId="m", id=record["id"])
    # both spellings of one field: the documented camelCase one wins, whatever the order
    assert camel_keys({"vote_count": 1, "voteCount": 2}) == {"voteCount": 2}
    assert camel_keys({"voteCount": 2, "vote_count": 1}) == {"voteCount": 2}


def test_records_of_the_wrong_type_are_rejected_without_crashing(kit):
    provider = provider_for(kit)
    batch = FeedbackBatch("feedbackkit", provider.account_id)
    provider.normalize([1, "x", None, [item()], item(id=""), item(id=42, createdAt="2026-03-10T10:30:00")], batch)
    reasons = [r["reason"] for r in batch.rejects().to_pylist()]
    assert reasons == [RejectReason.NOT_AN_OBJECT] * 4 + [RejectReason.MISSING_ID]
    (row,) = batch.rows().to_pylist()
    assert row["feedback_id"] == "42" and row["collected_at"] == datetime(2026, 3, 10, 10, 30, tzinfo=UTC)


def test_midnight_boundaries_land_on_the_right_date(kit):
    cases = {
        "2026-03-10T00:00:00Z": date(2026, 3, 10),
        "2026-03-10T00:00:00.000Z": date(2026, 3, 10),
        "2026-03-09T23:59:59.999Z": date(2026, 3, 9),
        "2026-03-09T23:59:59.999999Z": date(2026, 3, 9),
        "2026-03-10T01:30:00+02:00": date(2026, 3, 9),
        "2026-03-09T22:00:00-02:00": date(2026, 3, 10),
        "2026-03-10T00:00:00": date(2026, 3, 10),  # no zone: read as UTC
    }
    ids = {}
    for created, _ in cases.items():
        record = item(createdAt=created)
        ids[record["id"]] = created
        kit.sandbox.add("feedbackkit", record)
    batch, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    rows = rows_by_id(batch)
    assert {created: rows[rid]["collected_date"] for rid, created in ids.items()} == cases
    # the engine's window test on the last day of the window: next midnight is outside
    last = Window.for_days(date(2026, 3, 9), date(2026, 3, 9))
    inside = {created for rid, created in ids.items() if last.contains(rows[rid]["collected_at"])}
    assert inside == {c for c, d in cases.items() if d == date(2026, 3, 9)}


# -- failures -----------------------------------------------------------------------------------


def test_wrong_envelope_is_a_bad_page_retried_then_a_clear_failure(kit):
    add_fault(kit, kind="bad_envelope", count=2)
    batch, _, stats = fetch_all(provider_for(kit), Query(WINDOW))
    assert stats.requests == 3 and len(batch) > 0
    add_fault(kit, kind="bad_envelope", count=None)
    with pytest.raises(ProviderUnavailable) as failure:
        fetch_all(provider_for(kit), Query(WINDOW))
    message = str(failure.value)
    assert "feedbackkit" in message and "expected a JSON array" in message
    assert f"{FAST_RETRIES.max_attempts} attempt" in message


@pytest.mark.parametrize("kind", ["html_200", "not_json"])
def test_html_or_garbage_with_200_is_retried(kit, kind):
    add_fault(kit, kind=kind, count=2)
    batch, _, stats = fetch_all(provider_for(kit), Query(WINDOW))
    assert stats.requests == 3 and stats.retries == 2 and len(batch) > 0


def record_sleeps(http) -> list[float]:
    sleeps: list[float] = []
    http._sleep = sleeps.append  # the client's injectable sleep: no real waiting in tests
    return sleeps


@pytest.mark.parametrize("retry_after, expected", [("3", 3.0), (None, FAST_RETRIES.retry_after_floor)])
def test_429_is_retried_honouring_retry_after_when_given(kit, retry_after, expected):
    add_fault(kit, kind="rate_limit", count=1, retry_after=retry_after)
    provider = provider_for(kit)
    with provider.open() as http:
        sleeps = record_sleeps(http)
        (page,) = provider.fetch(Query(WINDOW), http)
        assert http.stats.by_status == {"429": 1, "200": 1}
    assert sleeps == [expected]
    assert len(page.records) == len(store(kit))


def test_a_5xx_storm_with_html_bodies_is_ridden_out(kit):
    for status in (502, 503, 500):
        add_fault(kit, kind="server_error", status=status, count=1)
    batch, _, stats = fetch_all(provider_for(kit), Query(WINDOW))
    assert stats.by_status == {"502": 1, "503": 1, "500": 1, "200": 1}
    assert len(batch) + batch.reject_count == len(store(kit))


def test_an_endless_5xx_storm_fails_clearly_after_the_retry_budget(kit):
    add_fault(kit, kind="server_error", status=503, count=None)
    with pytest.raises(ProviderUnavailable) as failure:
        fetch_all(provider_for(kit), Query(WINDOW))
    assert "HTTP 503" in str(failure.value) and "Bad Gateway" in str(failure.value)
    assert len(kit.sandbox.state.requests_for("feedbackkit")) == FAST_RETRIES.max_attempts


def test_a_dropped_connection_is_retried(kit):
    add_fault(kit, kind="drop", count=1)
    batch, _, stats = fetch_all(provider_for(kit), Query(WINDOW))
    assert stats.by_status.get("network") == 1 and stats.requests == 2
    assert len(batch) + batch.reject_count == len(store(kit))


def test_a_wrong_key_fails_at_once_naming_the_variable(kit):
    with pytest.raises(ProviderRequestError) as failure:
        fetch_all(provider_for(kit, api_key="sf_not_the_key"), Query(WINDOW))
    assert failure.value.status == 401
    assert "FEEDBACKKIT_API_KEY" in str(failure.value) and "Invalid API key" in str(failure.value)
    assert len(kit.sandbox.state.requests_for("feedbackkit")) == 1, "no retry on 401"


def test_a_wrong_base_url_fails_at_once_naming_the_variable(kit):
    with pytest.raises(ProviderRequestError) as failure:
        fetch_all(provider_for(kit, base_url=kit.url + "/api/v1"), Query(WINDOW))
    assert failure.value.status == 404 and "FEEDBACKKIT_BASE_URL" in str(failure.value)


def test_the_key_never_appears_in_logs_or_errors_even_when_the_server_echoes_it(kit, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    echo = API_KEY.encode()
    monkeypatch.setattr(core, "HTML_ERROR", b"<html><body>upstream saw X-API-Key: " + echo + b"</body></html>")
    add_fault(kit, kind="server_error", status=503, count=None)
    with pytest.raises(ProviderUnavailable) as unavailable:
        fetch_all(provider_for(kit), Query(WINDOW))
    kit.sandbox.state.clear_faults()
    monkeypatch.setattr(emulator_module, "error", lambda status, reason: json_response({"error": True, "reason": f"{reason}: {API_KEY}"}, status))
    monkeypatch.setattr(emulator_module, "API_KEY", "sf_rotated_key")  # the sandbox now refuses our key...
    with pytest.raises(ProviderRequestError) as refused:
        fetch_all(provider_for(kit, api_key=API_KEY), Query(WINDOW))  # ...and echoes it in the reason
    assert "upstream saw" in caplog.text and "upstream saw" in str(unavailable.value), "the echo did reach the client"
    assert "Invalid API key" in str(refused.value)
    for text in (caplog.text, str(unavailable.value), str(refused.value), repr(refused.value)):
        assert API_KEY not in text
    assert "***" in str(refused.value)


# -- settings -----------------------------------------------------------------------------------


def test_settings_names_defaults_and_secret():
    env = SPEC.by_key
    assert {s.var for s in env.values()} == {"FEEDBACKKIT_API_KEY", "FEEDBACKKIT_BASE_URL", "FEEDBACKKIT_PROJECT"}
    assert env["api_key"].required and env["api_key"].secret
    assert not env["base_url"].required and env["base_url"].default == DEFAULT_BASE_URL == "https://api.feedbackkit.app"
    assert env["base_url"].url
    assert not env["project"].required and env["project"].default == "default"
    assert SPEC.is_configured({"FEEDBACKKIT_API_KEY": "sf_x"})
    assert not SPEC.is_configured({"FEEDBACKKIT_PROJECT": "p"})


def test_defaults_give_the_production_url_and_the_default_account():
    provider = FeedbackKitProvider(SPEC.resource(api_key="sf_x"))
    assert provider.url == "https://api.feedbackkit.app/api/v1/feedbacks"
    assert provider.account_id == "default"
    assert FeedbackKitProvider(SPEC.resource(api_key="sf_x", base_url="http://h:1/", project="p")).url == "http://h:1/api/v1/feedbacks"


def test_missing_key_or_bad_url_fail_before_any_request_naming_the_variable():
    with pytest.raises(ConfigurationError, match="FEEDBACKKIT_API_KEY"):
        FeedbackKitProvider(SPEC.resource(api_key=None))
    with pytest.raises(ConfigurationError, match="FEEDBACKKIT_BASE_URL"):
        FeedbackKitProvider(SPEC.resource(api_key="sf_x", base_url="api.feedbackkit.app"))
    assert SPEC.resource(api_key="sf_secret").secret_values() == ["sf_secret"]


def test_only_the_windows_records_and_unreadable_ones_are_normalized(kit):
    inside = item(createdAt="2026-03-10T23:59:59Z")
    outside = item(createdAt="2026-03-11T00:00:00Z")
    unreadable = item(createdAt="last tuesday")
    ancient = item(createdAt="0001-01-01T00:00:00Z")
    for record in (inside, outside, unreadable, ancient):
        kit.sandbox.add("feedbackkit", record)
    provider = provider_for(kit)
    with provider.open() as http:
        (page,) = provider.fetch(Query(Window.for_days(date(2026, 3, 10), date(2026, 3, 10))), http)
    ids = {r["id"] for r in page.records}
    assert {inside["id"], unreadable["id"], ancient["id"]} <= ids and outside["id"] not in ids
    assert page.notes["snapshot_size"] == len(store(kit)) > len(page.records)


# -- the array as a stream: bounded pages, several commits, one sweep ------------------------------


class Tap(httpx.BaseTransport):
    """Forwards to the sandbox over loopback and watches each response body as it is read:
    ``read`` counts its bytes; with ``cut_after`` the connection breaks after that many bytes,
    for the first ``cuts`` responses."""

    def __init__(self, cut_after: int | None = None, cuts: int = 1):
        self.inner = httpx.HTTPTransport()
        self.cut_after = cut_after
        self.cuts = cuts
        self.read = 0
        self.sizes: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body, tap = response.stream, self
        cut = self.cut_after if self.cuts > 0 else None
        self.cuts -= 1
        self.read = 0
        self.sizes.append(int(response.headers.get("content-length", 0)))

        class Watched(httpx.SyncByteStream):
            def __iter__(self):
                for chunk in body:
                    if cut is not None and tap.read + len(chunk) > cut:
                        raise httpx.ReadError("connection reset (injected by the test)")
                    tap.read += len(chunk)
                    yield chunk

            def close(self) -> None:
                body.close()

        return httpx.Response(response.status_code, headers=response.headers, stream=Watched(), extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()


def tapped(server, tap: Tap) -> FeedbackKitProvider:
    provider = provider_for(server)
    original = provider.http_client
    provider.http_client = lambda **kw: original(**{"transport": tap, **kw})  # type: ignore[method-assign]
    return provider


@pytest.fixture
def small_pieces(monkeypatch):
    """Pages of 50 window records, 16 KB pieces of body, commits every 100 rows: the sandbox's
    few hundred records then behave as a large project does."""
    monkeypatch.setattr(feedbackkit_module, "PAGE_SIZE", 50)
    monkeypatch.setattr(arraystream, "PIECE_BYTES", 16_384)
    monkeypatch.setattr(sync_module, "COMMIT_ROWS", 100)


def test_the_array_is_read_as_a_stream_in_bounded_pages(kit, small_pieces):
    whole, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    tap = Tap()
    provider = tapped(kit, tap)
    pages = []
    with provider.open() as http:
        for page in provider.fetch(Query(WINDOW), http):
            if not pages:
                assert tap.read < tap.sizes[0] / 2, "the first page came before most of the body was read"
            pages.append(page)
        assert http.stats.requests == 1
    assert len(pages) > 5 and all(len(p.records) <= 50 for p in pages)
    assert all(p.complete_snapshot for p in pages)
    assert [p.resume for p in pages] == [RESTART] * (len(pages) - 1) + [None]
    assert pages[-1].notes["snapshot_size"] == len(store(kit))
    batch = FeedbackBatch("feedbackkit", PROJECT)
    for page in pages:
        provider.normalize(page.records, batch)
    assert batch.rows().to_pylist() == whole.rows().to_pylist()


@pytest.mark.parametrize("snake_case", [False, True], ids=["camelCase", "snake_case"])
def test_small_pages_give_the_rows_of_one_page_in_either_key_case(kit, monkeypatch, snake_case):
    kit.sandbox.state.feedbackkit_snake_case = snake_case
    one, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    monkeypatch.setattr(feedbackkit_module, "PAGE_SIZE", 7)
    monkeypatch.setattr(arraystream, "PIECE_BYTES", 4_096)
    many, resumes, _ = fetch_all(provider_for(kit), Query(WINDOW))
    assert len(resumes) > 50
    assert many.rows().to_pylist() == one.rows().to_pylist() and len(one) > 500
    assert many.rejects().to_pylist() == one.rejects().to_pylist()


def window_ids(server) -> set[str]:
    return {rid for rid, r in store(server).items() if (c := collected(r)) is not None and WINDOW.contains(c) and r["id"]}


def stored_ids(wh: Warehouse) -> set[str]:
    with work_db(wh) as con:
        return {r[0] for r in con.execute("SELECT feedback_id FROM feedback WHERE provider = 'feedbackkit'").fetchall()}


def test_records_deleted_at_the_provider_are_swept_when_the_snapshot_spans_several_commits(kit, small_pieces, tmp_path, monkeypatch):
    wh = Warehouse(tmp_path / "kit.duckdb")
    first = run_sync(provider_for(kit), wh, WINDOW)
    assert stored_ids(wh) == window_ids(kit) and first.pages > 5
    gone = sorted(window_ids(kit))[:3]
    for rid in gone:
        assert kit.sandbox.emulators["feedbackkit"].store.delete(rid)
    commits: list[object] = []
    real_commit = WarehouseCursor.commit
    monkeypatch.setattr(WarehouseCursor, "commit", lambda self, scope, rows, rejects, progress: commits.append(progress.resume) or real_commit(self, scope, rows, rejects, progress))
    again = run_sync(provider_for(kit), wh, WINDOW)
    assert commits.count(RESTART) >= 3 and commits[-1] is None, "the snapshot was committed in several batches"
    assert again.counts.deleted == 3
    assert stored_ids(wh) == window_ids(kit) and not set(gone) & stored_ids(wh)


def test_a_connection_dropped_mid_stream_keeps_what_was_committed_and_the_next_run_reads_the_snapshot_again(kit, small_pieces, tmp_path):
    wh = Warehouse(tmp_path / "kit.duckdb")
    run_sync(provider_for(kit), wh, WINDOW)
    deleted_before = sorted(window_ids(kit))[0]
    assert kit.sandbox.emulators["feedbackkit"].store.delete(deleted_before)

    # The body breaks after half of it: pages were handed over and committed, so no retry.
    size = len(httpx.get(f"{kit.url}/api/v1/feedbacks", params={"includeMerged": "true"}, headers={"X-API-Key": API_KEY}).content)
    kit.sandbox.state.clear_log()
    with uvicorn_errors_silenced(), pytest.raises(ProviderUnavailable, match="broke off after") as broken:
        run_sync(tapped(kit, Tap(cut_after=size // 2)), wh, WINDOW)
    assert "the next run repeats the request" in str(broken.value)
    assert len(kit.sandbox.state.requests_for("feedbackkit")) == 1
    key = f"window:{WINDOW}"
    with work_db(wh) as con:
        assert con.execute("SELECT count(*) FROM pipeline_cursors WHERE query_key = ?", [key]).fetchone()[0] == 1, "the committed pages' cursor is stored"
        seen = {r[0] for r in con.execute("SELECT feedback_id FROM pipeline_refresh_keys WHERE query_key = ?", [key]).fetchall()}
    # A record the interrupted run saw, deleted at the provider before the next run: the next
    # run must not count the interrupted run's keys as seen.
    deleted_after = sorted(seen)[0]
    assert kit.sandbox.emulators["feedbackkit"].store.delete(deleted_after)

    report = run_sync(provider_for(kit), wh, WINDOW)
    assert report.resumed == [key] and report.requests == 1
    assert stored_ids(wh) == window_ids(kit)
    assert not {deleted_before, deleted_after} & stored_ids(wh)
    with work_db(wh) as con:
        assert con.execute("SELECT count(*) FROM pipeline_cursors WHERE query_key = ?", [key]).fetchone()[0] == 0


def test_a_connection_dropped_before_any_page_is_retried_from_the_start(kit, small_pieces):
    whole, _, _ = fetch_all(provider_for(kit), Query(WINDOW))
    tap = Tap(cut_after=8_000, cuts=2)  # before the first 16 KB piece is complete
    batch, resumes, stats = fetch_all(tapped(kit, tap), Query(WINDOW))
    assert stats.requests == 3 and stats.by_status == {"network": 2, "200": 1}
    assert resumes[-1] is None and batch.rows().to_pylist() == whole.rows().to_pylist()
