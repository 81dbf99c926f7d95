"""The Usersnap emulator: JWT auth, validation errors, envelope, ordering, keyset paging, faults,
data realism, speed, and conformance to the vendored v0.1 OpenAPI file (with a written list of
relaxations, each one tested)."""

from __future__ import annotations

import copy
import functools
import json
import random
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.testing import MockRequest, MockResponse

from feedback_pipeline.sandbox import usersnap as us
from feedback_pipeline.sandbox.core import Fault, SandboxState
from feedback_pipeline.sandbox.usersnap import JWT_KID, JWT_SECRET, PROJECT_ID, UsersnapEmulator

from .conftest import make_sandbox, module_sandbox

UTC = timezone.utc
SPEC_PATH = Path(__file__).resolve().parent / "specs" / "usersnap-v0.1.openapi.json"
FEEDBACK = "/components/responses/ProjectFeedbackList/content/application~1json/schema/properties/data/properties/feedbacks/items/properties"

# Where the emulator (like the real API and its own published example) departs from the spec.
# Each entry: (JSON pointer into the spec, what is changed, why). ``relaxed_spec`` applies them and
# ``test_each_relaxation_is_needed_and_sufficient`` proves every one of them is necessary.
RELAXATIONS: list[tuple[str, dict[str, Any], str]] = [
    *[
        (f"{FEEDBACK}/{name}", {"nullable": True}, "null in real payloads (the spec's own example has screen_recording: null)")
        for name in ("priority", "assignee_id", "email", "client", "custom_data", "screenshot", "screen_recording", "ordered_inputs")
    ],
    *[(f"{FEEDBACK}/client/properties/{name}", {"nullable": True}, "unknown page / location is null") for name in ("url", "city_name", "country_name")],
    *[
        (f"{FEEDBACK}/ordered_inputs/items/properties/{name}", {"nullable": True}, "an answer fills only some of these (example: boolean_value null)")
        for name in ("boolean_value", "text_value")
    ],
    (
        f"{FEEDBACK}/ordered_inputs/items/properties/value",
        {"type": None, "nullable": True, "anyOf": [{"type": "string"}, {"type": "number"}]},
        "rating answers arrive as numbers as well as numeric strings",
    ),
    (f"{FEEDBACK}/labels/items/properties/color", {"nullable": True}, "labels without a colour"),
    (
        f"{FEEDBACK}/created_at",
        {"type": None, "format": None, "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
        "deliberately broken legacy records carry an epoch number (the connector must reject them)",
    ),
    (
        "/components/responses/ProjectFeedbackList/content/application~1json/schema/properties/data/properties/next",
        {"nullable": True},
        "an empty page has no next cursor",
    ),
    *[
        (f"/paths/{path}/responses/404", {"$ref": "#/components/responses/Error"}, "unknown project id: 404 with the Error shape")
        for path in ("~1projects~1{project_id}~1feedbacks/get", "~1projects~1{project_id}~1feedbacks~1filter/post", "~1projects~1{project_id}~1feedbacks~1filter~1count/post", "~1projects~1{project_id}~1feedbacks~1count/get")
    ],
]


def _resolve(doc: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
    node = doc
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def relaxed_spec(server: str | None = None, relaxations: list[tuple[str, dict[str, Any], str]] = RELAXATIONS) -> dict[str, Any]:
    spec = json.loads(SPEC_PATH.read_text())
    for pointer, change, _ in relaxations:
        parent, key = _resolve(spec, pointer)
        target = parent.setdefault(key, {})
        for name, value in change.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    if server:
        spec["servers"] = [{"url": server}]
    return spec


def token(*, secret: str = JWT_SECRET, kid: str | None = JWT_KID, alg: str = "HS256", exp_in: float | None = 300, iat_in: float = 0) -> str:
    now = time.time()
    claims: dict[str, Any] = {"iat": int(now + iat_in)}
    if exp_in is not None:
        claims["exp"] = int(now + exp_in)
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def auth(**kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**kwargs)}"}


WINDOW_BODY = lambda start, end, direction="asc": {  # noqa: E731
    "order_by": {"direction": direction, "order_by_type": "created_at"},
    "query": [
        {"filter_type": "created_at", "operator": "gte", "value": start},
        {"filter_type": "created_at", "operator": "lt", "value": end},
    ],
}


server = module_sandbox("usersnap")


@pytest.fixture
def sb(server):
    return server.reset()


@pytest.fixture(scope="module")
def bare():
    """A plain client (one per module: building an httpx client is not free)."""
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def api(sb, bare):
    """(base feedbacks URL, the client carrying a fresh valid token)."""
    base = sb.env()["USERSNAP_BASE_URL"] + f"/projects/{PROJECT_ID}/feedbacks"
    bare.headers.update(auth())
    yield base, bare
    bare.headers.pop("Authorization", None)


def records(sb) -> dict[str, dict[str, Any]]:
    return sb.sandbox.emulators["usersnap"].store.records


def ts(value: Any) -> datetime:
    return us._ts(value)


def page_through(client: httpx.Client, url: str, body: dict | None, limit: int, between=None) -> list[str]:
    ids: list[str] = []
    after = None
    for _ in range(10_000):
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        if body is None:
            response = client.get(url, params=params)
        else:
            response = client.post(url, params=params, json=body)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        ids.extend(f["feedback_id"] for f in data["feedbacks"])
        if between:
            between()
        if not data["has_more"]:
            return ids
        assert data["next"]["after"] == data["feedbacks"][-1]["feedback_id"]
        after = data["next"]["after"]
    raise AssertionError("paging never ended")


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (dict, "missing bearer token"),
        (lambda: {"Authorization": "Basic dXNlcjpwYXNz"}, "missing bearer token"),
        (lambda: {"Authorization": "Bearer not.a.jwt"}, "malformed token"),
        (lambda: auth(secret="another-secret-of-the-same-kind-0123456789"), "signature verification failed"),
        (lambda: auth(kid="some-other-jwt-id"), "unknown kid (JWT ID)"),
        (lambda: auth(kid=None), "unknown kid (JWT ID)"),
        (lambda: auth(alg="HS512"), "only HS256 is accepted"),
        (lambda: auth(exp_in=None), "token has no exp claim"),
        (lambda: auth(exp_in=-60, iat_in=-400), "token expired"),
        (lambda: auth(exp_in=3600), "token lifetime too long (exp at most 10 minutes ahead)"),
        (lambda: auth(iat_in=120), "token issued in the future"),
    ],
    ids=["none", "basic", "malformed", "bad-signature", "wrong-kid", "no-kid", "hs512", "no-exp", "expired", "exp-too-far", "iat-future"],
)
def test_bad_tokens_are_refused_with_401_wrong_auth(sb, bare, make_headers, reason):
    url = sb.env()["USERSNAP_BASE_URL"] + f"/projects/{PROJECT_ID}/feedbacks"
    headers = make_headers()
    for response in (bare.get(url, headers=headers), bare.post(url + "/filter", headers=headers, json={})):
        assert response.status_code == 401
        assert response.json() == {"status": False, "msg": "Authorization failed", "errortype": "WRONG_AUTH", "errordata": {"reason": reason}}


