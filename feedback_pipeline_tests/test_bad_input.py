"""The bad input corpus: every malformed page or record real APIs send, one test each.

Each case is injected through the sandbox (``server.sandbox.add(provider, raw_record)``, injected
faults) or, where the sandbox's own JSON encoder cannot produce the bytes (lone surrogates,
records without an id, duplicates, non-objects), by a transport that rewrites the sandbox's real
response. Every case ends one of three ways, and the test says which:

* normalized correctly (the row's columns are checked),
* rejected into ``feedback_rejects`` with its reason,
* or the run fails with a clear message naming provider, endpoint and problem, after retries;

and never loses a good record of the same page nor stops another provider's run.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import httpx
import orjson
import pytest

import feedback_pipeline.sync as sync_module
from feedback_pipeline.assets import build_feedback_assets, metadata_by_provider
from feedback_pipeline.http import ProviderError, ProviderUnavailable
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.partitions import feedback_partitions
from feedback_pipeline.providers import get_spec, provider_from_env
from feedback_pipeline.providers.base import Provider, Window
from feedback_pipeline.providers.mapbox import MapboxProvider
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.settings import PipelineResource
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, make_sandbox, run_sync, work_db

UTC = timezone.utc
PROVIDERS = ("mintlify", "usersnap", "formbricks", "mapbox", "feedbackkit")
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
ABSENT = object()  # a key to leave out of a record


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    server = make_sandbox(PROVIDERS, days=3, per_day=6)
    yield server
    server.stop()


@pytest.fixture
def sb(server: SandboxServer) -> SandboxServer:
    state = server.sandbox.state
    state.clear_faults()
    state.clear_log()
    state.extra.clear()
    state.feedbackkit_snake_case = False
    server.sandbox.generate()
    return server


# One "today" for the module: the cases below are built when it is imported and the windows when
# each test runs, so a suite that crosses midnight UTC in between must not see two days.
TODAY = datetime.now(UTC).date()


def today() -> date:
    return TODAY


def window() -> Window:
    """Today and the two days before: the sandbox's whole dataset."""
    return Window.for_days(today() - timedelta(days=2), today())


def day_at(hour: int = 12, days_ago: int = 1, suffix: str = "Z") -> str:
    d = today() - timedelta(days=days_ago)
    return f"{d.isoformat()}T{hour:02d}:00:00{suffix}"


class Rewrite(httpx.BaseTransport):
    """Forwards to the sandbox and rewrites each response body with ``rewrite(body, n)``."""

    def __init__(self, rewrite: Callable[[bytes, int], bytes]):
        self.inner = httpx.HTTPTransport()
        self.rewrite = rewrite
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        self.calls += 1
        new = self.rewrite(body, self.calls) if response.status_code == 200 else body
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=new, request=request)

    def close(self) -> None:
        self.inner.close()


def rewrite_records(edit: Callable[[list[Any], int], list[Any]]) -> Rewrite:
    """A transport that edits the record list of each page (any provider's envelope)."""

    def rewrite(body: bytes, n: int) -> bytes:
        data = orjson.loads(body)
        if isinstance(data, list):
            return orjson.dumps(edit(data, n))
        for path in (("feedback",), ("data",), ("items",), ("data", "feedbacks")):
            holder = data
            for key in path[:-1]:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(holder, dict) and isinstance(holder.get(path[-1]), list):
                holder[path[-1]] = edit(holder[path[-1]], n)
                return orjson.dumps(data)
        return body

    return Rewrite(rewrite)


def make_provider(server: SandboxServer, name: str, transport: httpx.BaseTransport | None = None, **overrides: str) -> Provider:
    if name == "mapbox":
        return provider_from_env(name, server.env(), policy=FAST_RETRIES, overrides=overrides, inner_transport=transport)
    provider = provider_from_env(name, server.env(), policy=FAST_RETRIES, overrides=overrides)
    if transport is not None:
        original = provider.http_client
        provider.http_client = lambda **kw: original(**{"transport": transport, **kw})  # type: ignore[method-assign]
    return provider


