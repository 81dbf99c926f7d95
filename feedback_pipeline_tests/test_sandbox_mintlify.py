"""The Mintlify emulator against shared/providers/mintlify.md and the vendored OpenAPI file.

Real HTTP over loopback. Responses are validated with openapi-core against
``shared/providers/specs/mintlify-analytics.openapi.json``; the only relaxations are the ones
specs/README.md allows, listed in :data:`RELAXATIONS` and each tested below.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from feedback_pipeline.sandbox import mintlify as mint
from feedback_pipeline.sandbox.app import Sandbox
from feedback_pipeline.sandbox.core import Fault, SandboxState
from feedback_pipeline.sandbox.server import SandboxServer

from .conftest import module_sandbox

UTC = timezone.utc
SPEC_PATH = Path(__file__).resolve().parent / "specs" / "mintlify-analytics.openapi.json"
FEEDBACK = f"/api/external/v1/analytics/{mint.PROJECT_ID}/feedback"
SPEC_PATH_TEMPLATE = "/api/external/v1/analytics/{projectId}/feedback"
# The operation's own server in the spec; the adapter presents loopback requests as sent there.
SPEC_HOST = "https://leaves.mintlify.com"

# Written list of relaxations (specs/README.md: "the pages and their 'Facts beyond this page'
# notes rule"). Everything else is validated strictly.
RELAXATIONS = {
    "later_sources": "item `source` may also be `agent` or `thumbs_only` (and the `source` filter accepts them)",
    "undeclared_401_429": "401 and 429 are answered with AnalyticsErrorResponse although the operation declares neither",
    "nullable_created_comment": "`createdAt` and `comment` are nullable (the pinned spec already says so: no change needed)",
}


# -- OpenAPI adapter ---------------------------------------------------------------------------


class SpecRequest:
    """An httpx request seen by openapi-core (host replaced by the spec's server)."""

    def __init__(self, request: httpx.Request):
        self.host_url = SPEC_HOST
        self.path = urlsplit(str(request.url)).path
        self.method = request.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )
        self.body = None
        self.content_type = "application/json"


class SpecResponse:
    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))
        self.data = response.content


def relaxed_spec_dict() -> dict[str, Any]:
    spec = json.loads(SPEC_PATH.read_text())
    operation = spec["paths"][SPEC_PATH_TEMPLATE]["get"]
    # later_sources
    for option in spec["components"]["schemas"]["FeedbackResponse"]["properties"]["feedback"]["items"]["anyOf"]:
        option["properties"]["source"]["enum"] = list(mint.SOURCES)
    for param in operation["parameters"]:
        if param.get("name") == "source":
            param["schema"]["enum"] = list(mint.SOURCES)
    # undeclared_401_429
    error = copy.deepcopy(operation["responses"]["400"])
    operation["responses"]["401"] = {**error, "description": "Unauthorized"}
    operation["responses"]["429"] = {**error, "description": "Rate limit exceeded"}
    # nullable_created_comment: already nullable in the pinned file (asserted in a test).
    return spec


STRICT = OpenAPI.from_file_path(str(SPEC_PATH))
RELAXED = OpenAPI.from_dict(relaxed_spec_dict())


def validate(response: httpx.Response, spec: OpenAPI = RELAXED) -> None:
    spec.validate_response(SpecRequest(response.request), SpecResponse(response))


# -- fixtures ----------------------------------------------------------------------------------


server = module_sandbox("mintlify")


@pytest.fixture
def sb(server: SandboxServer) -> SandboxServer:
    return server.reset()


@pytest.fixture
def client(sb: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sb.url, headers={"Authorization": f"Bearer {mint.API_KEY}"}) as c:
        yield c


def emulator(sb: SandboxServer) -> mint.MintlifyEmulator:
    return sb.sandbox.emulators["mintlify"]  # type: ignore[return-value]