def test_a_valid_hs256_token_with_kid_is_accepted_up_to_ten_minutes_of_lifetime(sb, bare):
    url = sb.env()["USERSNAP_BASE_URL"] + f"/projects/{PROJECT_ID}/feedbacks"
    for lifetime in (30, 300, 590):
        response = bare.get(url, headers=auth(exp_in=lifetime))
        assert response.status_code == 200, response.text
        assert response.json()["status"] is True


def test_auth_is_checked_before_the_project(sb, bare):
    url = sb.env()["USERSNAP_BASE_URL"] + "/projects/not-my-project/feedbacks"
    assert bare.get(url).status_code == 401
    response = bare.get(url, headers=auth())
    assert response.status_code == 404
    assert response.json() == {"status": False, "msg": "Project does not exist", "errortype": "PROJECT_NOT_FOUND", "errordata": {"project_id": "not-my-project"}}


def test_request_log_never_holds_the_token_and_records_filter_bodies(api, sb):
    base, client = api
    body = {"query": [{"filter_type": "state", "operator": "eq", "value": "done"}]}
    client.post(base + "/filter", params={"limit": 5}, json=body)
    client.get(base, params={"limit": 5})
    entries = sb.sandbox.state.requests_for("usersnap")
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("POST", f"/v0.1/projects/{PROJECT_ID}/feedbacks/filter", 200),
        ("GET", f"/v0.1/projects/{PROJECT_ID}/feedbacks", 200),
    ]
    assert entries[0].body == body
    text = repr(entries)
    bearer = client.headers["Authorization"].split()[1]
    assert bearer not in text and JWT_SECRET not in text