@dataclass
class Outcome:
    rows: dict[str, dict[str, Any]]
    rejects: list[dict[str, Any]]
    error: Exception | None = None
    report: Any = None
    wh: Warehouse | None = None

    def reject(self, reason: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.rejects if reason is None or r["reason"] == reason]


def read(wh: Warehouse, provider: str | None = None) -> Outcome:
    with work_db(wh) as con:
        where = "WHERE provider = ?" if provider else ""
        args = [provider] if provider else []
        cur = con.execute(f"SELECT * FROM feedback {where}", args)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        cur = con.execute(f"SELECT * FROM feedback_rejects {where}", args)
        rnames = [d[0] for d in cur.description]
        rejects = [dict(zip(rnames, r)) for r in cur.fetchall()]
    keyed: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["feedback_id"] not in keyed, f"duplicate key {row['feedback_id']!r}"
        keyed[row["feedback_id"]] = row
    return Outcome(keyed, rejects, wh=wh)


def run(tmp_path: Path, provider: Provider, win: Window | None = None) -> Outcome:
    wh = Warehouse(tmp_path / f"{provider.name}-{uuid.uuid4().hex[:6]}.duckdb")
    try:
        report = run_sync(provider, wh, win or window())
    except ProviderError as exc:
        out = read(wh)
        out.error = exc
        return out
    out = read(wh)
    out.report = report
    return out


def _normalized(server: SandboxServer, name: str) -> FeedbackBatch:
    provider = make_provider(server, name)
    batch = FeedbackBatch(provider.name, provider.account_id)
    records = [{k: v for k, v in r.items() if k != "_at"} for r in server.sandbox.emulators[name].store.records.values()]
    provider.normalize(records, batch)
    return batch


def good_ids(server: SandboxServer, name: str, win: Window | None = None) -> set[str]:
    """Ids the provider's own normalizer keeps from the sandbox's current records in ``win``."""
    win = win or window()
    return {r["feedback_id"] for r in _normalized(server, name).rows().to_pylist() if win.first_day <= r["collected_date"] <= win.last_day}


def generated_reject_keys(server: SandboxServer, name: str) -> set[str]:
    """record_keys of the sandbox's own rejectable records (the generator adds a few)."""
    return {r["record_key"] for r in _normalized(server, name).rejects().to_pylist()}


def kit_record(**fields: Any) -> dict[str, Any]:
    """A FeedbackKit item (documented camelCase) collected yesterday noon, with ``fields`` over it."""
    record: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "title": "Export to CSV",
        "description": "good record",
        "status": "pending",
        "category": "feature_request",
        "userId": "user-00001",
        "voteCount": 3,
        "hasVoted": False,
        "commentCount": 0,
        "createdAt": day_at(12),
        "updatedAt": day_at(13),
    }
    for key, value in fields.items():
        if value is ABSENT:
            record.pop(key, None)
        else:
            record[key] = value
    return record


# -- record-level corpus (FeedbackKit serves every record in one page) ---------------------------


@dataclass
class Case:
    name: str
    fields: dict[str, Any]
    # ("row", {column: value}) | ("reject", reason) | ("absent", None)
    expect: tuple[str, Any]
    rewrite: Callable[[bytes], bytes] | None = None
    row_id: str | None = None  # the feedback_id the row gets (default: the record's id)
    extra: dict[str, Any] = field(default_factory=dict)


def _shift(days_ago: int, hour: int) -> datetime:
    d = today() - timedelta(days=days_ago)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def _surrogate(body: bytes) -> bytes:
    return body.replace(b"@@SURROGATE@@", b"\\ud800").replace(b"@@LOW@@", b"\\udfff")


BIG = "1" + "0" * 400  # a valid JSON number no 64-bit integer or double holds


# An integer longer than Python builds an int from (sys.get_int_max_str_digits(): 4,300).
HUGE = "9" * 5_000


def _bigint(body: bytes) -> bytes:
    return body.replace(b'"@@BIGINT@@"', BIG.encode()).replace(b'"@@HUGEINT@@"', HUGE.encode())


