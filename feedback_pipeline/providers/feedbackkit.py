"""FeedbackKit connector: ``GET {FEEDBACKKIT_BASE_URL}/api/v1/feedbacks``.

API facts this module is built on (``shared/providers/feedbackkit.md``):

* ``GET /feedbacks`` returns *every* item of the project in one JSON array sorted by vote count:
  there is no paging and no date or update filter. So one request answers any window, and the
  response is a complete snapshot: the engine keeps the records collected in its window and
  treats the window's stored rows missing from the snapshot as deleted at the provider. The
  array grows with the project's whole history (about 570 bytes a record in the sandbox), so it
  is read as a stream and only the window's records are built (see ``fetch``).
* Merged items are excluded by default; the contract ingests them as their own rows (with
  ``mergedIntoId`` in ``attributes``), so we always ask for ``includeMerged=true``.
* Auth is the project key in ``X-API-Key``. ``X-User-Id`` is not sent: it only personalises
  ``hasVoted``, which is then always false (a stable value, not a per-caller one).
* The page documents camelCase keys but the server encodes snake_case ("Facts beyond this page");
  keys are normalised to the documented camelCase names, so the rows are identical either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from ..arraystream import MISSING
from ..http import HttpClient
from ..normalize import BadTimestamp, FeedbackBatch, parse_timestamp, split
from .base import Page, Provider, Query, StaleCursor, Window
from .spec import ProviderSpec, Setting

# Creation times outside this range are rejected by the shared rules; keep them for that.
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)

DEFAULT_BASE_URL = "https://api.feedbackkit.app"
# Unified column -> FeedbackKit field (the documented camelCase names); everything else goes to
# attributes.
FIELDS = {
    "feedback_id": "id",
    "collected_at": "createdAt",
    "updated_at": "updatedAt",
    "provider_status": "status",
    "category": "category",
    "title": "title",
    "body": "description",
    "user_id": "userId",
    "user_email": "userEmail",
}

_SNAKE = re.compile(r"_([a-z0-9])")
_camel_cache: dict[str, str] = {}
# key layout of a record -> its camelCase names, () when unchanged (camel_keys).
_layouts: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def camel(key: str) -> str:
    """``vote_count`` -> ``voteCount``; camelCase keys come back unchanged."""
    out = _camel_cache.get(key)
    if out is None:
        out = key if "_" not in key or not key.islower() else _SNAKE.sub(lambda m: m.group(1).upper(), key)
        if len(_camel_cache) < 10_000:
            _camel_cache[key] = out
    return out


def camel_keys(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record with top-level keys in the documented camelCase (the record itself when they
    already are). When a record somehow has both spellings of one field, the documented camelCase
    one wins. The renaming is worked out once per key layout: a page repeats a few layouts."""
    keys = tuple(record)
    names = _layouts.get(keys)
    if names is None:
        renamed = tuple(camel(k) if isinstance(k, str) else k for k in keys)
        names = () if renamed == keys else renamed if len(set(renamed)) == len(renamed) else None
        if names is not None and len(_layouts) < 1_000:
            _layouts[keys] = names
    if names == ():
        return record
    if names is not None:
        return dict(zip(names, record.values()))
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = camel(key) if isinstance(key, str) else key
        if name in out and name != key:
            continue
        out[name] = value
    return out


# The resume value of every page but a snapshot's last. It lets the engine commit a snapshot in
# several batches; it cannot resume anything (see fetch).
RESTART: Mapping[str, Any] = {"snapshot": "read again"}
# Records of the window per page: bounds the memory of a page and of the engine's batch.
PAGE_SIZE = 2_500


