"""Shared normalization: the contract's input rules, applied once for every provider.

A provider module only says *where* each unified field lives in its records; this module decides
*how* a value becomes a column (ids, timestamps, ratings, text cleaning, status mapping, rejects)
so the rules of ``CONTRACT.md`` ("Input rules") hold identically for all five APIs.

Rows are collected column by column and handed to DuckDB as one Arrow table per batch: no
per-row inserts anywhere.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .jsonio import BAD_CHARS, SORTED, dumps_json
from .schema import REJECT_SCHEMA, ROW_COLUMNS, ROW_SCHEMA, RejectReason

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)



class BadTimestamp(ValueError):
    """A collected time that cannot be used; ``reason`` is the reject reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def clean_text(value: Any) -> str | None:
    """Return ``value`` as verbatim text (no trimming), with NUL and lone surrogates replaced."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
    else:  # dict / list where a string belongs: keep it, as JSON text
        text = dumps_json(value)
    if BAD_CHARS.search(text):
        text = BAD_CHARS.sub("\ufffd", text)
    return text


def coerce_id(value: Any) -> str | None:
    """An id as text: numbers become their decimal string; missing, empty or odd types give None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return None
    if isinstance(value, str):
        return clean_text(value) if value != "" else None
    return None


def coerce_rating(value: Any) -> float | None:
    """A number or numeric string becomes a float; anything else (including NaN) is None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any double (JSON allows any number of digits)
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_timestamp(value: Any) -> datetime:
    """Parse an ISO 8601 / RFC 3339 timestamp to an aware UTC datetime.

    Offsets are converted, a value without a zone is read as UTC, fractions beyond microseconds
    are truncated (Hub sends nanoseconds). Raises :class:`BadTimestamp` with the reject reason.
    """
    if value is None or value == "":
        raise BadTimestamp(RejectReason.MISSING_COLLECTED_AT)
    if type(value) is not str:
        raise BadTimestamp(RejectReason.UNPARSEABLE_COLLECTED_AT)
    try:
        # Python 3.11+ reads "Z", offsets and any number of fractional digits.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            # Surrounding spaces, and RFC 3339's lowercase "t" and "z" (fromisoformat wants them
            # uppercase).
            parsed = datetime.fromisoformat(value.strip().upper())
        except ValueError:
            raise BadTimestamp(RejectReason.UNPARSEABLE_COLLECTED_AT) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadTimestamp(RejectReason.COLLECTED_AT_OUT_OF_RANGE) from None


def parse_optional_timestamp(value: Any) -> datetime | None:
    """Like :func:`parse_timestamp` for fields that may be absent or broken (e.g. updated_at)."""
    try:
        return parse_timestamp(value)
    except BadTimestamp:
        return None


def payload_key(payload: Any) -> str:
    """Identity of a record that has no id: a hash of its canonical JSON."""
    return "sha256:" + hashlib.sha256(dumps_json(payload).encode()).hexdigest()


_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_MIN_US = 0  # 1970-01-01
_MAX_US = (datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) // _US
_FIRST, _END = _EPOCH, datetime(2100, 1, 1, tzinfo=UTC)  # the same range as datetimes
# Text columns as they come from the provider (status is derived from provider_status in rows()).
_TEXT_COLUMNS = ("provider_status", "category", "title", "body", "user_id", "user_email", "page_url")
_TS_US = pa.timestamp("us", tz="UTC")
_TS_NS = pa.timestamp("ns", tz="UTC")
_TEXT_TYPES = frozenset({str, type(None)})
_NUMBER_TYPES = frozenset({float, int, type(None)})
_fromisoformat = datetime.fromisoformat


def _text(value: Any) -> Any:
    """Fast path of :func:`clean_text`: strings pass as they are (bad characters are replaced
    column-wise in :func:`_text_array`), other types are converted."""
    if value is None or type(value) is str:
        return value
    return clean_text(value)


def _text_array(values: list[Any]) -> pa.Array:
    """An Arrow string array; other types become text (:func:`clean_text`), NUL and lone
    surrogates U+FFFD. Each is checked once per column, since they are rare: only a column that
    Arrow refuses is converted value by value in Python. (Arrow would take bytes as UTF-8 text;
    values parsed from JSON are never bytes.)"""
    try:
        array = pa.array(values, pa.string())
    except pa.ArrowTypeError:  # a number, boolean, object or list among the texts
        return _text_array([_text(v) for v in values])
    except (UnicodeEncodeError, UnicodeDecodeError):
        array = pa.concat_arrays([_clean_chunk(values[i : i + 256]) for i in range(0, len(values), 256)])
    if array.null_count < len(array) and _has_nul(array):
        array = pc.replace_substring(array, "\x00", "\ufffd")
    return array


def _has_nul(array: pa.Array) -> bool:
    """Whether a string array may hold a NUL: a byte search over its data buffer (in UTF-8 a 0
    byte is only ever U+0000), ~40x faster than ``match_substring`` on long texts."""
    data = array.buffers()[2]
    return data is not None and b"\x00" in data.to_pybytes()


def _clean_chunk(values: list[Any]) -> pa.Array:
    """Part of a column that Arrow refused: only a chunk that holds the bad value is cleaned in
    Python, the others convert in C++."""
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, UnicodeDecodeError):
        return pa.array([clean_text(v) for v in values], pa.string())


def _dumps_attributes(attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b"{}"
    try:
        text = orjson.dumps(attributes, option=SORTED)
    except TypeError:
        return dumps_json(attributes).encode()
    # orjson writes NUL as the escape \u0000, which JSON readers turn back into NUL; the contract
    # replaces it with U+FFFD, as dumps_json does (a literal "\\u0000" in a text also lands there).
    return text if b"\\u0000" not in text else dumps_json(attributes).encode()


def _plain_instants(values: list[Any], *, nullable: bool) -> bool:
    """True when every value is an ISO 8601 text with a zone, from 1970 up to 2100 (nulls
    allowed if ``nullable``): such a column is converted in C++ by :class:`_Instants`. Python's
    ``fromisoformat`` decides what is accepted, exactly as in :func:`parse_timestamp`."""
    kinds = set(map(type, values))
    if not (kinds <= _TEXT_TYPES if nullable else kinds == {str}):
        return False
    try:
        parsed = list(map(_fromisoformat, [v for v in values if v is not None] if nullable else values))
        # Comparing naive with aware datetimes raises TypeError: a value without zone is out.
        return not parsed or (_FIRST <= min(parsed) and max(parsed) < _END)
    except (ValueError, TypeError):
        return False


def _plain_id(value: Any) -> bool:
    """An id :meth:`FeedbackBatch.add` keeps (a non-empty text, or a number that is a whole id)."""
    return (value != "") if type(value) is str else coerce_id(value) is not None


def _plain_instant(value: Any) -> bool:
    """:func:`_plain_instants` for one value."""
    if type(value) is not str:
        return False
    try:
        return _FIRST <= _fromisoformat(value) < _END
    except (ValueError, TypeError):
        return False


class _Instants:
    """A timestamp column in arrival order: epoch microseconds (records added one by one) and
    runs of plain ISO texts (pages), made into one ``timestamp[us, UTC]`` array at the end."""

    def __init__(self) -> None:
        self._runs: list[tuple[bool, list[Any]]] = []  # (is_text, values)

    def _run(self, text: bool) -> list[Any]:
        if not self._runs or self._runs[-1][0] is not text:
            self._runs.append((text, []))
        return self._runs[-1][1]

    def append_micros(self, value: int | None) -> None:
        self._run(False).append(value)

    def extend_micros(self, values: list[int | None]) -> None:
        self._run(False).extend(values)

    def extend_texts(self, values: list[str | None]) -> None:
        """Texts that passed :func:`_plain_instants`."""
        self._run(True).extend(values)

    def micros(self) -> pa.Array:
        """Epoch microseconds as int64."""
        parts = [_texts_to_micros(values) if text else pa.array(values, pa.int64()) for text, values in self._runs]
        if not parts:
            return pa.array([], pa.int64())
        return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def _texts_to_micros(values: list[str | None]) -> pa.Array:
    """Arrow's ISO 8601 cast (offsets applied; parsed to nanoseconds, so the floor to
    microseconds equals Python's truncation of the fraction for these post-1970 values). A text
    Python reads but Arrow does not (e.g. an offset with seconds) takes Python's arithmetic."""
    try:
        nanos = pc.cast(pa.array(values, pa.string()), _TS_NS).cast(pa.int64())
        return pc.divide(nanos, 1000)
    except (pa.ArrowException, ValueError):
        return pa.array([None if v is None else (_fromisoformat(v) - _EPOCH) // _US for v in values], pa.int64())


def split(
    records: list[dict[str, Any]], fields: Mapping[str, str], *, drop: tuple[str, ...] = ()
) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """A page cut in two for :meth:`FeedbackBatch.extend`: one list per unified column from a
    provider's one-to-one field map (column -> record key), and each record without those keys
    and ``drop`` (its ``attributes``). The values are popped from copies of the records, so each
    is looked up once (a lookup pass plus a filtered copy cost ~1.5x as much); the records
    themselves are left as they are (a reject keeps the whole record)."""
    rest = [record.copy() for record in records]
    values = {key: [r.pop(key, None) for r in rest] for key in dict.fromkeys(fields.values())}
    for key in drop:
        for r in rest:
            r.pop(key, None)
    return {column: values[key] for column, key in fields.items()}, rest


class FeedbackBatch:
    """Normalized rows and rejects of one provider account, built column by column.

    Provider modules hand over a page column-wise with :meth:`extend` (each unified field as a
    list aligned with the records). Records with a plain id and collected time (a non-empty
    string; a zoned ISO 8601 time in range) are appended as they are, column by column, and the
    columns are turned into Arrow arrays once per batch, in C++, by :meth:`rows`, which also
    settles texts of other types, bad characters and statuses column-wise. A record whose id or
    collected time needs a rule goes through :meth:`add`, which applies every input rule of the
    contract and routes a bad record to :meth:`reject`. Both paths give identical rows
    (``test_normalize`` compares them on generated pages).

    ``statuses`` maps provider statuses to unified ones; by default the provider spec's table.
    """

    def __init__(self, provider: str, account_id: str, *, statuses: Mapping[str, str] | None = None):
        self.provider = provider
        self.account_id = account_id
        if statuses is None:
            from .providers import get_spec  # the registry imports the provider modules, which import this one

            statuses = get_spec(provider).statuses
        self._status_map = statuses
        self._ids: list[str] = []
        self._collected = _Instants()
        self._updated = _Instants()
        self._text: dict[str, list[Any]] = {name: [] for name in _TEXT_COLUMNS}
        self._rating: list[float | int | None] = []
        # Attribute JSON of every row, back to back, with end offsets: orjson hands out each
        # result in an 8 KiB buffer, so keeping per-row bytes objects would cost ~8 KiB a row.
        self._attributes = bytearray()
        self._attribute_ends: list[int] = []
        self._rejects: dict[str, list[Any]] = {name: [] for name in REJECT_SCHEMA.names}

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def reject_count(self) -> int:
        return len(self._rejects["reason"])

    def objects(self, records: list[Any]) -> list[dict[str, Any]]:
        """The records that are JSON objects; anything else is rejected as ``record_not_an_object``."""
        if set(map(type, records)) <= {dict}:
            return records
        out = []
        for record in records:
            if isinstance(record, dict):
                out.append(record)
            else:
                self.reject(record, RejectReason.NOT_AN_OBJECT)
        return out

    def extend(
        self,
        records: list[dict[str, Any]],
        *,
        feedback_id: list[Any],
        collected_at: list[Any],
        attributes: list[Mapping[str, Any] | None],
        updated_at: list[Any] | None = None,
        provider_status: list[Any] | None = None,
        category: list[Any] | None = None,
        title: list[Any] | None = None,
        body: list[Any] | None = None,
        rating: list[Any] | None = None,
        user_id: list[Any] | None = None,
        user_email: list[Any] | None = None,
        page_url: list[Any] | None = None,
    ) -> None:
        """Add a page of records given column-wise: every list is aligned with ``records``, and
        a column left out is NULL. The result is the same as :meth:`add` for each record."""
        columns = {"feedback_id": feedback_id, "collected_at": collected_at, "attributes": attributes}
        optional = {
            "updated_at": updated_at,
            "provider_status": provider_status,
            "category": category,
            "title": title,
            "body": body,
            "rating": rating,
            "user_id": user_id,
            "user_email": user_email,
            "page_url": page_url,
        }
        columns.update((name, values) for name, values in optional.items() if values is not None)
        n = len(records)
        if set(map(type, feedback_id)) == {str} and "" not in feedback_id and _plain_instants(collected_at, nullable=False):
            self._append(n, columns, text_ids=True)
            return
        # Some records need the rules (and may be rejected): those go one by one through add(),
        # the runs of plain records between them column-wise, keeping the page's order.
        plain = [_plain_id(i) and _plain_instant(c) for i, c in zip(feedback_id, collected_at)]
        start = 0
        for i in range(n + 1):
            if i < n and plain[i]:
                continue
            if start < i:
                self._append(i - start, {name: values[start:i] for name, values in columns.items()})
            if i < n:
                self.add(records[i], **{name: values[i] for name, values in columns.items()})
            start = i + 1

    def _append(self, n: int, columns: dict[str, list[Any]], *, text_ids: bool = False) -> None:
        """Append ``n`` plain records (ids usable, collected times plain ISO texts) column-wise;
        ``text_ids`` when the ids are known to be strings already."""
        ids = columns["feedback_id"]
        if not text_ids and set(map(type, ids)) != {str}:
            ids = [v if type(v) is str else coerce_id(v) for v in ids]
        self._ids.extend(ids)
        self._collected.extend_texts(columns["collected_at"])
        updated_at = columns.get("updated_at")
        if updated_at is None:
            self._updated.extend_micros([None] * n)
        elif _plain_instants(updated_at, nullable=True):
            self._updated.extend_texts(updated_at)
        else:
            self._updated.extend_micros([_optional_micros(v) for v in updated_at])
        for name in _TEXT_COLUMNS:  # converted to text, if they are not, in rows()
            values = columns.get(name)
            self._text[name].extend([None] * n if values is None else values)
        rating = columns.get("rating")
        if rating is None:
            self._rating.extend([None] * n)
        elif set(map(type, rating)) <= _NUMBER_TYPES:
            self._rating.extend(rating)  # NaN, infinities and huge integers are settled in rows()
        else:  # e.g. numeric strings among numbers: only those take the rules
            self._rating.extend([v if type(v) in _NUMBER_TYPES else coerce_rating(v) for v in rating])
        # One record at a time straight into the buffer, never a list of the page's results:
        # holding that list grew the heap by about a page per result, which glibc handed back
        # when the list went, so every page paid ~1 minor page fault per record (getrusage):
        # 10x the cost of the serialization itself.
        out, ends = self._attributes, self._attribute_ends
        for attributes in columns["attributes"]:
            out += _dumps_attributes(attributes)
            ends.append(len(out))

    def add(
        self,
        record: Any,
        *,
        feedback_id: Any,
        collected_at: Any,
        updated_at: Any = None,
        provider_status: Any = None,
        category: Any = None,
        title: Any = None,
        body: Any = None,
        rating: Any = None,
        user_id: Any = None,
        user_email: Any = None,
        page_url: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add one record, applying every input rule; returns False when it was rejected instead."""
        fid = feedback_id if type(feedback_id) is str and feedback_id else coerce_id(feedback_id)
        if fid is None:
            self.reject(record, RejectReason.MISSING_ID, feedback_id=None)
            return False
        try:
            collected = (parse_timestamp(collected_at) - _EPOCH) // _US
        except BadTimestamp as bad:
            self.reject(record, bad.reason, feedback_id=fid)
            return False
        if not (_MIN_US <= collected < _MAX_US):
            self.reject(record, RejectReason.COLLECTED_AT_OUT_OF_RANGE, feedback_id=fid)
            return False
        text = self._text
        self._ids.append(fid)
        self._collected.append_micros(collected)
        self._updated.append_micros(_optional_micros(updated_at))
        # Texts of other types are made text in rows(), as for the column-wise path.
        text["provider_status"].append(provider_status)
        text["category"].append(category)
        text["title"].append(title)
        text["body"].append(body)
        text["user_id"].append(user_id)
        text["user_email"].append(user_email)
        text["page_url"].append(page_url)
        kind = type(rating)
        self._rating.append(float(rating) if kind is float and math.isfinite(rating) else coerce_rating(rating))
        self._attributes += _dumps_attributes(attributes)
        self._attribute_ends.append(len(self._attributes))
        return True

    def reject(self, record: Any, reason: str, *, feedback_id: Any = None, keep_payload: bool = True) -> None:
        """Route a record to ``feedback_rejects``. ``keep_payload=False`` for content that must not
        be stored (another tenant's record)."""
        fid = coerce_id(feedback_id)
        rej = self._rejects
        rej["provider"].append(self.provider)
        rej["account_id"].append(self.account_id)
        rej["feedback_id"].append(fid)
        rej["record_key"].append(fid if fid is not None else payload_key(record))
        rej["reason"].append(reason)
        rej["payload"].append(dumps_json(record) if keep_payload else None)

    def rows(self) -> pa.Table:
        """The normalized rows as an Arrow table with :data:`ROW_SCHEMA`."""
        n = len(self._ids)
        collected = self._collected.micros()
        columns: dict[str, pa.Array] = {
            "provider": pa.repeat(self.provider, n).cast(pa.string()) if n else pa.array([], pa.string()),
            "account_id": pa.repeat(self.account_id, n).cast(pa.string()) if n else pa.array([], pa.string()),
            "feedback_id": _text_array(self._ids),
            "collected_at": collected.cast(_TS_US),
            "collected_date": pc.divide(collected, _DAY_US).cast(pa.int32()).cast(pa.date32()),
            "updated_at": self._updated.micros().cast(_TS_US),
            "rating": _rating_array(self._rating),
            "attributes": pa.LargeStringArray.from_buffers(
                n,
                pa.array([0, *self._attribute_ends], pa.int64()).buffers()[1],
                pa.py_buffer(bytes(self._attributes)),
            ).cast(pa.string()),
        }
        for name in _TEXT_COLUMNS:
            columns[name] = _text_array(self._text[name])
        columns["status"] = self._status(columns["provider_status"])
        return pa.table([columns[name] for name in ROW_COLUMNS], schema=ROW_SCHEMA)

    def _status(self, provider_status: pa.Array) -> pa.Array:
        """The unified status of each provider status (CONTRACT.md's table); NULL when unknown."""
        known = pa.array(list(self._status_map), pa.string())
        unified = pa.array(list(self._status_map.values()), pa.string())
        return pc.take(unified, pc.index_in(provider_status, value_set=known))

    def rejects(self) -> pa.Table:
        """The rejects as an Arrow table with :data:`REJECT_SCHEMA`."""
        return pa.table(
            {name: pa.array(values, type=REJECT_SCHEMA.field(name).type) for name, values in self._rejects.items()},
            schema=REJECT_SCHEMA,
        )


def _optional_micros(value: Any) -> int | None:
    """Epoch microseconds of an optional time (``updated_at``); unreadable gives None."""
    if value is None:
        return None
    try:
        return (parse_timestamp(value) - _EPOCH) // _US
    except (BadTimestamp, OverflowError):
        return None


def _rating_array(values: list[Any]) -> pa.Array:
    """Ratings as float64 in C++; NaN and infinities become NULL. A Python integer beyond what
    Arrow converts takes :func:`coerce_rating`, like any non-number did in :meth:`FeedbackBatch.extend`."""
    try:
        array = pa.array(values, pa.float64())
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        array = pa.array([coerce_rating(v) for v in values], pa.float64())
    if array.null_count < len(array):
        finite = pc.is_finite(array)
        if not pc.all(finite).as_py():
            array = pc.if_else(finite, array, pa.scalar(None, pa.float64()))
    return array