RECORD_CASES: list[Case] = [
    # ids
    Case("id null", {"id": None}, ("reject", "missing_id")),
    Case("id empty string", {"id": ""}, ("reject", "missing_id")),
    Case("id a number", {"id": 4242}, ("row", {}), row_id="4242"),
    Case("id a whole float", {"id": 77.0}, ("row", {}), row_id="77"),
    Case("id a fractional float", {"id": 77.5}, ("reject", "missing_id")),
    Case("id a boolean", {"id": True}, ("reject", "missing_id")),
    Case("id an object", {"id": {"value": 1}}, ("reject", "missing_id")),
    Case("id with a NUL byte", {"id": "nul\x00id"}, ("row", {}), row_id="nul\ufffdid"),
    Case("id an integer beyond 64 bits", {"id": "@@BIGINT@@"}, ("row", {}), row_id=BIG, rewrite=_bigint),
    Case("id 10,000 characters", {"id": "i" * 10_000}, ("row", {}), row_id="i" * 10_000),
    # wrong types where a string belongs
    Case("description a number", {"description": 42}, ("row", {"body": "42"})),
    Case("title a float", {"title": 3.5}, ("row", {"title": "3.5"})),
    Case("email a boolean", {"userEmail": True}, ("row", {"user_email": "true"})),
    Case("category a list", {"category": ["a", "b"]}, ("row", {"category": '["a","b"]'})),
    Case("status a number", {"status": 3}, ("row", {"provider_status": "3", "status": None})),
    Case("status unknown", {"status": "under_review"}, ("row", {"provider_status": "under_review", "status": None})),
    Case("integer beyond 64 bits in an attribute", {"voteCount": "@@BIGINT@@"}, ("row", {"attributes": f"__contains__:{BIG}"}), rewrite=_bigint),
    Case("integer of 5,000 digits in an attribute", {"voteCount": "@@HUGEINT@@"}, ("row", {"attributes": '__contains__:"voteCount":null'}), rewrite=_bigint),
    Case("userId an object", {"userId": {"b": 1, "a": 2}}, ("row", {"user_id": '{"a":2,"b":1}'})),
    # keys in snake_case (the real server's encoding)
    Case(
        "keys in snake_case",
        {"createdAt": ABSENT, "updatedAt": ABSENT, "userEmail": ABSENT, "created_at": day_at(9), "updated_at": day_at(10), "user_email": "a@example.com", "vote_count": 9},
        ("row", {"collected_at": _shift(1, 9), "user_email": "a@example.com"}),
    ),
    # collected times
    Case("offset +02:00 moves to the previous UTC day", {"createdAt": day_at(1, suffix="+02:00")}, ("row", {"collected_at": _shift(2, 23), "collected_date": today() - timedelta(days=2)})),
    Case("offset -05:00 moves to the next UTC day", {"createdAt": day_at(22, suffix="-05:00")}, ("row", {"collected_at": _shift(0, 3), "collected_date": today()})),
    Case("offset without a colon", {"createdAt": day_at(12, suffix="+0100")}, ("row", {"collected_at": _shift(1, 11)})),
    Case("no zone is UTC", {"createdAt": day_at(12, suffix="")}, ("row", {"collected_at": _shift(1, 12)})),
    Case("lowercase t and z (RFC 3339)", {"createdAt": day_at(12).replace("T", "t").replace("Z", "z")}, ("row", {"collected_at": _shift(1, 12)})),
    Case("nanoseconds", {"createdAt": day_at(12).replace("Z", ".123456789Z")}, ("row", {"collected_at": _shift(1, 12) + timedelta(microseconds=123456)})),
    Case("date only", {"createdAt": (today() - timedelta(days=1)).isoformat()}, ("row", {"collected_at": _shift(1, 0)})),
    Case("year 0001", {"createdAt": "0001-01-01T00:00:00Z"}, ("reject", "collected_at_out_of_range")),
    Case("year 0001 with an offset", {"createdAt": "0001-01-01T00:00:00+01:00"}, ("reject", "collected_at_out_of_range")),
    Case("year 9999", {"createdAt": "9999-12-31T23:59:59Z"}, ("reject", "collected_at_out_of_range")),
    Case("year 9999 with a negative offset", {"createdAt": "9999-12-31T23:59:59-01:00"}, ("reject", "collected_at_out_of_range")),
    Case("before 1970", {"createdAt": "1969-12-31T23:59:59Z"}, ("reject", "collected_at_out_of_range")),
    Case("year 2100", {"createdAt": "2100-01-01T00:00:00Z"}, ("reject", "collected_at_out_of_range")),
    Case("unparseable words", {"createdAt": "yesterday"}, ("reject", "unparseable_collected_at")),
    Case("unparseable February 30", {"createdAt": "2026-02-30T00:00:00Z"}, ("reject", "unparseable_collected_at")),
    Case("epoch number", {"createdAt": 1767225600}, ("reject", "unparseable_collected_at")),
    Case("collected time null", {"createdAt": None}, ("reject", "missing_collected_at")),
    Case("collected time missing", {"createdAt": ABSENT}, ("reject", "missing_collected_at")),
    Case("collected time empty", {"createdAt": ""}, ("reject", "missing_collected_at")),
    Case("updated time unparseable keeps the record", {"updatedAt": "soon"}, ("row", {"updated_at": None})),
    Case("collected outside the run's range", {"createdAt": day_at(12, days_ago=20)}, ("absent", None)),
    # text that cannot be stored as is
    Case("NUL bytes in text", {"description": "a\x00b\x00", "title": "\x00"}, ("row", {"body": "a\ufffdb\ufffd", "title": "\ufffd"})),
    Case("lone surrogates in text", {"description": "x@@SURROGATE@@y@@LOW@@"}, ("row", {"body": "x\ufffdy\ufffd"}), rewrite=_surrogate),
    Case("lone surrogate in an attribute key", {"extra@@SURROGATE@@": "v"}, ("row", {"attributes": "__contains__:extra\ufffd"}), rewrite=_surrogate),
    Case("30,000-character body", {"description": "ü" * 30_000}, ("row", {"body": "ü" * 30_000})),
    Case("1 MB body", {"description": ("0123456789abcdeé" * 65_536)[:1_000_000]}, ("row", {"body": ("0123456789abcdeé" * 65_536)[:1_000_000]})),
    Case("text verbatim: spaces, empty, emoji, RTL", {"title": "  ", "description": "", "category": "😕 עברית"}, ("row", {"title": "  ", "body": "", "category": "😕 עברית"})),
]


