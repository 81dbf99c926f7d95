"""JSON in and out: parsing response bodies, deterministic serialization, and pausing the GC.

Shared by the HTTP layer (parsing pages) and normalization (``attributes``, reject payloads),
so each rule about odd JSON (lone surrogates, integers beyond 64 bits, nesting too deep) is
written once.
"""

from __future__ import annotations

import gc
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import msgspec
import orjson

# NUL and lone surrogates cannot be stored faithfully (DuckDB strings are UTF-8 without NUL);
# the contract says they become U+FFFD and the record is kept.
BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
# Sorted keys, so an unchanged record serializes to the same bytes; non-string keys allowed.
SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_decode = msgspec.json.decode


def dumps_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys), so unchanged records compare equal byte for byte.
    NUL and lone surrogates become U+FFFD, as in every text column (the contract's rule)."""
    try:
        text = orjson.dumps(value, option=SORTED).decode()
        # orjson writes NUL as the escape \u0000, which JSON readers turn back into NUL.
        return text if "\\u0000" not in text else orjson.dumps(_scrub(value), option=SORTED).decode()
    except TypeError:
        # orjson refuses lone surrogates; clean them out and try again.
        scrubbed = _scrub(value)
        try:
            return orjson.dumps(scrubbed, option=SORTED).decode()
        except TypeError:
            # ... and integers beyond 64 bits (valid JSON): the stdlib writes those, same layout.
            return json.dumps(scrubbed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return BAD_CHARS.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {(_scrub(k) if isinstance(k, str) else k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while parsing or normalizing a page.

    Both allocate tens of thousands of dicts, lists and strings, which trigger collections that
    walk every page still held (measured: up to a third of normalization time). JSON data holds
    no reference cycles, so nothing is lost by collecting after the page. Nesting and threads
    (the fetch thread parses while the main thread normalizes) are counted; a collector the
    application had turned off stays off.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _parse_int(text: str) -> int | float:
    """A JSON integer for the stdlib parser. Python refuses to build an int from more than
    ``sys.get_int_max_str_digits()`` digits (4,300 by default, a guard against quadratic
    conversion), and msgspec refuses those too; such a number is read as a float instead (an
    infinity: stored as null, like ``NaN``), so one absurd value never fails its page (the
    contract: a bad record never stops a run)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def loads_json(content: bytes | str) -> Any:
    """Parse a response body. Fast path msgspec: as fast as orjson here, and it reads integers
    beyond 64 bits exactly, where orjson returns the nearest float (two ids 18446744073709551617
    and ...618 would both become 1.8446744073709552e+19: distinct records merged). The stdlib
    parser accepts lone surrogates (``"\\ud800"``) and ``NaN`` that msgspec refuses, so one bad
    character never loses a whole page; an integer too long for Python is read as infinity
    (``_parse_int``)."""
    try:
        with gc_paused():
            return _decode(content)
    except (msgspec.DecodeError, RecursionError):
        try:
            return json.loads(content, parse_int=_parse_int)
        except RecursionError:
            # Nested deeper than any parser goes (msgspec and the stdlib stop): a bad page, not
            # a crash of the run.
            raise ValueError("JSON nested too deeply") from None
