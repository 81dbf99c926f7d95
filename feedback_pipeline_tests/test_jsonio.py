"""JSON in and out: deterministic serialization, tolerant parsing, the paused collector."""

from __future__ import annotations

import gc

import orjson
import pytest

from feedback_pipeline.jsonio import dumps_json, gc_paused, loads_json


def test_attributes_are_deterministic_json():
    a = dumps_json({"b": 1, "a": {"y": 2, "x": "\ud800"}})
    assert a == dumps_json({"a": {"x": "\ud800", "y": 2}, "b": 1})
    assert orjson.loads(a) == {"a": {"x": "\ufffd", "y": 2}, "b": 1}


def test_a_page_with_a_lone_surrogate_still_parses():
    assert loads_json(b'{"items": ["\\ud800"]}') == {"items": ["\ud800"]}


def test_gc_paused_nests_and_restores_the_collector():
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # an application that turned it off keeps it off
    finally:
        gc.enable()


def test_integers_beyond_64_bits_and_lone_surrogates_serialize_like_orjson_would():
    assert dumps_json({"n": 2**70, "s": "a\ud800"}) == '{"n":1180591620717411303424,"s":"a\ufffd"}'


def test_json_nested_deeper_than_any_parser_is_a_value_error():
    with pytest.raises(ValueError):
        loads_json(b"[" * 100_000 + b"]" * 100_000)


def test_integers_beyond_64_bits_are_read_exactly_so_distinct_ids_stay_distinct():
    # orjson reads them as the nearest float: both ids below would become 1.8446744073709552e+19.
    page = b'{"items": [{"id": 18446744073709551617}, {"id": 18446744073709551618}], "n": [-9223372036854775809, 123456789012345678901234567890]}'
    body = loads_json(page)
    assert [item["id"] for item in body["items"]] == [18446744073709551617, 18446744073709551618]
    assert body["n"] == [-9223372036854775809, 123456789012345678901234567890]
    assert loads_json(page.decode()) == body


def test_a_nul_inside_attributes_becomes_u_fffd_like_in_every_text_column():
    text = dumps_json({"code": "a\x00b", "nested": ["\x00"], "literal": "a\\u0000b"})
    assert "\\u0000" not in text.replace("\\\\u0000", "")
    assert orjson.loads(text) == {"code": "a\ufffdb", "nested": ["\ufffd"], "literal": "a\\u0000b"}


def test_an_integer_longer_than_python_builds_reads_as_infinity_instead_of_failing_the_page():
    huge = "9" * 5_000  # beyond sys.get_int_max_str_digits() (4,300): int() refuses it
    page = f'{{"items": [{{"id": 1, "n": {huge}, "m": -{huge}, "small": 7}}]}}'
    for body in (page.encode(), page):
        item = loads_json(body)["items"][0]
        assert item == {"id": 1, "n": float("inf"), "m": float("-inf"), "small": 7}
        assert type(item["small"]) is int
    assert dumps_json(item) == '{"id":1,"m":null,"n":null,"small":7}'  # stored like NaN