@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.name for c in RECORD_CASES])
def test_a_bad_record_is_normalized_or_rejected_and_its_page_is_kept(sb: SandboxServer, tmp_path: Path, case: Case) -> None:
    good = good_ids(sb, "feedbackkit")
    generated = generated_reject_keys(sb, "feedbackkit")
    record = sb.sandbox.add("feedbackkit", kit_record(**case.fields))
    transport = Rewrite(lambda body, n: case.rewrite(body)) if case.rewrite else None
    out = run(tmp_path, make_provider(sb, "feedbackkit", transport))
    assert out.error is None, f"the run failed: {out.error}"
    out.rejects = [r for r in out.rejects if r["record_key"] not in generated]
    row_id = case.row_id or (record.get("id") if isinstance(record.get("id"), str) else None)
    kind, detail = case.expect
    if kind == "row":
        assert row_id in out.rows, f"record not stored; rejects: {[r['reason'] for r in out.rejects]}"
        row = out.rows[row_id]
        for column, value in detail.items():
            if isinstance(value, str) and value.startswith("__contains__:"):
                assert value.split(":", 1)[1] in row[column]
            else:
                assert row[column] == value, (column, row[column])
        assert row["collected_date"] == row["collected_at"].astimezone(UTC).date()
        assert not out.reject(), out.rejects
    elif kind == "reject":
        assert len(out.rejects) >= 1
        mine = [r for r in out.rejects if r["reason"] == detail]
        assert mine, f"no {detail} reject; got {[r['reason'] for r in out.rejects]}"
        assert all(r["reason"] for r in out.rejects)
        assert orjson.loads(mine[0]["payload"])["title"] == record["title"]  # the record as received
        assert row_id is None or row_id not in out.rows
    else:
        assert row_id not in out.rows and not out.reject()
    # No good record of the same page is lost.
    assert good <= set(out.rows), sorted(good - set(out.rows))[:3]


