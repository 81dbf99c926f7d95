"""The FeedbackKit emulator against ``shared/providers/feedbackkit.md`` (no OpenAPI file exists:
the documented FeedbackResponse model is written down below as a JSON Schema)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime, timezone

import httpx
import jsonschema
import pytest

from feedback_pipeline.sandbox import core
from feedback_pipeline.sandbox.app import Sandbox
from feedback_pipeline.sandbox.core import SandboxState
from feedback_pipeline.sandbox.feedbackkit import API_KEY, CATEGORIES, STATUSES, snake

from .conftest import module_sandbox

UTC = timezone.utc
PATH = "/api/v1/feedbacks"
END = date(2026, 3, 15)  # a fixed dataset: same records on every run

# The page's "Models / FeedbackResponse" table, field by field ("?" = optional, may be null).
_TS = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}
_UUID = {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
FEEDBACK_RESPONSE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "title", "description", "status", "category", "userId", "voteCount", "hasVoted", "commentCount", "createdAt", "updatedAt"],
    "properties": {
        "id": _UUID,
        "title": {"type": "string"},
        "description": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "category": {"enum": list(CATEGORIES)},
        "userId": {"type": "string"},
        "userEmail": {"type": ["string", "null"]},
        "voteCount": {"type": "integer", "minimum": 0},
        "hasVoted": {"type": "boolean"},
        "commentCount": {"type": "integer", "minimum": 0},
        "totalMrr": {"type": ["number", "null"]},
        "createdAt": _TS,
        "updatedAt": _TS,
        "rejectionReason": {"type": ["string", "null"], "maxLength": 500},
        "mergedIntoId": {"oneOf": [_UUID, {"type": "null"}]},
        "mergedAt": {"oneOf": [_TS, {"type": "null"}]},
        "mergedFeedbackIds": {"oneOf": [{"type": "array", "items": _UUID}, {"type": "null"}]},
    },
}
BROKEN_CREATED = ("not-a-date", None, "1969-12-31T23:59:59Z")  # unusable times (the connector's tests plant them)
BROKEN_IDS = ("",)  # what generate_day plants, one record per 30 days (data.bad_record_day)


_CLIENT = httpx.Client(timeout=30)  # one keep-alive client: a new client per request costs ~50 ms


server = module_sandbox("feedbackkit", end=END)


@pytest.fixture
def kit(server):
    return server.reset(end=END)


def store(server) -> dict[str, dict]:
    return server.sandbox.emulators["feedbackkit"].store.records


def get(server, path: str = PATH, *, key: str | None = API_KEY, headers: dict | None = None, **params) -> httpx.Response:
    hdrs = {"X-API-Key": key} if key is not None else {}
    hdrs.update(headers or {})
    return _CLIENT.get(server.url + path, params=params, headers=hdrs)


def assert_error(response: httpx.Response, status: int, reason_part: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "reason"}
    assert body["error"] is True
    assert reason_part in body["reason"]


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "sf_wrong_key"},
        {"X-API-Key": API_KEY.upper()},
        {"Authorization": f"Bearer {API_KEY}"},  # right key, wrong header
    ],
    ids=["missing", "empty", "wrong", "wrong-case", "bearer-instead-of-x-api-key"],
)
def test_list_without_the_project_key_is_401_invalid_api_key(kit, headers):
    assert_error(get(kit, key=None, headers=headers), 401, "Invalid API key")


def test_get_by_id_without_the_project_key_is_401(kit):
    some_id = next(iter(store(kit)))
    assert_error(get(kit, f"{PATH}/{some_id}", key="sf_nope"), 401, "Invalid API key")


def test_header_names_are_case_insensitive(kit):
    response = httpx.get(kit.url + PATH, headers={"x-api-key": API_KEY})
    assert response.status_code == 200


def test_sandbox_key_looks_like_a_feedbackkit_key(kit):
    assert API_KEY.startswith("sf_")
    assert kit.env()["FEEDBACKKIT_API_KEY"] == API_KEY
    assert kit.env()["FEEDBACKKIT_BASE_URL"] == kit.url  # requests go to {base}/api/v1/feedbacks


# -- list -------------------------------------------------------------------------------------


def test_list_is_a_plain_array_of_every_unmerged_item_sorted_by_votes_descending(kit):
    response = get(kit)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    items = response.json()
    assert isinstance(items, list)
    expected = {rid for rid, r in store(kit).items() if not r.get("mergedIntoId")}
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    votes = [i["voteCount"] for i in items]
    assert votes == sorted(votes, reverse=True)
    # ties come in a stable order (by id), so two reads give the same array
    assert get(kit).json() == items


def test_include_merged_true_returns_every_item_including_merged_ones(kit):
    items = get(kit, includeMerged="true").json()
    assert {i["id"] for i in items} == set(store(kit))
    merged = [i for i in items if i.get("mergedIntoId")]
    assert merged, "the dataset should contain merged items"
    by_id = {i["id"]: i for i in items}
    for item in merged:
        target = by_id[item["mergedIntoId"]]
        assert item["id"] in target["mergedFeedbackIds"]
        assert item["mergedAt"]


@pytest.mark.parametrize("value", ["false", "0", "no", ""])
def test_merged_items_are_hidden_unless_include_merged_is_true(kit, value):
    items = get(kit, includeMerged=value).json()
    assert items and not any(i.get("mergedIntoId") for i in items)
    assert len(items) < len(store(kit))


@pytest.mark.parametrize("status", STATUSES)
def test_status_filter_returns_exactly_that_status(kit, status):
    items = get(kit, status=status, includeMerged="true").json()
    expected = {rid for rid, r in store(kit).items() if r["status"] == status}
    assert expected and {i["id"] for i in items} == expected


@pytest.mark.parametrize("category", CATEGORIES)
def test_category_filter_returns_exactly_that_category(kit, category):
    items = get(kit, category=category).json()
    expected = {rid for rid, r in store(kit).items() if r["category"] == category and not r.get("mergedIntoId")}
    assert expected and {i["id"] for i in items} == expected


def test_status_and_category_filters_combine(kit):
    items = get(kit, status="approved", category="bug_report", includeMerged="true").json()
    expected = {rid for rid, r in store(kit).items() if r["status"] == "approved" and r["category"] == "bug_report"}
    assert {i["id"] for i in items} == expected


@pytest.mark.parametrize("param, value", [("status", "open"), ("status", "APPROVED"), ("status", ""), ("category", "bug"), ("category", "feature-request")])
def test_invalid_status_or_category_is_400_with_error_body(kit, param, value):
    assert_error(get(kit, **{param: value}), 400, f"Invalid {param}")


def test_paging_and_date_parameters_do_not_exist_so_they_are_ignored(kit):
    everything = get(kit).json()
    assert get(kit, limit="5", page="2", per="1", since="2030-01-01T00:00:00Z", cursor="x").json() == everything


def test_x_user_id_personalises_has_voted(kit):
    items = get(kit).json()
    assert not any(i["hasVoted"] for i in items), "without X-User-Id hasVoted is always false"
    author = items[0]["userId"]
    personal = get(kit, headers={"X-User-Id": author}).json()
    voted = {i["id"] for i in personal if i["hasVoted"]}
    assert voted == {i["id"] for i in items if i["userId"] == author}
    assert all(r["hasVoted"] is False for r in store(kit).values()), "the store itself is untouched"


def test_every_item_matches_the_documented_feedback_response_model(kit):
    items = get(kit, includeMerged="true").json()
    validator = jsonschema.Draft202012Validator(FEEDBACK_RESPONSE)
    broken = 0
    for item in items:
        if item["id"] in BROKEN_IDS:
            broken += 1  # planted for the connector's reject path
            item = {**item, "id": "00000000-0000-4000-8000-000000000000"}
        errors = list(validator.iter_errors(item))
        assert not errors, (item, errors[0].message)
    assert broken >= 1


def test_the_schema_check_catches_a_wrong_item():
    validator = jsonschema.Draft202012Validator(FEEDBACK_RESPONSE)
    good = {
        "id": str(uuid.uuid4()), "title": "t", "description": "d", "status": "pending", "category": "other",
        "userId": "u", "voteCount": 1, "hasVoted": False, "commentCount": 0,
        "createdAt": "2026-02-01T10:30:00Z", "updatedAt": "2026-02-05T14:20:00Z",
    }
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "vote_count": 1})
    assert not validator.is_valid({**good, "status": "open"})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "userId"})


def test_snake_case_setting_switches_every_key_and_keeps_values(kit):
    camel = get(kit, includeMerged="true").json()
    kit.sandbox.state.feedbackkit_snake_case = True
    snaked = get(kit, includeMerged="true").json()
    assert len(snaked) == len(camel)
    for c, s in zip(camel, snaked):
        assert s == {snake(k): v for k, v in c.items()}
    keys = set().union(*(s.keys() for s in snaked))
    assert {"vote_count", "created_at", "updated_at", "user_id", "comment_count", "has_voted", "merged_into_id"} <= keys
    assert not any(k != k.lower() for k in keys)
    # the query parameter stays includeMerged (Facts beyond this page)
    assert len(get(kit).json()) < len(snaked)


def test_snake_case_applies_to_get_by_id(kit):
    kit.sandbox.state.feedbackkit_snake_case = True
    rid = next(iter(store(kit)))
    body = get(kit, f"{PATH}/{rid}").json()
    assert body["id"] == rid and "vote_count" in body and "voteCount" not in body


# -- get by id ------------------------------------------------------------------------------


def test_get_by_id_returns_the_item_merged_ones_included(kit):
    merged = next(r for r in store(kit).values() if r.get("mergedIntoId"))
    response = get(kit, f"{PATH}/{merged['id']}")
    assert response.status_code == 200
    assert response.json() == merged


def test_get_by_id_personalises_has_voted(kit):
    record = next(iter(store(kit).values()))
    assert get(kit, f"{PATH}/{record['id']}", headers={"X-User-Id": record["userId"]}).json()["hasVoted"] is True
    assert get(kit, f"{PATH}/{record['id']}", headers={"X-User-Id": "someone-else"}).json()["hasVoted"] is False


def test_get_unknown_id_is_404_and_malformed_id_is_400(kit):
    assert_error(get(kit, f"{PATH}/{uuid.uuid4()}"), 404, "not found")
    assert_error(get(kit, f"{PATH}/not-a-uuid"), 400, "Invalid feedback ID")


# -- data -------------------------------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed_and_end_date():
    def records():
        sandbox = Sandbox(SandboxState(seed=11, days=20, per_day=15, end=END), providers=("feedbackkit",))
        return sandbox.emulators["feedbackkit"].store.records

    first = records()
    assert first == records()
    assert len(first) == 20 * 15


def test_dataset_has_rare_rejects_and_optional_fields_both_absent_and_null(kit):
    records = list(store(kit).values())
    broken = [r for r in records if r["id"] in BROKEN_IDS]
    assert 1 <= len(broken) <= 30 // 30 + 1
    for field in ("userEmail", "totalMrr", "mergedIntoId"):
        assert any(field not in r for r in records), field
        assert any(field in r and r[field] is None for r in records), field
        assert any(r.get(field) is not None for r in records), field
    created = [r["createdAt"] for r in records if r["createdAt"] not in BROKEN_CREATED]
    instants = [datetime.fromisoformat(c.replace("Z", "+00:00")).astimezone(UTC) for c in created]
    assert any(t.time() == datetime.min.time() for t in instants), "midnight edge case"
    assert any(c.endswith("+02:00") for c in created), "offset timestamps"
    assert all(datetime.fromisoformat(r["updatedAt"].replace("Z", "+00:00")) <= datetime.now(UTC) for r in records)


def test_touch_bumps_updated_at(kit):
    rid = next(iter(store(kit)))
    before = store(kit)[rid]["updatedAt"]
    updated = kit.sandbox.update("feedbackkit", rid, {"status": "completed"})
    assert updated["updatedAt"] != before
    assert get(kit, f"{PATH}/{rid}").json()["status"] == "completed"


def test_inserted_and_deleted_items_show_in_the_next_response_exactly_once(kit):
    before = get(kit, includeMerged="true").json()
    new = {**before[0], "id": str(uuid.uuid4()), "voteCount": 10_000}
    kit.sandbox.add("feedbackkit", new)
    kit.sandbox.delete("feedbackkit", before[1]["id"])
    after = get(kit, includeMerged="true").json()
    ids = [i["id"] for i in after]
    assert ids[0] == new["id"], "highest vote count first"
    assert len(ids) == len(set(ids)) == len(before)
    assert before[1]["id"] not in ids


# -- faults and request log ------------------------------------------------------------------


def add_fault(server, **fault) -> None:
    httpx.post(f"{server.url}/_control/feedbackkit/faults", json=fault).raise_for_status()


def test_rate_limit_fault_answers_429_with_retry_after(kit):
    add_fault(kit, kind="rate_limit", retry_after="7")
    response = get(kit)
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert get(kit).status_code == 200, "count defaults to one request"


def test_server_error_fault_answers_html(kit):
    add_fault(kit, kind="server_error", status=502, count=2)
    for _ in range(2):
        response = get(kit)
        assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert get(kit).status_code == 200


def test_bad_envelope_fault_is_an_object_instead_of_an_array(kit):
    add_fault(kit, kind="bad_envelope")
    response = get(kit)
    assert response.status_code == 200 and isinstance(response.json(), dict)


def test_fault_after_n_requests(kit):
    add_fault(kit, kind="server_error", status=503, after=2)
    assert [get(kit).status_code for _ in range(4)] == [200, 200, 503, 200]


def test_drop_fault_breaks_the_connection(kit):
    add_fault(kit, kind="drop")
    with pytest.raises(httpx.TransportError):
        get(kit)
    assert get(kit).status_code == 200


def test_link_fault_sends_the_same_body_in_pieces_no_faster_than_its_rate(kit, monkeypatch):
    monkeypatch.setattr(core.PacedResponse, "PIECE_BYTES", 4096)  # the sandbox runs in this process
    unpaced = get(kit, includeMerged="true")
    rate = 4 * len(unpaced.content)  # a quarter of a second for the whole body
    add_fault(kit, kind="link", count=None, rate=rate)
    arrivals: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with _CLIENT.stream("GET", kit.url + PATH, params={"includeMerged": "true"}, headers={"X-API-Key": API_KEY}) as response:
        body = b""
        for chunk in response.iter_raw():
            body += chunk
            arrivals.append((time.monotonic() - t0, len(body)))
    assert response.status_code == 200 and response.headers["content-type"] == unpaced.headers["content-type"]
    assert body == unpaced.content
    assert len(unpaced.content) > 4 * core.PacedResponse.PIECE_BYTES, "enough pieces to see the pacing"
    # No byte arrives before the link could have carried it, and the body arrives in pieces.
    for seconds, received in arrivals:
        assert seconds >= received / rate
    assert len(unpaced.content) > 8 * 4096 and len(arrivals) > 4
    httpx.delete(f"{kit.url}/_control/faults").raise_for_status()
    assert get(kit, includeMerged="true").content == unpaced.content


def test_request_log_records_requests_without_the_key(kit):
    get(kit, includeMerged="true", headers={"X-User-Id": "user-1"})
    get(kit, key="sf_wrong")
    log = httpx.get(f"{kit.url}/_control/requests").json()
    entries = [e for e in log if e["provider"] == "feedbackkit"]
    assert [(e["path"], e["status"]) for e in entries] == [(PATH, 200), (PATH, 401)]
    assert entries[0]["query"] == [["includeMerged", "true"]]
    text = json.dumps(log)
    assert API_KEY not in text and "sf_wrong" not in text


def test_a_project_of_20000_items_is_served_whole_in_one_response(kit):
    # Throughput is measured by `make bench` (sandbox rates), not here.
    state = kit.sandbox.state
    state.days, state.per_day = 20, 1000
    kit.sandbox.generate()
    with httpx.Client(headers={"X-API-Key": API_KEY}, timeout=60) as client:
        items = client.get(kit.url + PATH, params={"includeMerged": "true"}).json()
    assert len(items) == 20_000 and len({i["id"] for i in items}) == 20_000


def test_days_of_two_records_still_get_their_bad_record():
    # Two records a day (the benchmark's smallest size): on some days every record carries the
    # merge fields, as null; the day's bad record is then one of those (the generation used to
    # stop there with StopIteration).
    records = Sandbox(SandboxState(days=365, per_day=2, end=END), providers=("feedbackkit",)).records("feedbackkit")
    assert len(records) >= 365
    assert any(r["id"] in BROKEN_IDS for r in records)
