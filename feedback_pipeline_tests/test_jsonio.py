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