def test_the_whole_corpus_in_one_page_keeps_every_good_record(sb: SandboxServer, tmp_path: Path) -> None:
    good = good_ids(sb, "feedbackkit")
    expected_rows, expected_rejects = set(), 0
    for case in RECORD_CASES:
        record = sb.sandbox.add("feedbackkit", kit_record(**case.fields))
        if case.expect[0] == "row":
            expected_rows.add(case.row_id or record["id"])
        elif case.expect[0] == "reject":
            expected_rejects += 1
    out = run(tmp_path, make_provider(sb, "feedbackkit", Rewrite(lambda body, n: _bigint(_surrogate(body)))))
    assert out.error is None
    assert good | expected_rows <= set(out.rows)
    assert len(out.rejects) >= expected_rejects
    assert out.report.counts.rejected >= expected_rejects


# -- page-level corpus: not JSON, HTML with 200, wrong envelope ------------------------------------

PAGE_FAULTS = {
    "not_json": "not JSON",
    "html_200": "HTML instead of JSON",
    "bad_envelope": "expected",
}
ENDPOINTS = {
    "mintlify": "GET get feedback",
    "usersnap": "POST filter feedbacks",
    "formbricks": "GET list feedback-records",
    "mapbox": "GET list feedback",
    "feedbackkit": "GET list feedbacks",
}


@pytest.mark.parametrize("kind", list(PAGE_FAULTS))
@pytest.mark.parametrize("name", PROVIDERS)
def test_a_malformed_page_is_retried_then_fails_with_a_clear_message(sb: SandboxServer, tmp_path: Path, name: str, kind: str) -> None:
    state = sb.sandbox.state
    # A few bad pages: retried away, nothing lost.
    state.add_fault(name, Fault(kind=kind, count=2))
    out = run(tmp_path, make_provider(sb, name))
    assert out.error is None and out.report.retries >= 2
    assert good_ids(sb, name) <= set(out.rows)
    # Bad pages until the attempts run out: a clear failure, nothing half-written.
    state.clear_faults()
    state.clear_log()
    state.add_fault(name, Fault(kind=kind, count=None))
    out = run(tmp_path, make_provider(sb, name))
    assert isinstance(out.error, ProviderUnavailable)
    message = str(out.error)
    assert message.startswith(f"{name}: {ENDPOINTS[name]} failed after {FAST_RETRIES.max_attempts} attempt(s)")
    assert PAGE_FAULTS[kind] in message
    assert len(state.requests_for(name)) == FAST_RETRIES.max_attempts
    assert not out.rows and not out.rejects


def test_a_page_nested_beyond_any_parser_fails_clearly(sb: SandboxServer, tmp_path: Path) -> None:
    """100,000 nested arrays: the parser's recursion limit must become a bad page, not a crash."""
    deep = b"[" * 100_000 + b"]" * 100_000
    out = run(tmp_path, make_provider(sb, "feedbackkit", Rewrite(lambda body, n: deep)))
    assert isinstance(out.error, ProviderUnavailable), repr(out.error)
    assert "not JSON" in str(out.error)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not JSON"),
        (b'[{"id": "x", "createdAt": "2026-01-01T00:00:00Z"', "not JSON"),  # truncated
        (b'["\xff\xfe invalid utf-8"]', "not JSON"),
        (b"null", "expected a JSON array"),
        (b'{"error": true, "reason": "maintenance"}', "expected a JSON array"),
    ],
    ids=["empty body", "truncated", "invalid utf-8", "null", "error object"],
)
def test_other_broken_pages_fail_clearly(sb: SandboxServer, tmp_path: Path, body: bytes, problem: str) -> None:
    out = run(tmp_path, make_provider(sb, "feedbackkit", Rewrite(lambda _, n: body)))
    assert isinstance(out.error, ProviderUnavailable)
    assert problem in str(out.error) and "feedbackkit: GET list feedbacks" in str(out.error)


