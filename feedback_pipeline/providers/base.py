"""The small interface every provider module implements; the only thing the sync engine knows.

A provider module holds everything specific to one API: its ``SPEC`` (settings, status table,
account; ``spec.py``), auth, how a window and a change query map onto the API's filters, order
and paging, and where each unified field lives in its records. Shared mechanics (HTTP retries, normalization rules,
transactional writes, cursors) live elsewhere and are written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from ..http import BadPage, HttpClient, ProviderRequestError, RetryPolicy
from ..normalize import FeedbackBatch, split

if TYPE_CHECKING:
    from .spec import ProviderResource, ProviderSpec

UTC = timezone.utc


class ConfigurationError(ValueError):
    """A setting is missing or malformed. The message names the environment variable(s)."""


@dataclass(frozen=True)
class Window:
    """A UTC collected-time range ``[start, end)`` covering whole partition days."""

    start: datetime
    end: datetime

    @classmethod
    def for_days(cls, first: date, last: date) -> "Window":
        """The window from the start of ``first`` to the end of ``last`` (both included)."""
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        return cls(start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1))

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    def days(self) -> list[date]:
        n = (self.end - self.start).days
        return [self.first_day + timedelta(days=i) for i in range(n)]

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end

    def __str__(self) -> str:
        return f"{self.first_day.isoformat()}..{self.last_day.isoformat()}"


@dataclass(frozen=True)
class Query:
    """What the engine asks a provider for.

    ``changes_since`` None: read every record collected in ``window``. Otherwise: only records of
    ``window`` updated at or after ``changes_since`` are needed (a provider that cannot filter on
    update time reads the whole window instead). ``resume`` is the ``Page.resume`` of the last
    page committed for this very query, when an earlier attempt stopped part-way.
    """

    window: Window
    changes_since: datetime | None = None
    resume: Mapping[str, Any] | None = None


@dataclass
class Page:
    """One response's records and what resumes the query after it.

    ``resume`` must be JSON-serialisable and is committed in the same transaction as the page's
    rows; None means the query is finished. ``complete_snapshot`` marks the pages of a query
    that together hold every record the provider has (FeedbackKit): rows of the window absent
    from all of them were deleted.
    """

    records: list[Any]
    resume: Mapping[str, Any] | None
    complete_snapshot: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


def check_cursor_page(body: Any, *, items: str, more: str, cursor: str, empty_page_ends: bool = False) -> None:
    """The envelope of a cursor-paged list, or :class:`BadPage`: ``body[items]`` an array,
    ``body[more]`` a boolean, ``body[cursor]`` a string or null, and not empty while more pages
    follow. ``empty_page_ends``: an empty page ends the query whatever ``more`` says (so it
    needs no cursor)."""
    if not isinstance(body, dict) or not isinstance(body.get(items), list):
        raise BadPage(f"expected an object with a '{items}' array")
    if not isinstance(body.get(more), bool):
        raise BadPage(f"'{more}' is missing or not a boolean")
    value = body.get(cursor)
    if value is not None and not isinstance(value, str):
        raise BadPage(f"'{cursor}' is not a string")
    if body[more] and not value and not (empty_page_ends and not body[items]):
        raise BadPage(f"'{more}' is true but '{cursor}' is empty or missing")


class StaleCursor(Exception):
    """The stored resume cursor is no longer accepted: the engine restarts the query from scratch."""


class Provider(ABC):
    """One feedback API. Instances live for one run; ``http`` is that run's client. The spec
    comes with the settings (``config.SPEC``)."""

    # True when fetch() can honour Query.changes_since (ask only for what changed).
    supports_changes: ClassVar[bool] = False
    # Unified column -> the record's field, for the columns that are a field as it is; every
    # field not listed goes to ``attributes``.
    fields: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: ProviderResource, *, policy: RetryPolicy | None = None):
        config.validate_settings()
        self.spec: ProviderSpec = config.SPEC
        self.config = config
        self.policy = policy
        self.validate()

    def validate(self) -> None:
        """Checks of the settings beyond the spec's (e.g. a key's documented prefix); raise
        :class:`ConfigurationError` naming the variable."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def account_id(self) -> str:
        """The ``account_id`` column for this provider's rows (CONTRACT.md): the value of the
        spec's account setting."""
        return self.config.get(self.spec.account) or ""

    def http_client(self, **kwargs: Any) -> HttpClient:
        """A client for one run, with this provider's secrets registered for redaction."""
        return HttpClient(
            self.name,
            policy=self.policy,
            secrets=self.config.secret_values(),
            hints=self.spec.hints,
            **kwargs,
        )

    def get_page(self, http: HttpClient, url: str, *, endpoint: str, params: Any, validate: Any, resumed: bool) -> Any:
        """GET one page. ``resumed`` marks the first request of a query resumed from a stored
        cursor: a 400 to it means the API no longer accepts that cursor (expired, or from another
        API version), which the engine handles by restarting the query."""
        try:
            return http.get_json(url, endpoint=endpoint, params=params, validate=validate)
        except ProviderRequestError as refused:
            if resumed and refused.status == 400:
                raise StaleCursor(f"{self.name}: the stored cursor was refused") from refused
            raise

    @abstractmethod
    def open(self) -> HttpClient:
        """Create the run's HTTP client (auth headers, etc.)."""

    @abstractmethod
    def fetch(self, query: Query, http: HttpClient) -> Iterator[Page]:
        """Yield pages for ``query``, in the API's order, resuming from ``query.resume``."""

    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        """Add the page's records to ``batch``: ``batch.objects`` drops non-objects, then one
        ``batch.extend`` call with each unified field as a list aligned with the records (the
        batch applies the input rules; ``batch.reject`` for provider-specific rejects). This
        default maps :attr:`fields` one to one; providers with derived columns override it."""
        records = batch.objects(records)
        columns, attributes = split(records, self.fields)
        batch.extend(records, **columns, attributes=attributes)
