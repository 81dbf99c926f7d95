"""Read one JSON array from a byte stream in bounded pieces, skipping unwanted items unbuilt.

Why it exists: FeedbackKit answers every request with the whole project as one JSON array (no
paging, no filter). Parsing that body whole holds every record at once (about 1.2 GB of Python
objects at 200,000 records), and an hourly run wants only the few records of its window. So the
array is cut into pieces of about a megabyte as it arrives, and each piece is read twice in C by
msgspec: once into the raw bytes of its items (``msgspec.Raw``: framing and syntax check, no
object built) and once into a small struct holding only the ``peek`` keys. ``keep`` decides from
those keys; only kept items become Python objects (through :func:`normalize.loads_json`, the same
parser and rules as every other page).

How a piece is cut: the buffer is scanned from its end for a ``}`` and the bytes up to it are
decoded as ``[`` + bytes + ``]``. A JSON value that starts at an item boundary ends at exactly one
place, so that decode succeeds only when the ``}`` closes the last complete item (a ``}`` inside a
string or a nested object leaves the text unbalanced or a string open). A failed guess is tried
again further left, a few times, then after more bytes arrived. Items that are not objects are
framed with the objects around them; an array without objects is framed at its end.

msgspec refuses a few bodies the pages' parser accepts (lone surrogates in strings, ``NaN``): a
piece msgspec refuses is parsed with :func:`normalize.loads_json` instead, and its items are then
built (rare, slower, same result). Items that are skipped are only framed: a skipped item's
invalid UTF-8 passes unnoticed, while a kept one fails the body as the pages' parser does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from .jsonio import loads_json

# A peeked key absent from an item (``None`` is a JSON null).
MISSING: Any = msgspec.UNSET

# Bytes gathered before a piece is cut: large enough that per-piece costs vanish, small enough
# that the buffer and one piece's raw items are a few MB.
PIECE_BYTES = 1 << 20
# Give up on a body in which no item ends within this many bytes: one item that large is not a
# feedback record, and the buffer must stay bounded.
MAX_ITEM_BYTES = 32 << 20
# Wrong guesses of an item end tried per cut before waiting for more bytes.
CUT_ATTEMPTS = 8
_WHITESPACE = b" \t\r\n"

_COMMA, _CLOSE = ord(","), ord("]")
# Reader states: the pending bytes start at an item, or at the separator after one; the array
# ended.
_ITEM, _SEPARATOR, _CLOSED = 0, 1, 2

_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


class ArrayError(ValueError):
    """The body is not a readable JSON array (the message says how)."""


class ArrayReader:
    """Turns the chunks of one response body into lists of kept items.

    ``peek`` names top-level keys of object items; ``keep(probe)`` gets a struct whose
    attributes are those keys (:data:`MISSING` when absent) and says whether the item is wanted.
    Items that are not objects are always kept (so they reach the normalizer's rejects).
    ``seen`` and ``kept`` count the items read so far.
    """

    def __init__(
        self,
        *,
        peek: Sequence[str] = (),
        keep: Callable[[Any], bool] | None = None,
        piece_bytes: int | None = None,
        max_item_bytes: int | None = None,
    ):
        if keep is not None and not peek:
            raise ValueError("keep needs the keys it looks at (peek)")
        self.keep = keep
        self.peek = tuple(peek)
        self.piece_bytes = piece_bytes or PIECE_BYTES
        self.max_item_bytes = max_item_bytes or MAX_ITEM_BYTES
        self.seen = 0
        self.kept = 0
        if keep is not None:
            self._probe = msgspec.defstruct("Probe", [(k, Any, MISSING) for k in self.peek], gc=False)
            self._probes = msgspec.json.Decoder(list[self._probe])
            self._probe_one = msgspec.json.Decoder(self._probe)

    def batches(self, chunks: Iterable[bytes], size: int) -> Iterator[list[Any]]:
        """The kept items in lists of ``size`` (the last one shorter); raises :class:`ArrayError`."""
        pending: list[Any] = []
        for items in self.pieces(chunks):
            pending.extend(items)
            while len(pending) >= size:
                yield pending[:size]
                del pending[:size]
        if pending:
            yield pending

    def pieces(self, chunks: Iterable[bytes]) -> Iterator[list[Any]]:
        """The kept items of each cut piece, in array order."""
        stream = iter(chunks)
        buf = bytearray()
        start = 0
        for chunk in stream:
            buf += chunk
            if buf.startswith(b"\xef\xbb\xbf"[: len(buf)]):  # a UTF-8 byte order mark, or part of one
                if len(buf) < 3:
                    continue
                start = 3
            start = _skip_space(buf, start)
            if start < len(buf):
                break
        if start >= len(buf):
            raise ArrayError("not JSON (empty body)")
        if buf[start : start + 1] != b"[":
            raise ArrayError(_not_an_array(buf, stream, self.max_item_bytes))

        # The bytes after the last cut, as received (joined once per cut: appending to one
        # buffer that is also cut at its front copies it again and again).
        first = bytes(buf[start + 1 :])
        pending, size = ([first], len(first)) if first else ([], 0)
        del buf
        state = _ITEM  # what the pending bytes start with: an item, or the separator after one
        after_comma = False
        next_cut = self.piece_bytes
        for chunk in stream:
            if state == _CLOSED:
                if chunk.strip(_WHITESPACE):
                    raise ArrayError("not JSON (data after the array)")
                continue
            if state == _SEPARATOR:
                chunk, state = _separator(chunk)
                if state != _ITEM:
                    continue
                after_comma = True
            pending.append(chunk)
            size += len(chunk)
            if size < next_cut:
                continue
            data = b"".join(pending)
            cut = self._cut(data)
            if cut is None:
                if size > self.max_item_bytes:
                    raise ArrayError(f"not JSON, or an item larger than {self.max_item_bytes >> 20} MB")
                pending, next_cut = [data], size + self.piece_bytes
                continue
            piece, items = cut
            rest, state = _separator(data[len(piece) - 2 :])
            after_comma = state == _ITEM
            pending, size, next_cut = [rest], len(rest), self.piece_bytes
            del data
            yield self._select(piece, items)
        if state == _CLOSED:
            return
        data = b"".join(pending)
        if state == _SEPARATOR or not data.strip(_WHITESPACE):
            raise ArrayError("not JSON (the array is cut short)")
        # The last piece: everything left, which must end the array.
        tail = b"[" + data
        del data, pending
        items = _frame(tail)
        if items is None or (after_comma and not items):
            raise ArrayError("not JSON (the array is cut short or malformed)")
        yield self._select(tail, items)

    # -- internals ---------------------------------------------------------------------------

    def _cut(self, data: bytes) -> tuple[bytes, list[Any]] | None:
        """The longest prefix of ``data`` that is whole items, as ``[`` + items + ``]``, and its
        items (raw or parsed), or None when no guess of an item end held."""
        end = len(data)
        view = memoryview(data)
        for _ in range(CUT_ATTEMPTS):
            close = data.rfind(b"}", 0, end)
            if close < 0:
                return None
            piece = b"".join((b"[", view[: close + 1], b"]"))
            items = _frame(piece)
            if items is not None:
                return piece, items
            end = close
        return None

    def _select(self, piece: bytes, items: list[Any]) -> list[Any]:
        """Apply ``keep`` to the framed ``items`` of ``piece`` and build the kept ones."""
        count = len(items)
        self.seen += count
        if not count:
            return []
        raw = type(items[0]) is msgspec.Raw
        if self.keep is None:
            kept_all = True
            chosen: list[int] = []
        else:
            probes = self._probe_all(piece, items) if raw else [self._probe_parsed(i) for i in items]
            keep = self.keep
            chosen = [i for i, probe in enumerate(probes) if probe is None or keep(probe)]
            kept_all = len(chosen) == count
        if not raw:
            out = items if kept_all else [items[i] for i in chosen]
        elif kept_all:
            out = _parse(piece)
        elif chosen:
            out = _parse(b"[" + b",".join(items[i] for i in chosen) + b"]")
        else:
            out = []
        self.kept += len(out)
        return out

    def _probe_all(self, piece: bytes, raws: list[msgspec.Raw]) -> list[Any]:
        """One probe per raw item; None for an item that is not an object."""
        try:
            return self._probes.decode(piece)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            probes: list[Any] = []
            for raw in raws:
                try:
                    probes.append(self._probe_one.decode(raw))
                except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                    probes.append(None)
            return probes

    def _probe_parsed(self, item: Any) -> Any:
        if not isinstance(item, dict):
            return None
        return self._probe(*[item.get(k, MISSING) for k in self.peek])


def _frame(piece: bytes) -> list[Any] | None:
    """The items of the JSON array ``piece``: raw when msgspec reads it, parsed when only the
    pages' parser does (lone surrogates, NaN), None when it is not a JSON array."""
    try:
        return _RAW_ITEMS.decode(piece)
    except (msgspec.DecodeError, RecursionError):  # msgspec too stops at a nesting depth
        pass
    try:
        items = loads_json(piece)
    except ValueError:
        return None
    return items if isinstance(items, list) else None


def _parse(text: bytes) -> list[Any]:
    try:
        return loads_json(text)
    except ValueError:
        raise ArrayError("not JSON") from None


def _separator(data: bytes) -> tuple[bytes, int]:
    """Read what follows an item at the start of ``data``: a comma (an item comes next), the
    array's end (only whitespace may follow), or nothing yet. Returns the bytes after it and
    the reader's new state."""
    index = _skip_space(data, 0)
    if index == len(data):
        return b"", _SEPARATOR
    mark = data[index]
    if mark == _COMMA:
        return data[index + 1 :], _ITEM
    if mark == _CLOSE:
        if data[index + 1 :].strip(_WHITESPACE):
            raise ArrayError("not JSON (data after the array)")
        return b"", _CLOSED
    raise ArrayError("not JSON (no comma between items)")


def _skip_space(buf: bytes | bytearray, index: int) -> int:
    while index < len(buf) and buf[index] in _WHITESPACE:
        index += 1
    return index


def _not_an_array(buf: bytearray, rest: Iterator[bytes], limit: int) -> str:
    """Why a body that does not start with ``[`` is refused: read it (bounded) to name it."""
    for chunk in rest:
        buf += chunk
        if len(buf) > limit:
            return "expected a JSON array, got a large body that is not one"
    try:
        body = loads_json(bytes(buf))
    except ValueError:
        return "not JSON"
    return f"expected a JSON array, got {type(body).__name__}"