# -- records the sandbox cannot serve as such: rewritten responses ----------------------------------


def test_records_without_an_id_key_and_non_objects_are_rejected_and_the_page_kept(sb: SandboxServer, tmp_path: Path) -> None:
    good = good_ids(sb, "feedbackkit")
    marked = kit_record(description="@@NO_ID@@")
    sb.sandbox.add("feedbackkit", marked)

    def edit(records: list[Any], n: int) -> list[Any]:
        out = [{k: v for k, v in r.items() if k != "id"} if r.get("description") == "@@NO_ID@@" else r for r in records]
        return out + ["just a string", 42, None, [1, 2]]

    out = run(tmp_path, make_provider(sb, "feedbackkit", rewrite_records(edit)))
    assert out.error is None
    assert len(out.reject("missing_id")) == 1 and out.reject("missing_id")[0]["feedback_id"] is None
    assert out.reject("missing_id")[0]["record_key"].startswith("sha256:")
    assert len(out.reject("record_not_an_object")) == 4
    assert good <= set(out.rows)
    # A rerun over the same bad records replaces their rejects instead of adding more.
    again = run_sync(make_provider(sb, "feedbackkit", rewrite_records(edit)), out.wh, window())
    assert again.counts.rejects_written == 0
    assert len(read(out.wh).rejects) == len(out.rejects)


def test_duplicate_ids_within_one_page_keep_the_latest_update(sb: SandboxServer, tmp_path: Path) -> None:
    good = good_ids(sb, "feedbackkit")
    newer = kit_record(description="newer", updatedAt=day_at(15))
    sb.sandbox.add("feedbackkit", newer)
    older = dict(newer, description="older", updatedAt=day_at(14))
    same_time = kit_record(description="first", updatedAt=ABSENT)
    sb.sandbox.add("feedbackkit", same_time)

    def edit(records: list[Any], n: int) -> list[Any]:
        # older copy after the newer one; for the record without updatedAt the last copy wins
        return records + [older, dict(same_time, description="last")]

    out = run(tmp_path, make_provider(sb, "feedbackkit", rewrite_records(edit)))
    assert out.error is None
    assert out.rows[newer["id"]]["body"] == "newer"
    assert out.rows[same_time["id"]]["body"] == "last"
    assert good <= set(out.rows)


@pytest.mark.parametrize(
    ("commit_rows", "build_rows"),
    [(1, 2_500), (20_000, 2_500), (20_000, 3)],
    ids=["a commit per page", "one batch", "one batch built into Arrow every 3 rows"],
)
def test_duplicate_ids_across_pages_keep_one_row(
    sb: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commit_rows: int, build_rows: int
) -> None:
    """Mintlify (no update time: the last received wins) and Usersnap (the latest updated_at
    wins), with pages of 5 records so the window spans several pages (and, built every 3 rows,
    a record and its later copy in different Arrow parts of one commit)."""
    monkeypatch.setattr(sync_module, "COMMIT_ROWS", commit_rows)
    monkeypatch.setattr(sync_module, "BUILD_ROWS", build_rows)
    import feedback_pipeline.providers.mintlify as mintlify_module
    import feedback_pipeline.providers.usersnap as usersnap_module

    monkeypatch.setattr(mintlify_module, "PAGE_SIZE", 5)
    monkeypatch.setattr(usersnap_module, "PAGE_SIZE", 5)
    seen: dict[str, Any] = {}

    def mintlify_edit(records: list[Any], n: int) -> list[Any]:
        if n == 1:
            seen["m"] = copy.deepcopy(records[0])
            return records
        if n == 2:
            return records + [dict(seen["m"], comment="received later")]
        return records

    out = run(tmp_path, make_provider(sb, "mintlify", rewrite_records(mintlify_edit)))
    assert out.error is None and out.report.pages >= 3
    assert out.rows[seen["m"]["id"]]["body"] == "received later"
    assert good_ids(sb, "mintlify") <= set(out.rows)

    def usersnap_edit(records: list[Any], n: int) -> list[Any]:
        if n == 1:
            seen["u"] = copy.deepcopy(records[0])
            return records
        if n == 2:
            # An older version of page 1's record shows up again on page 2.
            return records + [dict(seen["u"], updated_at="2001-01-01T00:00:00.000000Z", email="stale@example.com")]
        return records

    out = run(tmp_path, make_provider(sb, "usersnap", rewrite_records(usersnap_edit)))
    assert out.error is None and out.report.pages >= 3
    assert out.rows[seen["u"]["feedback_id"]]["user_email"] == seen["u"]["email"]
    assert good_ids(sb, "usersnap") <= set(out.rows)


