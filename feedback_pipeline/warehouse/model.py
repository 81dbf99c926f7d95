"""Values the warehouse hands out and takes in: whose rows a write touches, how far a query got,
what a commit did, what a publish did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from typing import Any, Literal

UTC = timezone.utc


@dataclass(frozen=True)
class Scope:
    """Whose rows a write touches, and which collected days it may write."""

    provider: str
    account_id: str
    first_day: date
    last_day: date


@dataclass(frozen=True)
class CursorRow:
    """A stored in-flight query (see ``pipeline_cursors``)."""

    query_key: str
    first_day: date
    last_day: date
    changes_since: datetime | None
    started_at: datetime
    resume: Mapping[str, Any]
    pages: int


@dataclass(frozen=True)
class Progress:
    """How far one query got, committed together with the batch it covers.

    ``resume`` None means the query finished: its days are marked synced with watermark
    ``started_at`` and its cursor is removed. ``sweep`` (full refresh, or an API that returns a
    complete snapshot) records every key the query returns, and when it finishes deletes the rows
    of its days it did not return. ``first`` marks the first commit of a query that started
    afresh (no stored cursor): keys recorded earlier under its key belong to no run of it.
    """

    query_key: str
    first_day: date
    last_day: date
    changes_since: datetime | None
    started_at: datetime
    pages: int
    resume: Mapping[str, Any] | None
    sweep: bool = False
    first: bool = False


@dataclass
class WriteCounts:
    """What one commit did."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    out_of_window: int = 0
    rejected: int = 0
    deleted: int = 0
    rejects_written: int = 0
    rejects_cleared: int = 0
    # Records of an erased person dropped before storage (rows and would-be rejects alike).
    suppressed: int = 0
    # Unchanged rows rewritten side by side because the batch's stored rows lay scattered
    # (writes.relocate); counted in ``unchanged`` too.
    relocated: int = 0

    def add(self, other: "WriteCounts") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted + self.rejects_written + self.rejects_cleared


@dataclass(frozen=True)
class PublishResult:
    """What one publish did: ``incremental`` applied the changed keys to the idle snapshot file,
    ``copied`` applied them to a byte copy of the live file (the idle file was held by a reader,
    missing or too far behind), ``full`` wrote a compacted copy of the working database (first
    publish, schema change, a backfill)."""

    mode: Literal["incremental", "copied", "full"]
    rows_applied: int
    seconds: float


def utc(value: datetime) -> datetime:
    """DuckDB hands TIMESTAMPTZ back in the session zone (UTC here); make it aware either way."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
