"""The contract's input rules (CONTRACT.md "Input rules"), applied by the shared FeedbackBatch."""

from __future__ import annotations

from datetime import date, datetime, timezone

import orjson
import pytest

from feedback_pipeline.normalize import FeedbackBatch, clean_text, coerce_id, coerce_rating, dumps_json, loads_json, parse_timestamp

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


def test_attributes_are_deterministic_json():
    a = dumps_json({"b": 1, "a": {"y": 2, "x": "\ud800"}})
    assert a == dumps_json({"a": {"x": "\ud800", "y": 2}, "b": 1})
    assert orjson.loads(a) == {"a": {"x": "\ufffd", "y": 2}, "b": 1}


def test_a_page_with_a_lone_surrogate_still_parses():
    assert loads_json(b'{"items": ["\\ud800"]}') == {"items": ["\ud800"]}


def test_a_foreign_tenant_reject_keeps_no_payload():
    batch = FeedbackBatch("formbricks", "t1")
    batch.reject({"secret": "content"}, "foreign_tenant", feedback_id="x", keep_payload=False)
    assert batch.rejects().to_pylist()[0]["payload"] is None


def test_clean_text_of_none_is_none():
    assert clean_text(None) is None