# -- provider-specific bad records through the sandbox -------------------------------------------


def test_a_foreign_tenants_record_is_rejected_without_its_content(sb: SandboxServer, tmp_path: Path) -> None:
    store = sb.sandbox.emulators["formbricks"].store
    template = next(r for r in store.records.values() if r["tenant_id"] == "tenant-sandbox")
    foreign = dict(template, id="019a0000-0000-7000-8000-00000000f0e1", tenant_id="tenant-other", value_text="FOREIGN-CONTENT-7d1c", collected_at=day_at(8), field_type="text")
    foreign.pop("value_number", None)
    sb.sandbox.add("formbricks", foreign)
    good = good_ids(sb, "formbricks")
    out = run(tmp_path, make_provider(sb, "formbricks"))
    assert out.error is None
    rejects = [r for r in out.reject("foreign_tenant") if r["feedback_id"] == foreign["id"]]
    assert len(rejects) == 1 and rejects[0]["payload"] is None
    assert foreign["id"] not in out.rows
    assert good <= set(out.rows)
    for path in out.wh.path.parent.iterdir():  # working database, its WAL, snapshot files
        if path.is_file() and not path.is_symlink():
            assert b"FOREIGN-CONTENT-7d1c" not in path.read_bytes()


def test_formbricks_ratings_of_every_type(sb: SandboxServer, tmp_path: Path) -> None:
    store = sb.sandbox.emulators["formbricks"].store
    template = next(r for r in store.records.values() if r["tenant_id"] == "tenant-sandbox")
    values = {"string": ("4.5", 4.5), "integer": (7, 7.0), "beyond a double": ("@@BIGINT@@", None), "text": ("N/A", None), "empty": ("", None), "boolean": (True, None), "nan": ("NaN", None), "huge": ("1e400", None), "object": ({"v": 1}, None)}
    ids = {}
    for i, (label, (raw, _)) in enumerate(values.items()):
        rid = f"019a0000-0000-7000-8000-0000000000{i:02d}"
        ids[label] = rid
        sb.sandbox.add("formbricks", dict(template, id=rid, collected_at=day_at(9), value_number=raw, field_type="rating"))
    out = run(tmp_path, make_provider(sb, "formbricks", Rewrite(lambda body, n: _bigint(body))))
    assert out.error is None
    for label, (_, expected) in values.items():
        assert out.rows[ids[label]]["rating"] == expected, label


def test_a_usersnap_legacy_epoch_created_at_is_rejected_and_string_ratings_kept(sb: SandboxServer, tmp_path: Path) -> None:
    store = sb.sandbox.emulators["usersnap"].store
    template = copy.deepcopy(next(iter(store.records.values())))
    legacy = dict(template, feedback_id=str(uuid.uuid4()), created_at=_shift(1, 10).timestamp())
    rated = dict(template, feedback_id=str(uuid.uuid4()), created_at=day_at(10).replace("Z", ".000000Z"),
                 ordered_inputs=[{"order": 1, "label": "Comment", "text_value": None, "value": "only in value"}, {"order": 0, "label": "NPS score", "value": "9"}])
    unrated = dict(template, feedback_id=str(uuid.uuid4()), created_at=day_at(11).replace("Z", ".000000Z"),
                   ordered_inputs=[{"order": 0, "label": "Rating", "value": "N/A"}])
    for record in (legacy, rated, unrated):
        sb.sandbox.add("usersnap", record)
    out = run(tmp_path, make_provider(sb, "usersnap"))
    assert out.error is None
    assert legacy["feedback_id"] in [r["feedback_id"] for r in out.reject("unparseable_collected_at")]
    assert out.rows[rated["feedback_id"]]["rating"] == 9.0 and out.rows[rated["feedback_id"]]["body"] == "only in value"
    assert out.rows[unrated["feedback_id"]]["rating"] is None
    assert good_ids(sb, "usersnap") <= set(out.rows)