class FeedbackKitProvider(Provider):
    # No update-time filter exists: every run reads the whole project (one request).
    supports_changes = False

    @property
    def url(self) -> str:
        return self.config.get("base_url").rstrip("/") + "/api/v1/feedbacks"

    def open(self) -> HttpClient:
        return self.http_client(headers={"X-API-Key": self.config.api_key or "", "Accept": "application/json"})

    def fetch(self, query: Query, http: HttpClient) -> Iterator[Page]:
        # One request returns everything (no paging, no date filter), so the window and
        # changes_since do not change what is asked. The array is read as a stream, in pages of
        # at most PAGE_SIZE records of the window; records of other windows are dropped from
        # their creation time alone, unbuilt. Records whose creation time cannot be read are
        # kept, so they still reach feedback_rejects. Every page but the last carries a resume
        # value, so the engine may commit the snapshot in several batches; the last one ends the
        # query, and the engine's sweep then deletes the window's stored rows the snapshot did
        # not return.
        if query.resume is not None:
            # An earlier run stopped part-way through a snapshot. The array cannot be resumed
            # (ordered by votes, which change), and the keys that run recorded must not count
            # for this one: the engine drops them with the cursor and restarts the query.
            raise StaleCursor(f"{self.name}: a snapshot cannot be resumed part-way; reading it again")
        stream = http.stream_json_items(
            self.url,
            endpoint="list feedbacks",
            params={"includeMerged": "true"},
            batch_size=PAGE_SIZE,
            peek=("createdAt", "created_at"),
            keep=_window_filter(query.window),
        )
        held: list[Any] | None = None
        for records in stream:
            if held is not None:
                yield Page(records=held, resume=RESTART, complete_snapshot=True, notes={"snapshot_read": stream.seen})
            held = records
        yield Page(records=held or [], resume=None, complete_snapshot=True, notes={"snapshot_size": stream.seen})

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        items = [camel_keys(r) for r in batch.objects(records)]
        columns, attributes = split(items, FIELDS)
        batch.extend(items, **columns, attributes=attributes)


def _window_filter(window: Window) -> Callable[[Any], bool]:
    """``keep`` for the array stream: whether a record (seen only through its creation time)
    belongs to ``window``, or has a creation time the shared rules reject (then it is kept, to
    be rejected). The camelCase key wins when both spellings are present, as in camel_keys."""
    start, end = window.start, window.end
    fromisoformat = datetime.fromisoformat

    def keep(probe: Any) -> bool:
        created = probe.createdAt
        if created is MISSING:
            created = probe.created_at
        if type(created) is str:
            # The common case without the general rules' fallbacks (parse_timestamp: same result
            # for whatever fromisoformat reads). Aware times compare across offsets, so no
            # conversion; a time beyond what UTC holds is outside [1970, 2100) and kept.
            try:
                when = fromisoformat(created)
            except ValueError:
                pass
            else:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                return start <= when < end or not (_EARLIEST <= when < _LATEST)
        try:
            when = parse_timestamp(None if created is MISSING else created)
        except BadTimestamp:
            return True
        return window.contains(when) or not (_EARLIEST <= when < _LATEST)

    return keep


SPEC = ProviderSpec(
    name="feedbackkit",
    asset_name="feedbackkit_feedback",
    description="Feature requests and bug reports from FeedbackKit.",
    settings=(
        Setting("FEEDBACKKIT_API_KEY", secret=True),  # the project's API key
        Setting("FEEDBACKKIT_BASE_URL", required=False, default=DEFAULT_BASE_URL, url=True),
        Setting("FEEDBACKKIT_PROJECT", required=False, default="default"),  # only our account label
    ),
    account="project",
    statuses={
        "pending": "open",
        "approved": "open",
        "in_progress": "in_progress",
        "testflight": "in_progress",
        "completed": "resolved",
        "rejected": "dismissed",
    },
    hints={
        400: "FeedbackKit rejected the request parameters; check FEEDBACKKIT_BASE_URL",
        401: "FeedbackKit rejected the key; check FEEDBACKKIT_API_KEY (the project API key, sf_...)",
        402: "the FeedbackKit subscription tier limit was exceeded; check the plan of the project behind FEEDBACKKIT_API_KEY",
        403: "the project refused the request (archived?); check FEEDBACKKIT_API_KEY",
        404: "no feedbacks endpoint there; check FEEDBACKKIT_BASE_URL (the API's base URL, without /api/v1)",
    },
    provider=FeedbackKitProvider,
    page_size=None,  # one request returns the whole project
)