def records(sb: SandboxServer) -> dict[str, dict[str, Any]]:
    return emulator(sb).store.records


def page_all(client: httpx.Client, params: dict[str, Any] | None = None, between=None) -> list[dict[str, Any]]:  # noqa: ANN001
    out: list[dict[str, Any]] = []
    query = dict(params or {})
    while True:
        response = client.get(FEEDBACK, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        out.extend(body["feedback"])
        if not body["hasMore"]:
            assert body["nextCursor"] is None
            return out
        query["cursor"] = body["nextCursor"]
        if between:
            between()


def served_time(record: dict[str, Any]) -> int:
    return mint.stored_time(record)  # type: ignore[return-value]


def assert_error(response: httpx.Response, status: int, error: str, detail: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["details"], list) and body["details"]
    assert all(isinstance(d["message"], str) and d["message"] for d in body["details"])
    if detail:
        assert any(detail in d["message"] for d in body["details"]), body
    validate(response)


# -- auth and project --------------------------------------------------------------------------


def test_env_points_the_pipeline_at_the_sandbox_with_fixed_credentials(sb: SandboxServer) -> None:
    env = sb.env()
    assert env == {"MINTLIFY_API_KEY": mint.API_KEY, "MINTLIFY_PROJECT_ID": mint.PROJECT_ID, "MINTLIFY_BASE_URL": sb.url}
    assert env["MINTLIFY_API_KEY"].startswith("mint_")


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Basic {mint.API_KEY}", "Bearer", "Bearer sk_live_not_a_mintlify_key", "Bearer mint_unknown_key_000", f"Bearer {mint.API_KEY[5:]}"],
    ids=["missing", "empty", "basic-scheme", "no-token", "no-mint-prefix", "unknown-mint-key", "prefix-stripped"],
)
def test_auth_failures_are_401_with_the_documented_error_body(sb: SandboxServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with httpx.Client(base_url=sb.url) as c:
        response = c.get(FEEDBACK, headers=headers)
    assert_error(response, 401, "Unauthorized", "mint_")
    assert "retry-after" not in response.headers


def test_every_admin_key_of_the_organization_is_accepted(sb: SandboxServer) -> None:
    for key in (mint.API_KEY, mint.SECOND_KEY):
        with httpx.Client(base_url=sb.url) as c:
            response = c.get(FEEDBACK, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        validate(response)


@pytest.mark.parametrize("project", ["does-not-exist", mint.OTHER_PROJECT_ID])
def test_unknown_or_foreign_project_is_400_invalid_project(client: httpx.Client, project: str) -> None:
    # The operation declares no 404: an unusable project id is a 400 (documented choice).
    response = client.get(f"/api/external/v1/analytics/{project}/feedback")
    assert_error(response, 400, "Invalid project", project)


def test_another_organizations_key_reads_its_own_project_only(sb: SandboxServer) -> None:
    with httpx.Client(base_url=sb.url, headers={"Authorization": f"Bearer {mint.OTHER_ORG_KEY}"}) as c:
        own = c.get(f"/api/external/v1/analytics/{mint.OTHER_PROJECT_ID}/feedback")
        foreign = c.get(FEEDBACK)
    assert own.status_code == 200 and own.json() == {"feedback": [], "nextCursor": None, "hasMore": False}
    validate(own)
    assert_error(foreign, 400, "Invalid project")


# -- parameter validation ----------------------------------------------------------------------


def _cursor(raw: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode()


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "nan"}, "limit"),
        ({"dateFrom": "yesterday"}, "dateFrom"),
        ({"dateFrom": "2024-02-30"}, "dateFrom"),
        ({"dateTo": "2024-13-01"}, "dateTo"),
        ({"dateTo": "2024-01-01T25:00:00Z"}, "dateTo"),
        ({"source": "video"}, "source"),
        ({"status": "pending,archived"}, "status"),
        ({"cursor": "%%%not-base64%%%"}, "cursor"),
        ({"cursor": _cursor({"k": "x", "i": "a"})}, "cursor"),
        ({"cursor": _cursor({"k": 1})}, "cursor"),
        ({"cursor": _cursor([1, "a"])}, "cursor"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={str(x)[:12]}" for k, x in v.items()),
)
def test_invalid_parameters_are_400_with_the_documented_error_body(client: httpx.Client, params: dict[str, str], detail: str) -> None:
    response = client.get(FEEDBACK, params=params)
    assert_error(response, 400, "Invalid query parameters", detail)


def test_all_invalid_parameters_are_reported_together(client: httpx.Client) -> None:
    response = client.get(FEEDBACK, params={"limit": "0", "dateFrom": "x", "source": "y"})
    assert_error(response, 400, "Invalid query parameters")
    messages = " ".join(d["message"] for d in response.json()["details"])
    assert "limit" in messages and "dateFrom" in messages and "source" in messages


def test_limit_defaults_to_50_and_accepts_1_to_100(client: httpx.Client) -> None:
    assert len(client.get(FEEDBACK).json()["feedback"]) == 50
    assert len(client.get(FEEDBACK, params={"limit": "1"}).json()["feedback"]) == 1
    assert len(client.get(FEEDBACK, params={"limit": "100"}).json()["feedback"]) == 100
    assert len(client.get(FEEDBACK, params={"limit": "7.9"}).json()["feedback"]) == 7  # a number, truncated


def test_unknown_query_parameters_are_ignored(client: httpx.Client) -> None:
    plain = client.get(FEEDBACK, params={"limit": 5}).json()
    extra = client.get(FEEDBACK, params={"limit": 5, "sort": "asc", "page": "3", "foo": "bar"}).json()
    assert extra == plain


# -- order, filters, paging --------------------------------------------------------------------


def test_paging_returns_every_record_exactly_once_newest_first(sb: SandboxServer, client: httpx.Client) -> None:
    items = page_all(client, {"limit": 100})
    ids = [r["id"] for r in items]
    assert len(ids) == len(set(ids)) == len(records(sb)) == 600
    stored = records(sb)
    keys = [(-served_time(stored[i]), i) for i in ids]
    assert keys == sorted(keys)  # createdAt DESC, id ASC (the sandbox's documented order)


def test_last_page_has_null_cursor_and_has_more_false(client: httpx.Client) -> None:
    body = client.get(FEEDBACK, params={"limit": 100, "dateFrom": "2000-01-01", "dateTo": "2000-01-02"}).json()
    assert body == {"feedback": [], "nextCursor": None, "hasMore": False}
    first = client.get(FEEDBACK, params={"limit": 100}).json()
    assert first["hasMore"] is True and isinstance(first["nextCursor"], str)


def test_a_full_last_page_says_no_more(sb: SandboxServer, client: httpx.Client) -> None:
    # 600 records / 100 per page: the 6th page is full and must already report hasMore=false.
    assert len(records(sb)) == 600
    flags, sizes, params = [], [], {"limit": 100}
    while True:
        body = client.get(FEEDBACK, params=params).json()
        flags.append(body["hasMore"])
        sizes.append(len(body["feedback"]))
        if not body["hasMore"]:
            assert body["nextCursor"] is None
            break
        params["cursor"] = body["nextCursor"]
    assert sizes == [100] * 6 and flags == [True] * 5 + [False]


def test_paging_is_stable_when_records_are_inserted_between_pages(sb: SandboxServer, client: httpx.Client) -> None:
    original = set(records(sb))
    store = emulator(sb).store
    now = datetime.now(UTC)
    counter = iter(range(10_000))

    def insert() -> None:
        n = next(counter)
        # newer than everything, older than everything, and at the time of an existing record
        # (same key as a likely page edge): none may shift a page boundary.
        some = next(iter(records(sb).values()))
        for label, at in (("newer", now + timedelta(seconds=n + 1)), ("older", now - timedelta(days=400 + n)), ("same", None)):
            rid = f"ins{n:04d}-{label}"
            us = mint.stored_time(some) if at is None else mint._epoch_us(at)
            store.put({"id": rid, "path": "/", "comment": None, "createdAt": mint.data.iso_z(datetime.fromtimestamp(us / 1e6, UTC)), "source": "agent", "status": "pending", mint.HIDDEN: us})

    items = page_all(client, {"limit": 37}, between=insert)
    ids = [r["id"] for r in items]
    assert len(ids) == len(set(ids)), "a record was served twice"
    assert original <= set(ids), "a record present from the start was skipped"


def test_date_from_is_inclusive_and_date_to_exclusive(sb: SandboxServer, client: httpx.Client) -> None:
    day = datetime.now(UTC).date() - timedelta(days=3)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    store = emulator(sb).store
    edges = {
        "at-start": start,
        "before-start": start - timedelta(milliseconds=1),
        "last-ms": start + timedelta(days=1) - timedelta(milliseconds=1),
        "at-end": start + timedelta(days=1),
    }
    for rid, at in edges.items():
        store.put({"id": rid, "path": "/", "comment": "edge", "createdAt": mint.data.iso_z(at), "source": "agent", "status": "pending", mint.HIDDEN: mint._epoch_us(at)})
    expected = {rid for rid, r in records(sb).items() if mint._epoch_us(start) <= served_time(r) < mint._epoch_us(start + timedelta(days=1))}
    assert {"at-start", "last-ms"} <= expected and not {"before-start", "at-end"} & expected
    for date_from, date_to in [
        (day.isoformat(), (day + timedelta(days=1)).isoformat()),
        (f"{day.isoformat()}T00:00:00Z", f"{(day + timedelta(days=1)).isoformat()}T00:00:00.000Z"),
        (f"{day.isoformat()}T02:00:00+02:00", f"{(day + timedelta(days=1)).isoformat()}T00:00:00"),  # offset; no zone = UTC
    ]:
        got = {r["id"] for r in page_all(client, {"limit": 100, "dateFrom": date_from, "dateTo": date_to})}
        assert got == expected, (date_from, date_to)


def test_source_filter_accepts_all_four_sources(sb: SandboxServer, client: httpx.Client) -> None:
    for source in mint.SOURCES:
        got = page_all(client, {"limit": 100, "source": source})
        assert got and {r["source"] for r in got} == {source}
        assert {r["id"] for r in got} == {rid for rid, r in records(sb).items() if r["source"] == source}


def test_status_filter_is_a_comma_separated_list(sb: SandboxServer, client: httpx.Client) -> None:
    got = page_all(client, {"limit": 100, "status": "resolved,dismissed"})
    assert {r["id"] for r in got} == {rid for rid, r in records(sb).items() if r["status"] in ("resolved", "dismissed")}
    both = page_all(client, {"limit": 100, "status": "pending", "source": "contextual", "dateFrom": (datetime.now(UTC).date() - timedelta(days=9)).isoformat()})
    assert both and all(r["status"] == "pending" and r["source"] == "contextual" for r in both)


# -- records -----------------------------------------------------------------------------------


def test_items_cover_all_four_variants_with_their_optional_fields(client: httpx.Client) -> None:
    items = page_all(client, {"limit": 100})
    by_source: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        assert mint.HIDDEN not in item
        assert {"id", "path", "comment", "createdAt", "source", "status"} <= set(item)
        by_source.setdefault(item["source"], []).append(item)
    assert set(by_source) == set(mint.SOURCES)
    contextual = by_source["contextual"]
    assert all(isinstance(r["helpful"], bool) for r in contextual)
    contacts = [r.get("contact", "absent") for r in contextual]
    assert "absent" in contacts and None in contacts and any(isinstance(c, str) and "@" in c for c in contacts)
    snippets = by_source["code_snippet"]
    assert all(isinstance(r["code"], str) for r in snippets)
    assert any(r["filename"] is None for r in snippets) and any(r["lang"] is None for r in snippets)
    assert any(isinstance(r["filename"], str) for r in snippets)
    assert all(r["comment"] is None and isinstance(r["helpful"], bool) for r in by_source["thumbs_only"])
    assert any(r["comment"] is None for r in contextual) and any(r["comment"] == "" for r in items)


def test_a_few_records_have_null_created_at_and_are_still_found_by_date(sb: SandboxServer, client: httpx.Client) -> None:
    nulls = [r for r in records(sb).values() if r["createdAt"] is None]
    assert 1 <= len(nulls) <= 6  # rare: about one per ten days
    target = nulls[0]
    at = datetime.fromtimestamp(target[mint.HIDDEN] / 1e6, UTC).date()
    got = page_all(client, {"limit": 100, "dateFrom": at.isoformat(), "dateTo": (at + timedelta(days=1)).isoformat()})
    assert target["id"] in {r["id"] for r in got}
    validate(client.get(FEEDBACK, params={"limit": 100, "dateFrom": at.isoformat(), "dateTo": (at + timedelta(days=1)).isoformat()}))


def test_midnight_edges_are_generated(sb: SandboxServer) -> None:
    times = [r["createdAt"] for r in records(sb).values() if r["createdAt"]]
    assert any(t.endswith("T00:00:00.000Z") for t in times)
    assert any(t.endswith("T23:59:59.999Z") for t in times)


def test_generation_is_deterministic_for_a_seed_and_touch_changes_nothing() -> None:
    end = date(2026, 3, 10)
    a = Sandbox(SandboxState(seed=3, days=5, per_day=10, end=end, mintlify_rate_limit=None), providers=("mintlify",))
    b = Sandbox(SandboxState(seed=3, days=5, per_day=10, end=end, mintlify_rate_limit=None), providers=("mintlify",))
    ra, rb = a.emulators["mintlify"].store.records, b.emulators["mintlify"].store.records
    assert ra == rb and len(ra) == 50
    some = dict(next(iter(ra.values())))
    before = dict(some)
    a.emulators["mintlify"].touch(some, datetime.now(UTC))
    assert some == before  # no update timestamp in the Mintlify API


def test_records_added_without_the_hidden_time_use_created_at(sb: SandboxServer, client: httpx.Client) -> None:
    sb.sandbox.add("mintlify", {"id": "manual-1", "path": "/x", "comment": "hi", "createdAt": "2020-06-01T12:00:00Z", "source": "agent", "status": "pending"})
    sb.sandbox.add("mintlify", {"id": "manual-2", "path": "/x", "comment": "hi", "createdAt": None, "source": "agent", "status": "pending"})
    got = page_all(client, {"limit": 100, "dateFrom": "2020-06-01", "dateTo": "2020-06-02"})
    assert [r["id"] for r in got] == ["manual-1"]
    everything = page_all(client, {"limit": 100})
    assert everything[-1]["id"] == "manual-2"  # no time at all: sorts last, matches no dateFrom


# -- OpenAPI -----------------------------------------------------------------------------------


def test_every_page_and_error_validates_against_the_spec_with_the_listed_relaxations(sb: SandboxServer, client: httpx.Client) -> None:
    params: dict[str, Any] = {"limit": 100}
    pages = 0
    while True:
        response = client.get(FEEDBACK, params=params)
        validate(response)
        body = response.json()
        pages += 1
        if not body["hasMore"]:
            break
        params["cursor"] = body["nextCursor"]
    assert pages == 6
    for params in ({"limit": 0}, {"source": "x"}, {"cursor": "bad"}):
        validate(client.get(FEEDBACK, params=params))


def test_relaxation_later_sources_is_needed_and_sufficient(client: httpx.Client) -> None:
    assert set(RELAXATIONS) == {"later_sources", "undeclared_401_429", "nullable_created_comment"}
    agent = client.get(FEEDBACK, params={"source": "agent", "limit": 5})
    contextual = client.get(FEEDBACK, params={"source": "contextual", "limit": 5})
    with pytest.raises(Exception, match="not valid"):
        validate(agent, STRICT)
    validate(agent, RELAXED)
    validate(contextual, STRICT)  # the documented sources need no relaxation
    # The filter: strict spec refuses source=agent, the relaxed one accepts it.
    with pytest.raises(Exception):
        STRICT.validate_request(SpecRequest(agent.request))
    RELAXED.validate_request(SpecRequest(agent.request))


def test_relaxation_undeclared_401_429_is_needed_and_bodies_match_the_error_schema(sb: SandboxServer) -> None:
    with httpx.Client(base_url=sb.url) as c:
        unauthorized = c.get(FEEDBACK)
    with pytest.raises(Exception, match="401"):
        validate(unauthorized, STRICT)
    validate(unauthorized, RELAXED)
    sb.sandbox.state.mintlify_rate_limit = 1
    with httpx.Client(base_url=sb.url, headers={"Authorization": f"Bearer {mint.API_KEY}"}) as c:
        c.get(FEEDBACK)
        limited = c.get(FEEDBACK)
    assert limited.status_code == 429
    with pytest.raises(Exception, match="429"):
        validate(limited, STRICT)
    validate(limited, RELAXED)


def test_relaxation_nullable_created_comment_needs_no_change_in_the_pinned_spec() -> None:
    spec = json.loads(SPEC_PATH.read_text())
    for option in spec["components"]["schemas"]["FeedbackResponse"]["properties"]["feedback"]["items"]["anyOf"]:
        assert option["properties"]["createdAt"]["type"] == ["string", "null"]
        assert option["properties"]["comment"]["type"] == ["string", "null"]
    assert relaxed_spec_dict()["components"]["schemas"]["FeedbackResponse"]["properties"]["feedback"]["items"]["anyOf"][2]["properties"]["lang"]["type"] == ["string", "null"]


def test_requests_the_connector_sends_validate_against_the_strict_spec(client: httpx.Client) -> None:
    response = client.get(FEEDBACK, params={"dateFrom": "2026-01-01", "dateTo": "2026-01-31", "limit": 100})
    STRICT.validate_request(SpecRequest(response.request))
    cursor = response.json()["nextCursor"]
    follow = client.get(FEEDBACK, params={"dateFrom": "2026-01-01", "dateTo": "2026-01-31", "limit": 100, "cursor": cursor or "x"})
    STRICT.validate_request(SpecRequest(follow.request))


# -- rate limit --------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_the_documented_body_and_no_retry_after(sb: SandboxServer, client: httpx.Client) -> None:
    sb.sandbox.state.mintlify_rate_limit = 3
    statuses = [client.get(FEEDBACK, params={"limit": 1}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = client.get(FEEDBACK)
    assert_error(limited, 429, "Rate limit exceeded", "per hour")
    assert "retry-after" not in {k.lower() for k in limited.headers}


def test_rate_limit_is_per_organization_shared_by_its_keys(sb: SandboxServer) -> None:
    sb.sandbox.state.mintlify_rate_limit = 2

    def get(key: str, path: str = FEEDBACK) -> int:
        with httpx.Client(base_url=sb.url) as c:
            return c.get(path, headers={"Authorization": f"Bearer {key}"}).status_code

    assert get(mint.API_KEY) == 200
    assert get(mint.SECOND_KEY) == 200  # same organization: the second request of its budget
    assert get(mint.API_KEY) == 429
    assert get(mint.SECOND_KEY) == 429
    other = f"/api/external/v1/analytics/{mint.OTHER_PROJECT_ID}/feedback"
    assert get(mint.OTHER_ORG_KEY, other) == 200  # another organization has its own budget
    assert get("mint_unknown") == 401  # unauthenticated requests are not counted (and not limited)


def test_rate_limit_window_slides_and_a_reset_or_none_clears_it(sb: SandboxServer, client: httpx.Client) -> None:
    state = sb.sandbox.state
    state.mintlify_rate_limit = 1
    assert client.get(FEEDBACK).status_code == 200
    assert client.get(FEEDBACK).status_code == 429
    state.extra.clear()  # what /_control/reset and /_control/settings do
    assert client.get(FEEDBACK).status_code == 200
    assert client.get(FEEDBACK).status_code == 429
    emulator(sb).rate_window = 0.2
    time.sleep(0.25)
    assert client.get(FEEDBACK).status_code == 200
    state.mintlify_rate_limit = None
    assert all(client.get(FEEDBACK).status_code == 200 for _ in range(5))


def test_control_api_reset_clears_the_limiter(sb: SandboxServer, client: httpx.Client) -> None:
    with httpx.Client(base_url=sb.url) as control:
        control.post("/_control/settings", json={"mintlify_rate_limit": 1})
        assert client.get(FEEDBACK).status_code == 200
        assert client.get(FEEDBACK).status_code == 429
        control.post("/_control/reset", json={})
        assert client.get(FEEDBACK).status_code == 200
        control.post("/_control/settings", json={"mintlify_rate_limit": None})
    assert client.get(FEEDBACK).status_code == 200


# -- faults and the request log ----------------------------------------------------------------


def test_injected_faults_are_served_then_normal_service_resumes(sb: SandboxServer, client: httpx.Client) -> None:
    state = sb.sandbox.state
    state.add_fault("mintlify", Fault("server_error", count=1, status=503))
    state.add_fault("mintlify", Fault("rate_limit", count=1, retry_after="7"))
    state.add_fault("mintlify", Fault("bad_envelope", count=1))
    state.add_fault("mintlify", Fault("html_200", count=1))
    first = client.get(FEEDBACK)
    assert first.status_code == 503 and "text/html" in first.headers["content-type"]
    second = client.get(FEEDBACK)
    assert second.status_code == 429 and second.headers["retry-after"] == "7"
    third = client.get(FEEDBACK)
    assert third.status_code == 200 and "feedback" not in third.json()
    fourth = client.get(FEEDBACK)
    assert "text/html" in fourth.headers["content-type"]
    assert client.get(FEEDBACK).status_code == 200
    state.add_fault("mintlify", Fault("drop", count=1))
    with pytest.raises(httpx.HTTPError):
        client.get(FEEDBACK)
    assert client.get(FEEDBACK).status_code == 200


def test_request_log_records_requests_without_secrets(sb: SandboxServer, client: httpx.Client) -> None:
    client.get(FEEDBACK, params={"limit": 3, "dateFrom": "2026-01-01"})
    with httpx.Client(base_url=sb.url) as c:
        c.get(FEEDBACK, headers={"Authorization": "Bearer mint_wrong"})
        log = c.get("/_control/requests").json()
    entries = [e for e in log if e["provider"] == "mintlify"]
    assert [e["status"] for e in entries] == [200, 401]
    assert entries[0]["path"] == FEEDBACK and ["limit", "3"] in entries[0]["query"]
    text = json.dumps(log)
    assert mint.API_KEY not in text and "mint_wrong" not in text and "authorization" not in text.lower()


def test_6000_records_page_through_in_full_100_record_pages(sb: SandboxServer, client: httpx.Client) -> None:
    # Throughput is measured by `make bench` (sandbox rates), not here.
    state = sb.sandbox.state
    state.per_day = 200  # 6000 records: 60 pages of the maximum size (100)
    sb.sandbox.generate()
    assert len(page_all(client, {"limit": 100})) == 6000