# -- validation -------------------------------------------------------------------------------


def test_filter_without_a_json_body_is_400_and_an_empty_object_is_fine(api):
    base, client = api
    for kwargs in ({}, {"content": b""}, {"content": b"   "}):
        response = client.post(base + "/filter", **kwargs)
        assert response.status_code == 400
        assert response.json() == {"status": False, "msg": "a JSON body is required (send {} for no filter)", "errortype": "INVALID_BODY", "errordata": {}}
    assert client.post(base + "/filter/count").status_code == 400
    assert client.post(base + "/filter", content=b"{nope", headers={"content-type": "application/json"}).json()["errortype"] == "INVALID_BODY"
    assert client.post(base + "/filter", json=[1, 2]).json()["msg"] == "the request body must be a JSON object"
    response = client.post(base + "/filter", json={})
    assert response.status_code == 200
    assert response.json()["data"]["count"] == 10  # default limit


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
def test_limit_outside_1_to_100_is_400(api, limit):
    base, client = api
    for response in (client.get(base, params={"limit": limit}), client.post(base + "/filter", params={"limit": limit}, json={})):
        assert response.status_code == 400
        assert response.json() == {"status": False, "msg": "limit must be an integer between 1 and 100", "errortype": "VALIDATION_ERROR", "errordata": {"field": "limit"}}


def test_limit_bounds_and_default(api):
    base, client = api
    assert len(client.get(base).json()["data"]["feedbacks"]) == 10
    assert len(client.get(base, params={"limit": 1}).json()["data"]["feedbacks"]) == 1
    assert len(client.get(base, params={"limit": 100}).json()["data"]["feedbacks"]) == 100


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ({"query": {"filter_type": "state"}}, "query must be a list of filters"),
        ({"query": ["state"]}, "each query item must be an object"),
        ({"query": [{"filter_type": "colour", "operator": "eq", "value": "x"}]}, "unknown filter_type 'colour'"),
        ({"query": [{"filter_type": "state", "operator": "between", "value": "x"}]}, "unknown operator 'between'"),
        ({"query": [{"filter_type": "state", "operator": "eq"}]}, "filter state needs a value"),
        ({"query": [{"filter_type": "created_at", "operator": "gte", "value": "yesterday"}]}, "created_at filter value must be an ISO 8601 date-time"),
        ({"query": [{"filter_type": "created_at", "operator": "like", "value": "2024%"}]}, "like/ilike cannot be used with created_at"),
        ({"query": [{"filter_type": "feedback_number", "operator": "gt", "value": "many"}]}, "feedback_number filter value must be a number"),
        ({"order_by": {"order_by_type": "votes", "direction": "asc"}}, "unknown order_by_type 'votes'"),
        ({"order_by": {"order_by_type": "created_at", "direction": "up"}}, "unknown direction 'up'"),
        ({"order_by": "created_at"}, "order_by must be an object"),
    ],
)
def test_invalid_filters_are_400_validation_error(api, body, msg):
    base, client = api
    for path in ("/filter", "/filter/count"):
        response = client.post(base + path, json=body)
        assert response.status_code == 400
        payload = response.json()
        assert payload["status"] is False and payload["errortype"] == "VALIDATION_ERROR" and payload["msg"] == msg
        assert isinstance(payload["errordata"], dict)


