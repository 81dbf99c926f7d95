"""Reading one JSON array from a byte stream: same items as the pages' parser, bounded buffers,
unwanted items skipped unbuilt, broken bodies refused."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedback_pipeline import arraystream
from feedback_pipeline.arraystream import MISSING, ArrayError, ArrayReader
from feedback_pipeline.jsonio import loads_json


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or [b""]


def read_all(body: bytes, chunk: int = 7, **options: Any) -> tuple[list[Any], ArrayReader]:
    reader = ArrayReader(**{"piece_bytes": 64, **options})
    items = [item for piece in reader.pieces(chunked(body, chunk)) for item in piece]
    return items, reader


# Values whose text is full of what a cut could be fooled by: braces, brackets, commas, quotes
# and backslashes inside strings, nested objects in arrays, unicode.
tricky_text = st.lists(st.sampled_from([*'}{],[":\\ aé😀\n', "},", '"}', "\\}", '\\"}, {']), max_size=8).map("".join)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False), tricky_text)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(tricky_text, inner, max_size=4)), max_leaves=12)
items_strategy = st.lists(st.one_of(st.dictionaries(tricky_text, values, max_size=5), values), max_size=25)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=items_strategy, chunk=st.integers(1, 97), piece=st.integers(1, 300), spaced=st.booleans())
def test_the_items_are_those_the_pages_parser_reads_however_the_body_is_cut(items: list[Any], chunk: int, piece: int, spaced: bool) -> None:
    body = json.dumps(items, indent=1 if spaced else None, ensure_ascii=False).encode()
    reader = ArrayReader(piece_bytes=piece)
    got = [item for part in reader.pieces(chunked(body, chunk)) for item in part]
    assert got == loads_json(body)
    assert reader.seen == reader.kept == len(items)


def test_items_come_in_pieces_before_the_body_ends() -> None:
    records = [{"id": str(i), "text": "x" * 100} for i in range(2_000)]
    body = orjson.dumps(records)
    consumed = 0

    def chunks():
        nonlocal consumed
        for part in chunked(body, 4_096):
            consumed += len(part)
            yield part

    reader = ArrayReader(piece_bytes=16_384)
    first = next(reader.pieces(chunks()))
    assert first and first == records[: len(first)]
    assert consumed <= 16_384 + 4_096 < len(body), "the first piece was cut as soon as its bytes were there"


def test_batches_have_the_asked_size_and_keep_the_order() -> None:
    records = [{"id": i} for i in range(1_003)]
    batches = list(ArrayReader(piece_bytes=100).batches(chunked(orjson.dumps(records), 50), 250))
    assert [len(b) for b in batches] == [250, 250, 250, 250, 3]
    assert [r for b in batches for r in b] == records


def test_keep_sees_only_the_peeked_keys_and_skipped_items_are_never_built(monkeypatch) -> None:
    records = [{"id": i, "day": i % 7, "nested": {"day": 99}} for i in range(500)]
    records += [{"id": "no day"}, {"id": "null day", "day": None}, 17, "text", [1], None]
    body = orjson.dumps(records)
    built: list[bytes] = []
    real = arraystream.loads_json
    monkeypatch.setattr(arraystream, "loads_json", lambda text: built.append(bytes(text)) or real(text))
    seen: list[tuple[Any, Any]] = []

    def keep(probe: Any) -> bool:
        seen.append((probe.day, probe.missing))
        return probe.day == 3 or probe.day is MISSING or probe.day is None

    items, reader = read_all(body, chunk=333, peek=("day", "missing"), keep=keep, piece_bytes=2_000)
    expected = [r for r in records if not isinstance(r, dict) or r.get("day", 3) in (3, None)]
    assert items == expected
    assert reader.seen == len(records) and reader.kept == len(expected)
    assert all(missing is MISSING for _, missing in seen) and len(seen) == 502, "keep is asked about objects only"
    assert sum(text.count(b'"id"') for text in built) == sum(isinstance(r, dict) for r in expected), "only kept items were parsed"


def test_text_only_the_pages_parser_reads_is_read_the_same() -> None:
    # orjson and msgspec refuse lone surrogates and NaN; loads_json's fallback reads them.
    body = b'[{"a": "x\\ud800y", "day": 1}, {"b": NaN, "day": 2}, {"c": 1e400, "day": 3}]'
    items, _ = read_all(body, chunk=5)
    assert items[0] == {"a": "x\ud800y", "day": 1} and items[1]["day"] == 2 and items[2]["c"] == float("inf")
    kept, _ = read_all(body, peek=("day",), keep=lambda p: p.day != 2)
    assert [i["day"] for i in kept] == [1, 3]


@pytest.mark.parametrize(
    ("body", "items"),
    [
        (b"[]", []),
        (b" \n[ ]\n ", []),
        (b"\xef\xbb\xbf[1]", [1]),
        (b'[{"a": 1} , 2 ,{"b":"}"}]', [{"a": 1}, 2, {"b": "}"}]),
    ],
)
def test_edge_shapes_of_a_valid_array(body: bytes, items: list[Any]) -> None:
    for chunk in (1, 2, 100):
        assert read_all(body, chunk=chunk)[0] == items


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not JSON"),
        (b"   ", "not JSON"),
        (b"{not json", "not JSON"),
        (b"null", "expected a JSON array, got NoneType"),
        (b'{"error": true, "reason": "maintenance"}', "expected a JSON array, got dict"),
        (b'[{"id": "x"}', "not JSON"),
        (b'[{"id": "x"},', "not JSON"),
        (b'[{"id": "x"},]', "not JSON"),
        (b'[{"id": "x"}] trailing', "not JSON"),
        (b'[{"id": "x"} {"id": "y"}]', "not JSON"),
        (b'[{"id": "x"},,{"id": "y"}]', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'[{"a": "\xff"}]', "not JSON"),
    ],
)
def test_a_body_that_is_not_a_json_array_is_refused(body: bytes, problem: str) -> None:
    for chunk in (3, 1 << 20):
        with pytest.raises(ArrayError, match=problem):
            read_all(body, chunk=chunk)


def test_an_item_larger_than_the_limit_is_refused_before_the_buffer_grows_further() -> None:
    body = b'[{"a": "' + b"x" * 10_000 + b'"}, {"b": 1}]'
    consumed = 0

    def chunks():
        nonlocal consumed
        for part in chunked(body, 100):
            consumed += len(part)
            yield part

    with pytest.raises(ArrayError, match="larger than"):
        list(ArrayReader(piece_bytes=100, max_item_bytes=2_000).pieces(chunks()))
    assert consumed < 2_500
