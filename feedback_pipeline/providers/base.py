"""The small interface every provider module implements; the only thing the sync engine knows.

A provider module holds everything specific to one API: its settings (environment variables),
auth, how a window and a change query map onto the API's filters, order and paging, and where
each unified field lives in its records. Shared mechanics (HTTP retries, normalization rules,
transactional writes, cursors) live elsewhere and are written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urlsplit

import dagster as dg

from ..http import HttpClient, ProviderRequestError, RetryPolicy
from ..normalize import FeedbackBatch

UTC = timezone.utc


class ConfigurationError(ValueError):
    """A setting is missing or malformed. The message names the environment variable(s)."""


@dataclass(frozen=True)
class EnvSetting:
    """One environment variable of a provider."""

    var: str
    required: bool = True
    default: str | None = None
    secret: bool = False
    url: bool = False


class ProviderResource(dg.ConfigurableResource):
    """Credentials and endpoints of one provider. Subclasses declare one ``str | None`` field per
    entry of ``ENV``; definitions fill them with ``dg.EnvVar`` so secrets never sit in code,
    run config or the UI."""

    ENV: ClassVar[Mapping[str, EnvSetting]] = {}

    def missing_variables(self) -> list[str]:
        """Required variables that are not set (empty counts as not set)."""
        return [s.var for name, s in self.ENV.items() if s.required and not getattr(self, name)]

    def validate_settings(self, provider: str) -> None:
        """Fail before any request, naming the variable, when a setting is missing or malformed."""
        missing = self.missing_variables()
        if missing:
            raise ConfigurationError(
                f"{provider} is not configured: set {', '.join(missing)} "
                "(environment or .env file; see the README's configuration table)."
            )
        for name, setting in self.ENV.items():
            value = getattr(self, name)
            if not value:
                continue
            # A stray newline or space (a copy-paste into .env) would otherwise surface as an
            # obscure protocol error after retries; the value itself is never echoed.
            if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ConfigurationError(
                    f"{setting.var} has leading/trailing whitespace or a control character "
                    "(a stray newline?); set it without them."
                )
            if setting.secret and not value.isascii():
                raise ConfigurationError(f"{setting.var} contains non-ASCII characters; keys and secrets are ASCII, check the value.")
            if setting.url:
                _check_url(setting.var, value)

    def secret_values(self) -> list[str]:
        """Values that must never be printed (for redaction)."""
        return [getattr(self, n) for n, s in self.ENV.items() if s.secret and getattr(self, n)]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "ProviderResource":
        """Build the resource with ``EnvVar`` for every variable that is set, defaults otherwise."""
        kwargs: dict[str, Any] = {}
        for name, setting in cls.ENV.items():
            if environ.get(setting.var):
                kwargs[name] = dg.EnvVar(setting.var)
            else:
                kwargs[name] = setting.default
        return cls(**kwargs)

    @classmethod
    def is_configured(cls, environ: Mapping[str, str]) -> bool:
        return all(environ.get(s.var) for s in cls.ENV.values() if s.required)


def _check_url(var: str, value: str) -> None:
    """An http(s) base URL with a host, a valid port, no credentials, query or fragment."""
    problem = None
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "must be an http(s) URL such as https://host[:port][/path]; got a value that is not one"
    elif not port_ok:
        problem = "has an invalid port"
    elif parts.username is not None or parts.password is not None:
        problem = "must not contain credentials (user:password@); set the provider's key variables instead"
    elif parts.query or parts.fragment or value.endswith(("?", "#")):
        problem = "must be a base URL without a query string or fragment"
    if problem:
        raise ConfigurationError(f"{var} {problem}.")


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


class StaleCursor(Exception):
    """The stored resume cursor is no longer accepted: the engine restarts the query from scratch."""


class Provider(ABC):
    """One feedback API. Instances live for one run; ``http`` is that run's client."""

    name: ClassVar[str]
    resource_class: ClassVar[type[ProviderResource]]
    # True when fetch() can honour Query.changes_since (ask only for what changed).
    supports_changes: ClassVar[bool] = False
    # Hints shown when the API refuses a request (status -> what to check).
    hints: ClassVar[Mapping[int, str]] = {}

    def __init__(self, config: ProviderResource, *, policy: RetryPolicy | None = None):
        config.validate_settings(self.name)
        self.config = config
        self.policy = policy

    @property
    @abstractmethod
    def account_id(self) -> str:
        """The ``account_id`` column for this provider's rows (see CONTRACT.md)."""

    def http_client(self, **kwargs: Any) -> HttpClient:
        """A client for one run, with this provider's secrets registered for redaction."""
        return HttpClient(
            self.name,
            policy=self.policy,
            secrets=self.config.secret_values(),
            hints=self.hints,
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

    @abstractmethod
    def normalize(self, records: list[Any], batch: FeedbackBatch) -> None:
        """Add the page's records to ``batch``: ``batch.objects`` drops non-objects, then one
        ``batch.extend`` call with each unified field as a list aligned with the records (the
        batch applies the input rules; ``batch.reject`` for provider-specific rejects)."""
