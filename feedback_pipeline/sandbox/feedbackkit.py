"""FeedbackKit emulator: ``GET /api/v1/feedbacks`` and ``GET /api/v1/feedbacks/{id}``.

Follows ``shared/providers/feedbackkit.md``: ``X-API-Key`` auth (project keys look like
``sf_...``), optional ``X-User-Id`` for a personalised ``hasVoted``, errors as
``{"error": true, "reason": "..."}``. The list is a plain JSON array of *every* item of the
project sorted by ``voteCount`` descending: no paging and no date filter. Merged items (those
with ``mergedIntoId``) are left out unless ``includeMerged=true``; ``status`` and ``category``
filter and answer 400 for a value outside the documented enums. Keys are camelCase as the page
documents; ``state.feedbackkit_snake_case`` switches them to snake_case, which the real server
has been seen sending ("Facts beyond this page"). Records are stored in the documented
camelCase form; the switch applies only when a response is written. Accounts: the project key
names the project, so account k is read with ``API_KEY-k`` and sees only its own records.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data
from .core import Emulator, account_value, json_response

UTC = timezone.utc
API_KEY = "sf_sandbox_3b9d2c7e41f04a8c"
PROJECT = "sandbox"
LIST_PATH = "/api/v1/feedbacks"
STATUSES = ("pending", "approved", "in_progress", "testflight", "completed", "rejected")
CATEGORIES = ("feature_request", "bug_report", "improvement", "other")
TITLES = (
    "Add dark mode support",
    "Export to CSV",
    "App crashes when opening settings",
    "Sync is slow on large projects",
    "Please support Apple Watch",
    "Typo on the onboarding screen",
    "ダークモードが欲しい",
    "Offline mode 🚀",
    "Robert'); DROP TABLE feedback;--",
    "",
)
REJECTION_REASONS = ("Out of scope for now.", "Duplicate of an existing request.", "Won't fix: works as designed.")

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_snake_cache: dict[str, str] = {}


def snake(key: str) -> str:
    """``voteCount`` -> ``vote_count`` (the server's own key encoding)."""
    out = _snake_cache.get(key)
    if out is None:
        out = _snake_cache[key] = _CAMEL.sub("_", key).lower()
    return out


def error(status: int, reason: str) -> Response:
    # Vapor's ErrorMiddleware shape, as the page documents under "Error Handling".
    return json_response({"error": True, "reason": reason}, status)


class FeedbackKitEmulator(Emulator):
    name = "feedbackkit"

    def settings(self, base_url: str, account: int = 1) -> dict[str, str]:
        return {"api_key": account_value(API_KEY, account), "base_url": base_url, "project": account_value(PROJECT, account)}

    def account_of(self, request: Request) -> int | None:
        return self.find_account(API_KEY, request.headers.get("x-api-key"))

    # -- data -----------------------------------------------------------------------------

    def generate_day(self, rng: random.Random, day: date, count: int, now: datetime, account: int = 1) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for i, when in enumerate(data.day_times(rng, day, count, now)):
            status = rng.choice(STATUSES)
            updated = data.later(rng, when, now, max_hours=24 * 14)
            record: dict[str, Any] = {
                "id": data.uuid4(rng),
                "title": rng.choice(TITLES),
                "description": data.comment(rng),
                "status": status,
                "category": rng.choice(CATEGORIES),
                "userId": data.user_id(rng),
                # The creator's own vote counts (voteCount starts at 1).
                "voteCount": min(int(rng.paretovariate(1.2)), 5000),
                "hasVoted": False,
                "commentCount": rng.randrange(0, 12),
                "createdAt": _stamp(rng, when),
                "updatedAt": _stamp(rng, updated),
            }
            roll = rng.random()
            if roll < 0.5:
                record["userEmail"] = data.email(rng)
            elif roll < 0.7:
                record["userEmail"] = None  # optional fields arrive both null and absent
            roll = rng.random()
            if roll < 0.4:
                record["totalMrr"] = round(rng.uniform(0, 900), 2)
            elif roll < 0.6:
                record["totalMrr"] = None
            if status == "rejected" and rng.random() < 0.7:
                record["rejectionReason"] = rng.choice(REJECTION_REASONS)
            if records and rng.random() < 0.08:
                # Merged into an earlier item of the same day: hidden unless includeMerged=true.
                target = rng.choice(records)
                if not target.get("mergedIntoId"):
                    record["mergedIntoId"] = target["id"]
                    record["mergedAt"] = _stamp(rng, updated)  # targets are earlier the same day
                    target["mergedFeedbackIds"] = [*(target.get("mergedFeedbackIds") or []), record["id"]]
                    target["voteCount"] += record["voteCount"]
            elif rng.random() < 0.2:
                record["mergedIntoId"] = None
                record["mergedFeedbackIds"] = None
            records.append(record)
        if data.bad_record_day(day, self.state.last_day(now)) is not None:
            # A record the connector must reject (data.bad_record_day): the day's last one that
            # no merge refers to (on a day of very few records, one whose merge fields are null).
            unmerged = (r for r in reversed(records) if "mergedIntoId" not in r and "mergedFeedbackIds" not in r)
            nulled = (r for r in reversed(records) if not r.get("mergedIntoId") and not r.get("mergedFeedbackIds"))
            victim = next(unmerged, None) or next(nulled, None)
            if victim is not None:
                _break(victim)
        return records

    def touch(self, record: dict[str, Any], now: datetime) -> None:
        record["updatedAt"] = data.iso_z(now, 3)

    def bad_envelope(self) -> Any:
        # A paged envelope instead of the documented plain array.
        return {"items": [], "metadata": {"page": 1, "per": 100, "total": 0}}

    # -- API ------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route(LIST_PATH, self.endpoint(self.list_feedbacks), methods=["GET"]),
            Route(LIST_PATH + "/{feedback_id}", self.endpoint(self.get_feedback), methods=["GET"]),
        ]

    def _authorized(self, request: Request) -> bool:
        return self.account_of(request) is not None

    async def list_feedbacks(self, request: Request) -> Response:
        if not self._authorized(request):
            return error(401, "Invalid API key")
        params = request.query_params
        status = params.get("status")
        if status is not None and status not in STATUSES:
            return error(400, f"Invalid status '{status}'. Expected one of: {', '.join(STATUSES)}")
        category = params.get("category")
        if category is not None and category not in CATEGORIES:
            return error(400, f"Invalid category '{category}'. Expected one of: {', '.join(CATEGORIES)}")
        include_merged = params.get("includeMerged", "").lower() in ("true", "1")
        voter = request.headers.get("x-user-id")
        # The whole project in one body takes a second or more to build at 200,000 records: built
        # in a worker thread, so the event loop keeps answering the other providers' requests, as
        # separate APIs would (the sandbox serves all five from one process).
        return await run_in_threadpool(self._list_body, status, category, include_merged, voter)

    def _list_body(self, status: str | None, category: str | None, include_merged: bool, voter: str | None) -> Response:
        records = self.store.records
        out: list[dict[str, Any]] = []
        for _, rid in self.store.index("votes_desc", _vote_key):
            record = records.get(rid)
            if record is None:
                continue
            if not include_merged and record.get("mergedIntoId"):
                continue
            if status is not None and record.get("status") != status:
                continue
            if category is not None and record.get("category") != category:
                continue
            out.append(self._render(record, voter))
        return json_response(out)

    async def get_feedback(self, request: Request) -> Response:
        if not self._authorized(request):
            return error(401, "Invalid API key")
        feedback_id = request.path_params["feedback_id"]
        try:
            uuid.UUID(feedback_id)
        except ValueError:
            return error(400, "Invalid feedback ID")
        record = self.store.get(feedback_id)
        if record is None:
            return error(404, "Feedback not found")
        return json_response(self._render(record, request.headers.get("x-user-id")))

    def _render(self, record: dict[str, Any], voter: str | None) -> dict[str, Any]:
        # Without X-User-Id hasVoted is always false; the creator's own vote counts as theirs.
        if voter and record.get("userId") == voter:
            record = {**record, "hasVoted": True}
        if self.state.feedbackkit_snake_case:
            record = {snake(k): v for k, v in record.items()}
        return record


def _vote_key(record: dict[str, Any]) -> int:
    # Ascending index of (-votes, id) == votes descending, ties by id: a stable order.
    votes = record.get("voteCount", record.get("vote_count"))
    return -votes if isinstance(votes, int) and not isinstance(votes, bool) else 0


def _stamp(rng: random.Random, when: datetime) -> str:
    """Mostly Swift's default ISO 8601 (whole seconds, ``Z``); sometimes milliseconds or an offset."""
    roll = rng.random()
    if roll < 0.7:
        return data.iso_z(when, 0)
    if roll < 0.9:
        return data.iso_z(when, 3)
    local = when.astimezone(timezone(timedelta(hours=2)))
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}+02:00"


def _break(record: dict[str, Any]) -> None:
    """A bad record's flaw: an empty id. Its creation time stays good: the API has no date filter,
    so a record whose time is unusable belongs to no window and would be served to (and
    rejected by) every run, whatever its window; unusable times are covered by test_bad_input."""
    record["id"] = ""


EMULATOR = FeedbackKitEmulator
