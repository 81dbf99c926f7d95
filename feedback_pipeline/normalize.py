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
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .schema import REJECT_SCHEMA, ROW_COLUMNS, ROW_SCHEMA, STATUS_MAP, RejectReason

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# NUL and lone surrogates cannot be stored faithfully (DuckDB strings are UTF-8 without NUL);
# the contract says they become U+FFFD and the record is kept.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


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
    if _BAD_CHARS.search(text):
        text = _BAD_CHARS.sub("\ufffd", text)
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


def dumps_json(value: Any) -> str:
    """Deterministic JSON text (sorted keys), so unchanged records compare equal byte for byte."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # orjson refuses lone surrogates; clean them out and try again.
        scrubbed = _scrub(value)
        try:
            return orjson.dumps(scrubbed, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            # ... and integers beyond 64 bits (valid JSON): the stdlib writes those, same layout.
            import json

            return json.dumps(scrubbed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _BAD_CHARS.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {(_scrub(k) if isinstance(k, str) else k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def loads_json(content: bytes | str) -> Any:
    """Parse a response body. Fast path orjson; the stdlib parser accepts lone surrogates
    (``"\\ud800"``) that orjson refuses, so one bad character never loses a whole page."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        import json

        try:
            return json.loads(content)
        except RecursionError:
            # Nested deeper than any parser goes (orjson stops at 1024 levels): a bad page, not
            # a crash of the run.
            raise ValueError("JSON nested too deeply") from None


def payload_key(payload: Any) -> str:
    """Identity of a record that has no id: a hash of its canonical JSON."""
    return "sha256:" + hashlib.sha256(dumps_json(payload).encode()).hexdigest()


_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_MIN_US = 0  # 1970-01-01
_MAX_US = (datetime(2100, 1, 1, tzinfo=UTC) - _EPOCH) // _US
_TEXT_COLUMNS = ("status", "provider_status", "category", "title", "body", "user_id", "user_email", "page_url")
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _text(value: Any) -> Any:
    """Fast path of :func:`clean_text`: strings pass as they are (bad characters are replaced
    column-wise in :func:`_text_array`), other types are converted."""
    if value is None or type(value) is str:
        return value
    return clean_text(value)


def _text_array(values: list[Any]) -> pa.Array:
    """An Arrow string array; NUL and lone surrogates become U+FFFD (checked per column, since
    they are rare: Arrow refuses surrogates, so only then is every value cleaned in Python)."""
    try:
        array = pa.array(values, pa.string())
    except (UnicodeEncodeError, UnicodeDecodeError):
        array = pa.array([clean_text(v) for v in values], pa.string())
    if len(array) and pc.any(pc.match_substring(array, "\x00")).as_py():
        array = pc.replace_substring(array, "\x00", "\ufffd")
    return array


class FeedbackBatch:
    """Normalized rows and rejects of one provider account, built column by column.

    Provider modules call :meth:`add` once per record with the raw values they located; the
    batch applies the contract's input rules and routes bad records to :meth:`reject`. Values are
    kept in their cheapest form (epoch microseconds, JSON bytes) and turned into Arrow arrays in
    C++ by :meth:`rows`, so normalizing stays a few microseconds per record.
    """

    def __init__(self, provider: str, account_id: str):
        self.provider = provider
        self.account_id = account_id
        self._status_map = STATUS_MAP[provider]
        self._ids: list[str] = []
        self._collected: list[int] = []
        self._updated: list[int | None] = []
        self._text: dict[str, list[Any]] = {name: [] for name in _TEXT_COLUMNS}
        self._rating: list[float | None] = []
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
        """Add one record; returns False when it was rejected instead."""
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
        if updated_at is None:
            updated = None
        else:
            try:
                updated = (parse_timestamp(updated_at) - _EPOCH) // _US
            except (BadTimestamp, OverflowError):
                updated = None
        status_text = _text(provider_status)
        text = self._text
        self._ids.append(fid)
        self._collected.append(collected)
        self._updated.append(updated)
        text["status"].append(self._status_map.get(status_text) if status_text is not None else None)
        text["provider_status"].append(status_text)
        text["category"].append(_text(category))
        text["title"].append(_text(title))
        text["body"].append(_text(body))
        text["user_id"].append(_text(user_id))
        text["user_email"].append(_text(user_email))
        text["page_url"].append(_text(page_url))
        kind = type(rating)
        self._rating.append(float(rating) if kind is float and math.isfinite(rating) else coerce_rating(rating))
        if attributes:
            try:
                self._attributes += orjson.dumps(attributes, option=_JSON_OPTIONS)
            except TypeError:
                self._attributes += dumps_json(attributes).encode()
        else:
            self._attributes += b"{}"
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
        collected = pa.array(self._collected, pa.int64())
        columns: dict[str, pa.Array] = {
            "provider": pa.repeat(self.provider, n).cast(pa.string()) if n else pa.array([], pa.string()),
            "account_id": pa.repeat(self.account_id, n).cast(pa.string()) if n else pa.array([], pa.string()),
            "feedback_id": _text_array(self._ids),
            "collected_at": collected.cast(pa.timestamp("us", tz="UTC")),
            "collected_date": pc.divide(collected, _DAY_US).cast(pa.int32()).cast(pa.date32()),
            "updated_at": pa.array(self._updated, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "rating": pa.array(self._rating, pa.float64()),
            "attributes": pa.LargeStringArray.from_buffers(
                n,
                pa.array([0, *self._attribute_ends], pa.int64()).buffers()[1],
                pa.py_buffer(bytes(self._attributes)),
            ).cast(pa.string()),
        }
        for name in _TEXT_COLUMNS:
            columns[name] = _text_array(self._text[name])
        return pa.table([columns[name] for name in ROW_COLUMNS], schema=ROW_SCHEMA)

    def rejects(self) -> pa.Table:
        """The rejects as an Arrow table with :data:`REJECT_SCHEMA`."""
        return pa.table(
            {name: pa.array(values, type=REJECT_SCHEMA.field(name).type) for name, values in self._rejects.items()},
            schema=REJECT_SCHEMA,
        )
