"""What the rest of the pipeline knows about one provider: its :class:`ProviderSpec`.

Each provider module exports one ``SPEC``. From it come the Dagster resource (one field per
setting, filled with ``EnvVar``), the asset's name and description, the status table, which
setting is the account, and whether the provider is configured. Every registry is derived from
the specs (``feedback_pipeline.providers``), so adding a provider edits no shared file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import dagster as dg

from ..schema import UNIFIED_STATUSES
from .base import ConfigurationError

if TYPE_CHECKING:
    from ..budget import RateBudget
    from ..http import RetryPolicy
    from .base import Provider

@dataclass(frozen=True)
class Setting:
    """One environment variable of a provider, e.g. ``Setting("MAPBOX_ACCOUNT", default="default")``.

    Its *key* (the resource field, and the key of an accounts-file entry) is the variable name
    without the provider's prefix, lowercased: ``MAPBOX_ACCOUNT`` -> ``account``."""

    var: str
    required: bool = True
    default: str | None = None
    secret: bool = False
    url: bool = False


class ProviderResource(dg.ConfigurableResource):
    """Credentials and endpoints of one provider account. Never subclassed by hand: each spec
    makes its own subclass with one ``str | None`` field per setting (:attr:`ProviderSpec.resource_class`)."""

    SPEC: ClassVar[ProviderSpec]

    def get(self, key: str) -> str | None:
        """The setting's value, or its declared default when unset."""
        return getattr(self, key) or self.SPEC.setting(key).default

    def missing_variables(self) -> list[str]:
        """Required variables that are not set (empty counts as not set)."""
        return [s.var for s in self.SPEC.settings if s.required and not getattr(self, self.SPEC.key(s))]

    def validate_settings(self) -> None:
        """Fail before any request, naming the variable, when a setting is missing or malformed."""
        missing = self.missing_variables()
        if missing:
            raise ConfigurationError(
                f"{self.SPEC.name} is not configured: set {', '.join(missing)} "
                "(environment or .env file; see the README's configuration table)."
            )
        for setting in self.SPEC.settings:
            value = getattr(self, self.SPEC.key(setting))
            if value:
                _check_value(setting, value)

    def secret_values(self) -> list[str]:
        """Values that must never be printed (for redaction)."""
        return [v for s in self.SPEC.settings if s.secret and (v := getattr(self, self.SPEC.key(s)))]