def test_a_cursor_naming_no_feedback_is_400_invalid_cursor(api):
    base, client = api
    for response in (
        client.get(base, params={"after": "00000000-0000-4000-8000-000000000000"}),
        client.post(base + "/filter", params={"after": "gone"}, json={}),
        client.get(base, params={"before": "gone"}),
    ):
        assert response.status_code == 400
        assert response.json()["errortype"] == "INVALID_CURSOR"


def test_unknown_query_parameters_are_ignored(api):
    base, client = api
    response = client.get(base, params={"limit": 3, "sort": "whatever", "page": 9})
    assert response.status_code == 200 and len(response.json()["data"]["feedbacks"]) == 3


# -- ordering, filters, paging ----------------------------------------------------------------


def test_list_is_updated_at_descending_and_pages_return_every_record_once(api, sb):
    base, client = api
    ids = page_through(client, base, None, 37)
    assert Counter(ids) == Counter(list(records(sb)))
    keys = [ts(records(sb)[i]["updated_at"]) for i in ids]
    assert keys == sorted(keys, reverse=True)


def test_before_cursor_returns_the_preceding_page_in_the_same_order(api):
    base, client = api
    first = client.get(base, params={"limit": 20}).json()["data"]["feedbacks"]
    pivot = first[12]["feedback_id"]
    before = client.get(base, params={"limit": 5, "before": pivot}).json()["data"]
    assert [f["feedback_id"] for f in before["feedbacks"]] == [f["feedback_id"] for f in first[7:12]]
    assert before["previous"]["before"] == first[7]["feedback_id"]


