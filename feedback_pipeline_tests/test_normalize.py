"""The contract's input rules (CONTRACT.md "Input rules"), applied by the shared FeedbackBatch."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import orjson
import pytest

from feedback_pipeline.normalize import FeedbackBatch, clean_text, coerce_id, coerce_rating, parse_timestamp, split

UTC = timezone.utc


def one(provider="mapbox", **fields):
    batch = FeedbackBatch(provider, "acct")
    record = {"raw": True}
    fields.setdefault("feedback_id", "id-1")
    fields.setdefault("collected_at", "2026-01-02T03:04:05Z")
    batch.add(record, **fields)
    rows = batch.rows().to_pylist()
    rejects = batch.rejects().to_pylist()
    return (rows[0] if rows else None), rejects


@pytest.mark.parametrize(("raw", "expected"), [(123, "123"), (12.0, "12"), ("abc", "abc"), (" x ", " x ")])
def test_ids_become_text(raw, expected):
    assert coerce_id(raw) == expected


@pytest.mark.parametrize("raw", [None, "", True, {"a": 1}, 1.5])
def test_missing_empty_or_odd_ids_are_rejected(raw):
    row, rejects = one(feedback_id=raw)
    assert row is None and rejects[0]["reason"] == "missing_id" and rejects[0]["record_key"].startswith("sha256:")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-01T23:30:00-05:00", datetime(2026, 1, 2, 4, 30, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no zone: UTC
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),  # nanoseconds
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
    ],
)
def test_timestamps_with_any_offset_become_utc(raw, expected):
    assert parse_timestamp(raw) == expected


def test_collected_date_is_the_utc_date():
    row, _ = one(collected_at="2026-01-01T23:30:00-05:00")
    assert row["collected_date"] == date(2026, 1, 2)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing_collected_at"),
        ("", "missing_collected_at"),
        ("yesterday", "unparseable_collected_at"),
        (1700000000, "unparseable_collected_at"),
        ("0001-01-01T00:00:00Z", "collected_at_out_of_range"),
        ("9999-12-31T23:59:59Z", "collected_at_out_of_range"),
        ("1969-12-31T23:59:59Z", "collected_at_out_of_range"),
        ("2100-01-01T00:00:00Z", "collected_at_out_of_range"),
    ],
)
def test_unusable_collected_times_are_rejected_with_a_reason(raw, reason):
    row, rejects = one(collected_at=raw)
    assert row is None and rejects == [{**rejects[0], "reason": reason, "feedback_id": "id-1"}]


@pytest.mark.parametrize(("raw", "expected"), [(4, 4.0), ("4.5", 4.5), (" 9 ", 9.0), ("great", None), (True, None), (float("nan"), None), (None, None)])
def test_ratings_are_numbers_or_null(raw, expected):
    assert coerce_rating(raw) == expected


def test_nul_bytes_and_lone_surrogates_become_replacement_characters():
    row, _ = one(body="a\x00b\ud800c", title="\udfff")
    assert row["body"] == "a\ufffdb\ufffdc" and row["title"] == "\ufffd"


def test_nul_in_attributes_becomes_a_replacement_character_not_an_escape():
    row, _ = one(attributes={"k\x00": "a\x00b", "n": ["\x00"], "literal": "a\\u0000b"})
    assert json.loads(row["attributes"]) == {"k\ufffd": "a\ufffdb", "n": ["\ufffd"], "literal": "a\\u0000b"}


def test_text_is_kept_verbatim():
    row, _ = one(body="  padded  ", title="", category="🚀 日本語 עברית")
    assert (row["body"], row["title"], row["category"]) == ("  padded  ", "", "🚀 日本語 עברית")


def test_wrong_types_in_text_columns_are_kept_as_text():
    row, _ = one(body=42, title={"nested": [1]}, user_id=7)
    assert (row["body"], row["title"], row["user_id"]) == ("42", '{"nested":[1]}', "7")


def test_unknown_status_keeps_provider_status_and_gives_null():
    row, _ = one(provider_status="escalated")
    assert (row["status"], row["provider_status"]) == (None, "escalated")
    row, _ = one(provider_status="out_of_scope")
    assert row["status"] == "dismissed"


def test_a_foreign_tenant_reject_keeps_no_payload():
    batch = FeedbackBatch("formbricks", "t1")
    batch.reject({"secret": "content"}, "foreign_tenant", feedback_id="x", keep_payload=False)
    assert batch.rejects().to_pylist()[0]["payload"] is None


def test_clean_text_of_none_is_none():
    assert clean_text(None) is None


# -- the columnar path (FeedbackBatch.extend) --------------------------------------------------

import math  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


OPTIONAL = ("updated_at", "provider_status", "category", "title", "body", "rating", "user_id", "user_email", "page_url")

# Timestamps as APIs send them, and as they should not: offsets of every form, fractions of 0-9
# digits, no zone, lowercase, spaces, dates only, out of range, other types.
_plain_times = st.builds(
    lambda dt, digits, zone: dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}{dt.microsecond % 1000:03d}"[: digits + 1] if digits else "") + zone,
    st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(2100, 1, 2)),
    st.integers(0, 9),
    st.sampled_from(["Z", "z", "+00:00", "+02:00", "-05:30", "+0530", "+14:00", "-12:00", "+05", "+05:30:15", "", " "]),
)
_odd_times = st.one_of(
    st.sampled_from(["", "yesterday", "2026-02-30T00:00:00Z", "2026-01-02", "2026-01-02 03:04:05+01:00", " 2026-01-02T03:04:05Z ", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.9999995Z", "2099-12-31T23:59:59.999999Z", "2100-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00"]),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
)
_times = st.one_of(_plain_times, _plain_times, _odd_times)
_ids = st.one_of(st.text(min_size=0, max_size=6), st.text(min_size=1, max_size=6), st.integers(-5, 10**20), st.floats(allow_nan=True), st.none(), st.booleans(), st.just({"a": 1}))
_texts = st.one_of(st.none(), st.text(max_size=8), st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "é", "文"]), max_size=5), st.integers(), st.floats(allow_nan=True), st.booleans(), st.lists(st.integers(), max_size=2))
_statuses = st.one_of(st.sampled_from(["open", "closed", "in_progress", "done", "pending", "resolved", "dismissed", "weird"]), _texts)
_ratings = st.one_of(st.none(), st.integers(-(10**400), 10**400), st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["7", " 4.5 ", "n/a", "nan", "1e999"]), st.booleans())
_attributes = st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.one_of(st.integers(-(10**30), 10**30), st.text(max_size=4), st.none(), st.lists(st.integers(), max_size=2)), max_size=3))


@st.composite
def _pages(draw):
    """A page of records given column-wise, mostly plain (the columnar path) with odd values mixed in."""
    n = draw(st.integers(0, 12))
    plain = draw(st.booleans())
    col = {
        "feedback_id": [draw(st.text(min_size=1, max_size=4) if plain else _ids) for _ in range(n)],
        "collected_at": [draw(_plain_times if plain else _times) for _ in range(n)],
        "attributes": [draw(_attributes) for _ in range(n)],
    }
    for name in OPTIONAL:
        if draw(st.booleans()):
            strategy = {"updated_at": _times, "rating": _ratings, "provider_status": _statuses}.get(name, _texts)
            col[name] = [draw(strategy) for _ in range(n)]
    return col


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _tables(batch: FeedbackBatch):
    return batch.rows().to_pylist(), sorted(batch.rejects().to_pylist(), key=lambda r: (r["record_key"], r["reason"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.lists(_pages(), min_size=1, max_size=4), provider=st.sampled_from(["mintlify", "usersnap", "formbricks", "mapbox", "feedbackkit"]))
def test_a_page_added_column_wise_gives_the_same_rows_and_rejects_as_record_by_record(pages, provider):
    """The columnar path (plain values in C++) and the per-record rules agree on every value."""
    columnar, one_by_one = FeedbackBatch(provider, "acct"), FeedbackBatch(provider, "acct")
    for page in pages:
        n = len(page["feedback_id"])
        records = [{"n": i} for i in range(n)]
        columnar.extend(records, **page)
        for i, record in enumerate(records):
            one_by_one.add(record, **{name: values[i] for name, values in page.items()})
    rows_a, rejects_a = _tables(columnar)
    rows_b, rejects_b = _tables(one_by_one)
    assert len(rows_a) == len(rows_b) and rejects_a == rejects_b
    for a, b in zip(rows_a, rows_b):
        assert a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a), (a, b)


def test_a_plain_page_never_takes_the_per_record_rules(monkeypatch):
    """Plain pages must really go column-wise (else the equivalence above proves nothing)."""
    batch = FeedbackBatch("mapbox", "acct")
    monkeypatch.setattr(batch, "add", lambda *a, **k: pytest.fail("add() called for a plain page"))
    n = 50
    batch.extend(
        [{}] * n,
        feedback_id=[f"id-{i}" for i in range(n)],
        collected_at=[f"2026-01-02T03:04:{i:02d}.123+02:00" for i in range(n)],
        updated_at=[None, "2026-01-03T00:00:00Z"] * (n // 2),
        provider_status=["open"] * n,
        rating=[4, 4.5] * (n // 2),
        attributes=[{"x": i} for i in range(n)],
    )
    rows = batch.rows().to_pylist()
    assert len(rows) == n and rows[0]["collected_at"] == datetime(2026, 1, 2, 1, 4, 0, 123000, tzinfo=UTC)
    assert rows[1]["updated_at"] == datetime(2026, 1, 3, tzinfo=UTC) and rows[1]["rating"] == 4.5


def test_only_the_records_that_need_rules_leave_the_columnar_path(monkeypatch):
    """One bad record in a page of 1,000 goes through add(); its neighbours do not, and order holds."""
    batch = FeedbackBatch("mapbox", "acct")
    calls = []
    real_add = batch.add
    monkeypatch.setattr(batch, "add", lambda record, **k: calls.append(record) or real_add(record, **k))
    n = 1000
    ids = [f"id-{i}" for i in range(n)]
    times = ["2026-01-02T03:04:05Z"] * n
    times[500] = "not a time"
    batch.extend([{"i": i} for i in range(n)], feedback_id=ids, collected_at=times, attributes=[None] * n)
    assert calls == [{"i": 500}]
    assert batch.rows().column("feedback_id").to_pylist() == ids[:500] + ids[501:]
    assert batch.rejects().column("reason").to_pylist() == ["unparseable_collected_at"]


def test_a_nul_in_a_column_wise_page_is_replaced_and_its_neighbours_are_untouched():
    batch = FeedbackBatch("mapbox", "acct")
    n = 1000
    bodies = [f"文 body {i}" for i in range(n)]
    bodies[700] = "before\x00after"
    batch.extend([{}] * n, feedback_id=[f"id-{i}" for i in range(n)], collected_at=["2026-01-02T03:04:05Z"] * n, body=bodies, attributes=[None] * n)
    got = batch.rows().column("body").to_pylist()
    assert got[700] == "before\ufffdafter" and got[:700] == bodies[:700] and got[701:] == bodies[701:]


def test_attributes_of_several_pages_stay_aligned_with_their_rows():
    batch = FeedbackBatch("mapbox", "acct")
    for page in range(3):
        ids = [f"p{page}-{i}" for i in range(7)]
        attributes = [{"page": page, "i": i, "pad": "x" * i} if i % 3 else None for i in range(7)]
        batch.extend([{}] * 7, feedback_id=ids, collected_at=["2026-01-02T03:04:05Z"] * 7, attributes=attributes)
    rows = batch.rows().to_pylist()
    for row in rows:
        page, i = (int(part) for part in row["feedback_id"][1:].split("-"))
        assert orjson.loads(row["attributes"]) == ({"page": page, "i": i, "pad": "x" * i} if i % 3 else {})


def test_a_column_wise_page_makes_other_types_text_and_maps_statuses_in_rows():
    batch = FeedbackBatch("mapbox", "acct")
    batch.extend(
        [{}] * 4,
        feedback_id=["a", "b", "c", "d"],
        collected_at=["2026-01-02T03:04:05Z"] * 4,
        provider_status=["fixed", "escalated", None, 7],
        body=[42, {"nested": [1]}, True, "text"],
        attributes=[None] * 4,
    )
    rows = batch.rows().to_pylist()
    assert [r["body"] for r in rows] == ["42", '{"nested":[1]}', "true", "text"]
    assert [(r["provider_status"], r["status"]) for r in rows] == [("fixed", "resolved"), ("escalated", None), (None, None), ("7", None)]


def test_split_gives_columns_and_attributes_and_leaves_the_records_whole():
    records = [{"id": "a", "at": "t1", "x": 1, "old": 2}, {"at": "t2", "y": [3]}]
    originals = [dict(r) for r in records]
    columns, attributes = split(records, {"feedback_id": "id", "collected_at": "at", "updated_at": "at"}, drop=("old",))
    assert columns == {"feedback_id": ["a", None], "collected_at": ["t1", "t2"], "updated_at": ["t1", "t2"]}
    assert attributes == [{"x": 1}, {"y": [3]}]
    assert records == originals  # a reject keeps the whole record