def _check_value(setting: Setting, value: str) -> None:
    # A stray newline or space (a copy-paste into .env) would otherwise surface as an obscure
    # protocol error after retries; the value itself is never echoed.
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigurationError(
            f"{setting.var} has leading/trailing whitespace or a control character (a stray newline?); set it without them."
        )
    if setting.secret and not value.isascii():
        raise ConfigurationError(f"{setting.var} contains non-ASCII characters; keys and secrets are ASCII, check the value.")
    if setting.url:
        _check_url(setting.var, value)


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
class ProviderSpec:
    """Everything specific to one provider that code outside its module needs.

    ``name`` is the contract's provider name (also the resource key and the variables' prefix,
    upper-cased); ``account`` is the key of the setting whose value is the ``account_id`` column;
    ``statuses`` maps the provider's status values to unified ones (a value not listed gives
    NULL); ``page_size`` is the largest page the API serves (None: everything in one request);
    ``nps_answers`` is a SELECT over ``feedback`` giving ``(collected_date, score)`` for each
    NPS answer among this provider's rows (the ``nps_daily`` view is their union); ``hints``
    say what to check when the API refuses a request (HTTP status -> which variables). Auth, paging, windowing and field mapping are the ``provider`` class's own business.

    ``request_budget`` is the API's request limit per organization (None: none worth pacing):
    every request of such a provider passes the shared ledger first (``budget.py``).
    ``reread_interval`` is how often the hourly schedule's runs re-read an older day of their
    window when the API has no change query (None: every run re-reads the whole window): such
    runs read today, and an older day only when it was last read more than this long ago (one
    such day per run), so their cost stays within the budget whatever the volume.
    ``concurrent_windows`` is how many day ranges a long window read is split into, each fetched
    as its own chain of pages at the same time as the others (1: one chain). Each costs at most
    one request more than the single chain (its last, partial page); worth it for APIs that serve
    small pages chained by a cursor, where one chain is a long series of round trips.
    """

    name: str
    # The asset's name (CONTRACT.md section 2: ``<name>_feedback``), spelled out in each provider
    # module so the contract's names can be found; ``problems()`` checks the rule.
    asset_name: str
    description: str
    settings: tuple[Setting, ...]
    account: str
    statuses: Mapping[str, str]
    provider: type[Provider]
    page_size: int | None
    hints: Mapping[int, str]
    nps_answers: str | None = None
    request_budget: RateBudget | None = None
    reread_interval: timedelta | None = None
    concurrent_windows: int = 1

    @property
    def prefix(self) -> str:
        return self.name.upper() + "_"

    def key(self, setting: Setting) -> str:
        """``MINTLIFY_PROJECT_ID`` -> ``project_id``."""
        return setting.var.removeprefix(self.prefix).lower()

    def setting(self, key: str) -> Setting:
        return self.by_key[key]

    @cached_property
    def by_key(self) -> dict[str, Setting]:
        """Key -> setting (``{"api_key": Setting("MINTLIFY_API_KEY", ...), ...}``)."""
        return {self.key(s): s for s in self.settings}

    @cached_property
    def resource_class(self) -> type[ProviderResource]:
        """The Dagster resource of this provider: one optional text field per setting, the
        declared default as the field's default."""
        keys = list(self.by_key)
        namespace: dict[str, Any] = {
            "__module__": self.provider.__module__,
            "__qualname__": self.provider.__name__.removesuffix("Provider") + "Resource",
            "__doc__": f"Settings of one {self.name} account: {', '.join(s.var for s in self.settings)}.",
            "__annotations__": {key: str | None for key in keys},
            "SPEC": self,
            **{key: self.by_key[key].default for key in keys},
        }
        return type(namespace["__qualname__"], (ProviderResource,), namespace)

    def resource(self, **values: Any) -> ProviderResource:
        """A resource from values by key (the declared defaults for the rest). An unknown key
        is refused (pydantic would drop it silently)."""
        unknown = set(values) - set(self.by_key)
        if unknown:
            raise TypeError(f"{self.name} has no setting {', '.join(sorted(unknown))}; its keys: {', '.join(self.by_key)}")
        return self.resource_class(**values)

    def resource_from_env(self, environ: Mapping[str, str], *, plain: bool = False) -> ProviderResource:
        """The resource Definitions hold: ``EnvVar`` for every variable set in ``environ``
        (resolved by Dagster at run time, so no secret sits in code, run config or the UI),
        the declared default otherwise. ``plain`` puts the values themselves instead (tests
        and scripts whose ``environ`` is not the process environment)."""
        values = self.values_from_env(environ)
        if plain:
            return self.resource(**values)
        return self.resource(**{key: dg.EnvVar(self.setting(key).var) for key in values})

    def values_from_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Key -> value of every variable set in ``environ`` (plain values)."""
        return {self.key(s): environ[s.var] for s in self.settings if environ.get(s.var)}

    def provider_from_env(
        self,
        environ: Mapping[str, str],
        *,
        policy: RetryPolicy | None = None,
        overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Provider:
        """A provider outside Dagster (tests, benchmark, scripts), its settings read from
        ``environ`` as plain values, then ``overrides`` by key; validated like in a run.
        ``kwargs`` go to the provider class (e.g. a test clock)."""
        resource = self.resource(**{**self.values_from_env(environ), **(overrides or {})})
        return self.provider(resource, policy=policy, **kwargs)

    def missing_variables(self, environ: Mapping[str, str]) -> list[str]:
        return [s.var for s in self.settings if s.required and not environ.get(s.var)]

    def is_configured(self, environ: Mapping[str, str]) -> bool:
        """All required variables are set (CONTRACT.md section 3)."""
        return not self.missing_variables(environ)

    def problems(self) -> list[str]:
        """What is incomplete or inconsistent in this spec (empty when it is complete)."""
        out = []
        if not self.name.isidentifier() or self.name != self.name.lower():
            out.append(f"name {self.name!r} is not a lowercase identifier")
        if self.asset_name != f"{self.name}_feedback":
            out.append(f"asset_name {self.asset_name!r} is not {self.name}_feedback (CONTRACT.md section 2)")
        if not self.description.strip():
            out.append("no description")
        out += [f"{s.var} does not start with {self.prefix}" for s in self.settings if not s.var.startswith(self.prefix)]
        out += [f"{s.var} is required and has a default" for s in self.settings if s.required and s.default is not None]
        if not any(s.secret for s in self.settings):
            out.append("no secret setting (how does it authenticate?)")
        if self.account not in self.by_key:
            out.append(f"account {self.account!r} is not a setting key")
        out += [f"status {k!r} maps to {v!r}, not a unified status" for k, v in self.statuses.items() if v not in UNIFIED_STATUSES]
        out += [f"no hint for HTTP {code}" for code in (401, 403, 404) if code not in self.hints]
        if self.page_size is not None and self.page_size < 1:
            out.append("page_size must be positive or None")
        if self.request_budget is not None and (self.request_budget.limit < 1 or self.request_budget.window.total_seconds() <= 0):
            out.append("request_budget must allow at least one request in a positive window")
        if self.concurrent_windows < 1:
            out.append("concurrent_windows must be at least 1")
        if self.reread_interval is not None and self.request_budget is None:
            out.append("reread_interval paces a request budget: set request_budget too")
        return out