def test_created_at_window_filter_returns_exactly_the_window_in_created_order(api, sb):
    base, client = api
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=9), datetime.min.time(), UTC)
    end = start + timedelta(days=3)
    body = WINDOW_BODY(start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z"))
    ids = page_through(client, base + "/filter", body, 7)
    expected = {i for i, r in records(sb).items() if start <= ts(r["created_at"]) < end}
    assert len(ids) == len(set(ids)) and set(ids) == expected and len(expected) == 60
    keys = [(ts(records(sb)[i]["created_at"]), i) for i in ids]
    assert keys == sorted(keys)
    desc = page_through(client, base + "/filter", WINDOW_BODY(body["query"][0]["value"], body["query"][1]["value"], "desc"), 100)
    assert desc == ids[::-1]
    count = client.post(base + "/filter/count", json=body).json()
    assert count == {"status": True, "data": {"total_count": 60}}


def test_created_at_bounds_honour_each_operator_at_the_exact_microsecond(api, sb):
    base, client = api
    rec = next(r for r in records(sb).values() if isinstance(r["created_at"], str))
    at = rec["created_at"]

    def hits(op: str) -> bool:
        body = {"query": [{"filter_type": "created_at", "operator": op, "value": at}], "order_by": {"order_by_type": "created_at", "direction": "asc"}}
        return rec["feedback_id"] in page_through(client, base + "/filter", body, 100)

    assert {op: hits(op) for op in ("eq", "gte", "lte", "gt", "lt", "neq")} == {"eq": True, "gte": True, "lte": True, "gt": False, "lt": False, "neq": False}


def test_state_email_and_number_filters(api, sb):
    base, client = api
    store = records(sb)

    def ids(query: list[dict]) -> set[str]:
        return set(page_through(client, base + "/filter", {"query": query}, 100))

    assert ids([{"filter_type": "state", "operator": "eq", "value": "done"}]) == {i for i, r in store.items() if r["status_type"] == "done"}
    assert ids([{"filter_type": "state", "operator": "in", "value": ["open", "in_progress"]}]) == {i for i, r in store.items() if r["status_type"] in ("open", "in_progress")}
    assert ids([{"filter_type": "state", "operator": "neq", "value": "open"}]) == {i for i, r in store.items() if r["status_type"] != "open"}
    assert ids([{"filter_type": "email", "operator": "like", "value": "%@example.org"}]) == {i for i, r in store.items() if (r.get("email") or "").endswith("@example.org")}
    assert ids([{"filter_type": "email", "operator": "ilike", "value": "ANA.%"}]) == {i for i, r in store.items() if (r.get("email") or "").startswith("ana.")}
    numbers = sorted(r["feedback_number"] for r in store.values())
    assert len(ids([{"filter_type": "feedback_number", "operator": "gt", "value": str(numbers[99])}])) == len(numbers) - 100
    combined = [{"filter_type": "state", "operator": "eq", "value": "open"}, {"filter_type": "email", "operator": "like", "value": "%.net"}]
    expected = {i for i, r in store.items() if r["status_type"] == "open" and (r.get("email") or "").endswith(".net")}
    assert ids(combined) == expected
    assert client.post(base + "/filter/count", json={"query": combined}).json()["data"]["total_count"] == len(expected)


def test_order_by_updated_at_and_rating(api, sb):
    base, client = api
    ids = page_through(client, base + "/filter", {"order_by": {"order_by_type": "updated_at", "direction": "asc"}}, 100)
    keys = [ts(records(sb)[i]["updated_at"]) for i in ids]
    assert keys == sorted(keys) and len(ids) == len(records(sb))
    ids = page_through(client, base + "/filter", {"order_by": {"order_by_type": "rating", "direction": "desc"}}, 100)
    ratings = [us.rating_of(records(sb)[i]) for i in ids]
    assert [r for r in ratings if r is not None] == sorted((r for r in ratings if r is not None), reverse=True)


def test_paging_is_stable_when_records_are_inserted_between_pages(api, sb):
    base, client = api
    original = set(records(sb))
    now = datetime.now(UTC)
    rng = random.Random(3)
    emulator = sb.sandbox.emulators["usersnap"]
    inserted: list[str] = []

    def insert() -> None:
        # New feedback (newest updated_at) and feedback created earlier today: both kinds of edge.
        for created in (now - timedelta(hours=rng.uniform(0, 2)), now - timedelta(days=rng.uniform(0, 20))):
            record = emulator.generate_day(rng, created.date(), 1, now)[0]
            record["created_at"] = us.data.iso_z(created, 6)
            record["updated_at"] = us.data.iso_z(now, 6)
            sb.sandbox.add("usersnap", record)
            inserted.append(record["feedback_id"])

    listed = page_through(client, base, None, 50, between=insert)
    assert len(listed) == len(set(listed)) and original <= set(listed)
    today = now.date()
    body = WINDOW_BODY(f"{today - timedelta(days=40)}T00:00:00Z", f"{today + timedelta(days=1)}T00:00:00Z")
    windowed = page_through(client, base + "/filter", body, 50, between=insert)
    assert len(windowed) == len(set(windowed)) and original <= set(windowed)


def test_envelope_has_next_cursor_and_null_next_on_an_empty_page(api):
    base, client = api
    data = client.post(base + "/filter", params={"limit": 2}, json={}).json()["data"]
    assert data["has_more"] is True and data["count"] == 2
    assert data["next"] == {"query_string": f"limit=2&after={data['feedbacks'][-1]['feedback_id']}", "limit": 2, "after": data["feedbacks"][-1]["feedback_id"]}
    empty = client.post(base + "/filter", json={"query": [{"filter_type": "state", "operator": "eq", "value": "no-such-state"}]}).json()
    assert empty == {"status": True, "data": {"has_more": False, "count": 0, "feedbacks": [], "next": None}}


def test_count_endpoints(api, sb):
    base, client = api
    assert client.get(base + "/count").json() == {"status": True, "data": {"total_count": len(records(sb))}}
    assert client.post(base + "/filter/count", json={}).json() == {"status": True, "data": {"total_count": len(records(sb))}}


# -- OpenAPI conformance ----------------------------------------------------------------------


def test_responses_validate_against_the_relaxed_openapi_file(api, sb):
    base, _ = api
    spec = OpenAPI.from_dict(relaxed_spec(sb.env()["USERSNAP_BASE_URL"]))
    session = requests.Session()
    session.headers.update(auth())
    today = datetime.now(UTC).date()
    calls = [
        ("GET", base, {"limit": 100}, None),
        ("GET", base + "/count", None, None),
        ("POST", base + "/filter", {"limit": 100}, WINDOW_BODY(f"{today - timedelta(days=30)}T00:00:00Z", f"{today + timedelta(days=1)}T00:00:00Z")),
        ("POST", base + "/filter", {"limit": 100}, {"query": [{"filter_type": "state", "operator": "eq", "value": "nothing"}]}),
        ("POST", base + "/filter/count", None, {}),
        ("POST", base + "/filter", {"limit": 0}, {}),
        ("POST", base + "/filter", None, None),
        ("GET", base.replace(PROJECT_ID, "nope"), None, None),
    ]
    statuses = []
    for method, url, params, body in calls:
        response = session.request(method, url, params=params, json=body)
        spec.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
        statuses.append(response.status_code)
    # Every page of everything, so each generated record variant is checked.
    after = None
    while True:
        response = session.post(base + "/filter", params={"limit": 100, **({"after": after} if after else {})}, json={})
        spec.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))
        data = response.json()["data"]
        if not data["has_more"]:
            break
        after = data["next"]["after"]
    unauthorized = requests.get(base, headers=auth(alg="HS512"))
    spec.validate_response(RequestsOpenAPIRequest(unauthorized.request), RequestsOpenAPIResponse(unauthorized))
    assert statuses == [200, 200, 200, 200, 200, 400, 400, 404] and unauthorized.status_code == 401