def test_mapbox_and_mintlify_records_without_a_collected_time_are_rejected(sb: SandboxServer, tmp_path: Path) -> None:
    box = sb.sandbox.emulators["mapbox"].store
    template = copy.deepcopy(next(r for r in box.records.values() if r.get("created_at") and r["id"]))
    timeless = dict(template, id=str(uuid.uuid4()), created_at=None, received_at=day_at(10).replace("Z", ".000Z"), updated_at=day_at(10).replace("Z", ".000Z"))
    sb.sandbox.add("mapbox", timeless)
    out = run(tmp_path, make_provider(sb, "mapbox"))
    assert out.error is None
    assert timeless["id"] in {r["feedback_id"] for r in out.reject("missing_collected_at")}
    assert good_ids(sb, "mapbox") <= set(out.rows)

    legacy = {"id": "65f1c0ffee5a9d0b1c2dffff", "createdAt": None, "_at": int(_shift(1, 10).timestamp() * 1_000_000), "comment": "legacy", "source": "agent", "path": "/", "status": "pending"}
    sb.sandbox.add("mintlify", legacy)
    out = run(tmp_path, make_provider(sb, "mintlify"))
    assert out.error is None
    assert legacy["id"] in {r["feedback_id"] for r in out.reject("missing_collected_at")}
    assert good_ids(sb, "mintlify") <= set(out.rows)


# -- one provider's bad input never stops another's run -----------------------------------------------


def test_a_failing_provider_does_not_stop_the_other_in_one_dagster_run(sb: SandboxServer, tmp_path: Path) -> None:
    db = tmp_path / "feedback.duckdb"
    partitions = feedback_partitions(today() - timedelta(days=30))
    assets = [build_feedback_assets(partitions)]
    env = sb.env()
    resources = {
        name: get_spec(name).resource_from_env(env, plain=True) if name in ("formbricks", "feedbackkit") else get_spec(name).resource()
        for name in PROVIDERS
    }
    resources["pipeline"] = PipelineResource(db_path=str(db), http_base_delay_seconds=0.01, retry_after_floor_seconds=0.01, http_max_attempts=3)
    # FeedbackKit serves part of the bad corpus; the Hub answers every page with a wrong envelope.
    for case in [c for c in RECORD_CASES if c.rewrite is None]:
        sb.sandbox.add("feedbackkit", kit_record(**case.fields))
    good = good_ids(sb, "feedbackkit")
    sb.sandbox.state.add_fault("formbricks", Fault(kind="bad_envelope", count=None))
    result = dg.materialize(
        assets,
        selection=["formbricks_feedback", "feedbackkit_feedback"],
        resources=resources,
        tags={RANGE_START: window().first_day.isoformat(), RANGE_END: window().last_day.isoformat()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failures = result.get_step_failure_events()
    assert [e.step_key for e in failures] == ["feedback_sync"]  # one step; its Failure names only the Hub
    assert failures[0].event_specific_data.user_failure_data.metadata["failed_providers"].value == "formbricks"
    message = failures[0].event_specific_data.error.to_string()
    assert "formbricks: GET list feedback-records failed after 3 attempt(s)" in message and "expected an object with a 'data' array" in message
    assert set(metadata_by_provider(result)) == {"feedbackkit"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = {r[0] for r in con.execute("SELECT feedback_id FROM feedback WHERE provider = 'feedbackkit'").fetchall()}
        hub_rows = con.execute("SELECT count(*) FROM feedback WHERE provider = 'formbricks'").fetchone()[0]
        rejects = con.execute("SELECT count(*) FROM feedback_rejects WHERE provider = 'feedbackkit'").fetchone()[0]
    finally:
        con.close()
    assert good <= stored and hub_rows == 0 and rejects >= 10