def _feedback(**changes: Any) -> dict[str, Any]:
    record = {
        "feedback_id": "f5150fc1-a7c9-4e33-8bd5-7a9cf3423e32",
        "feedback_number": 10,
        "public_link": "https://app.usersnap.com/l/feedback/f5150fc1-a7c9-4e33-8bd5-7a9cf3423e32",
        "project_id": PROJECT_ID,
        "created_at": "2022-08-04T10:22:34.127599Z",
        "updated_at": "2022-08-04T10:22:34.153671Z",
        "status_type": "open",
        "priority": "high",
        "assignee_id": "66e13ff6-509b-4385-9ef7-660167e972ba",
        "is_demo": False,
        "email": "someone@somewhere.com",
        "client": {"url": "https://example.com", "city_name": "Linz", "country_name": "Austria"},
        "custom_data": {},
        "screenshot": {"annotated_image_url": "https://x/y.png", "comments": []},
        "screen_recording": {"file_resource_url": "https://x/y.webm", "mime_type": "video/webm"},
        "ordered_inputs": [{"order": 0, "label": "Comment", "boolean_value": False, "text_value": "hi", "value": "hi"}],
        "labels": [{"company_label_id": "l", "identifier": "bug", "name": "Bug", "color": "#f71007"}],
    }
    for path, value in changes.items():
        node = record
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value
    return record


def _list_body(feedback: dict[str, Any] | None = None, next_: Any = "default") -> bytes:
    feedbacks = [feedback] if feedback else []
    data = {"has_more": False, "count": len(feedbacks), "feedbacks": feedbacks}
    data["next"] = {"query_string": "limit=1&after=x", "limit": 1, "after": "x"} if next_ == "default" else next_
    return orjson.dumps({"status": True, "data": data})


# One offending response per relaxation (same order as RELAXATIONS).
RELAXATION_CASES: list[tuple[str, str, int, bytes]] = [
    *[("get", "/projects/p/feedbacks", 200, _list_body(_feedback(**{name: None}))) for name in ("priority", "assignee_id", "email", "client", "custom_data", "screenshot", "screen_recording", "ordered_inputs")],
    *[("get", "/projects/p/feedbacks", 200, _list_body(_feedback(**{f"client__{name}": None}))) for name in ("url", "city_name", "country_name")],
    *[("get", "/projects/p/feedbacks", 200, _list_body(_feedback(**{f"ordered_inputs__0__{name}": None}))) for name in ("boolean_value", "text_value")],
    ("get", "/projects/p/feedbacks", 200, _list_body(_feedback(ordered_inputs__0__value=7))),
    ("get", "/projects/p/feedbacks", 200, _list_body(_feedback(labels__0__color=None))),
    ("get", "/projects/p/feedbacks", 200, _list_body(_feedback(created_at=1714730400.123))),
    ("get", "/projects/p/feedbacks", 200, _list_body(None, next_=None)),
    *[(m, p, 404, orjson.dumps({"status": False, "msg": "Project does not exist", "errortype": "PROJECT_NOT_FOUND", "errordata": {}})) for m, p in (("get", "/projects/p/feedbacks"), ("post", "/projects/p/feedbacks/filter"), ("post", "/projects/p/feedbacks/filter/count"), ("get", "/projects/p/feedbacks/count"))],
]


@functools.lru_cache(maxsize=1)
def _relaxed_api() -> OpenAPI:
    return OpenAPI.from_dict(relaxed_spec())  # validates the relaxed spec itself once


def _validate(spec: dict[str, Any] | None, method: str, path: str, status: int, body: bytes) -> None:
    """Validate one response against ``spec`` (None: the full relaxed spec)."""
    api = _relaxed_api() if spec is None else OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    request = MockRequest("https://platform.usersnap.com", method, "/v0.1" + path, data=b"{}" if method == "post" else None)
    api.validate_response(request, MockResponse(body, status_code=status))


def test_relaxation_list_and_cases_line_up():
    assert len(RELAXATION_CASES) == len(RELAXATIONS)
    assert all(reason for _, _, reason in RELAXATIONS)


@pytest.mark.parametrize("index", range(len(RELAXATIONS)), ids=[p.rsplit("/", 1)[-1] + f"-{i}" for i, (p, _, _) in enumerate(RELAXATIONS)])
def test_each_relaxation_is_needed_and_sufficient(index):
    method, path, status, body = RELAXATION_CASES[index]
    with pytest.raises(Exception):  # noqa: B017 - any validation failure of the unrelaxed spec
        _validate(relaxed_spec(relaxations=[r for i, r in enumerate(RELAXATIONS) if i != index]), method, path, status, body)
    _validate(None, method, path, status, body)


def test_relaxed_spec_still_rejects_wrong_types():
    spec = None
    _validate(spec, "get", "/projects/p/feedbacks", 200, _list_body(_feedback()))
    for bad in (_feedback(feedback_number="ten"), _feedback(is_demo="no"), _feedback(labels={"name": "Bug"}), _feedback(ordered_inputs__0__value=[1])):
        with pytest.raises(Exception):  # noqa: B017
            _validate(spec, "get", "/projects/p/feedbacks", 200, _list_body(bad))
    with pytest.raises(Exception):  # noqa: B017
        _validate(spec, "get", "/projects/p/feedbacks", 200, orjson.dumps({"status": True, "data": {"has_more": "yes", "feedbacks": []}}))


# -- faults -----------------------------------------------------------------------------------


def test_faults_apply_to_usersnap_routes(api, sb):
    base, client = api
    state = sb.sandbox.state
    state.add_fault("usersnap", Fault(kind="rate_limit", retry_after="7"))
    response = client.post(base + "/filter", json={})
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    state.add_fault("usersnap", Fault(kind="server_error", status=502))
    response = client.get(base)
    assert response.status_code == 502 and "html" in response.headers["content-type"]
    state.add_fault("usersnap", Fault(kind="bad_envelope"))
    assert client.post(base + "/filter", json={}).json() == UsersnapEmulator(state).bad_envelope()
    state.add_fault("usersnap", Fault(kind="drop"))
    with pytest.raises(httpx.HTTPError):
        client.get(base)
    assert client.get(base).status_code == 200
    assert [e.status for e in state.requests_for("usersnap")] == [429, 502, 200, 200, 200]


# -- data -------------------------------------------------------------------------------------


def test_env_points_at_the_v0_1_base_with_fixed_credentials(sb):
    env = UsersnapEmulator(sb.sandbox.state).env("http://127.0.0.1:9")
    assert env == {"USERSNAP_JWT_SECRET": JWT_SECRET, "USERSNAP_JWT_KID": JWT_KID, "USERSNAP_PROJECT_ID": PROJECT_ID, "USERSNAP_BASE_URL": "http://127.0.0.1:9/v0.1"}


def test_generated_data_is_deterministic_and_has_every_variant():
    emulator = UsersnapEmulator(SandboxState())
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(60)]

    def generate() -> list[dict[str, Any]]:
        rng = random.Random("7:usersnap")
        return [r for d in days for r in emulator.generate_day(rng, d, 20, now)]

    first, second = generate(), generate()
    assert first == second and len({r["feedback_id"] for r in first}) == len(first) == 1200
    broken = [r for r in first if not isinstance(r["created_at"], str)]
    assert 1 <= len(broken) <= 2  # one per 30 days, none in the last 20 (data.bad_record_day)
    statuses = Counter(r["status_type"] for r in first)
    assert set(statuses) == {"open", "in_progress", "done", us.UNKNOWN_STATUS} and statuses[us.UNKNOWN_STATUS] < 60
    labels = [e["label"] for r in first for e in (r["ordered_inputs"] or [])]
    assert any("(NPS)" in label for label in labels)
    values = [e["value"] for r in first for e in (r["ordered_inputs"] or []) if "rating" in e["label"].lower() or "score" in e["label"].lower()]
    assert any(isinstance(v, int) for v in values) and any(isinstance(v, str) and v.isdigit() for v in values) and "N/A" in values
    assert any(r["ordered_inputs"] and [e["order"] for e in r["ordered_inputs"]] != sorted(e["order"] for e in r["ordered_inputs"]) for r in first)
    assert any("email" not in r for r in first) and any(r.get("email") is None and "email" in r for r in first)
    assert any(r["client"] is None for r in first) and any(r["client"] and r["client"].get("url") is None for r in first)
    assert any(r["labels"] == [] for r in first) and any(len(r["labels"]) == 2 for r in first)
    assert all(ts(r["updated_at"]) >= ts(r["created_at"]) and ts(r["updated_at"]) <= now for r in first)
    assert all(r["project_id"] == PROJECT_ID for r in first)


def test_touch_bumps_updated_at_and_moves_the_record_to_the_top(api, sb):
    base, client = api
    victim = sorted(records(sb).values(), key=lambda r: r["updated_at"])[0]
    updated = sb.sandbox.update("usersnap", victim["feedback_id"], {"status_type": "done"})
    assert ts(updated["updated_at"]) > ts(victim["updated_at"])
    top = client.get(base, params={"limit": 1}).json()["data"]["feedbacks"][0]
    assert top["feedback_id"] == victim["feedback_id"] and top["status_type"] == "done"


def test_full_100_record_pages_follow_each_other_through_a_large_window():
    # Throughput is measured by `make bench` (sandbox rates), not here.
    srv = make_sandbox(("usersnap",), days=10, per_day=1000)
    try:
        base = srv.env()["USERSNAP_BASE_URL"] + f"/projects/{PROJECT_ID}/feedbacks/filter"
        today = datetime.now(UTC).date()
        body = WINDOW_BODY(f"{today - timedelta(days=30)}T00:00:00Z", f"{today + timedelta(days=1)}T00:00:00Z")
        seen: list[str] = []
        after = None
        with httpx.Client(headers=auth(), timeout=30) as client:
            for _ in range(50):
                params = {"limit": 100, **({"after": after} if after else {})}
                data = orjson.loads(client.post(base, params=params, json=body).content)["data"]
                assert len(data["feedbacks"]) == 100 and data["has_more"]
                seen += [f["feedback_id"] for f in data["feedbacks"]]
                after = data["next"]["after"]
        assert len(set(seen)) == 5000
    finally:
        srv.stop()


def test_relaxed_spec_helper_does_not_modify_the_vendored_file():
    before = SPEC_PATH.read_bytes()
    relaxed = relaxed_spec("http://x/v0.1")
    assert SPEC_PATH.read_bytes() == before
    assert relaxed != json.loads(before) and copy.deepcopy(relaxed)["servers"] == [{"url": "http://x/v0.1"}]
