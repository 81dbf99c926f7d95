"""Pipeline-wide settings from the environment, validated once with messages naming variables.

Provider credentials live with each provider (``providers/<name>.py``, read through ``EnvVar``);
this module holds what is shared: where the warehouse is, the first partition, the schedules'
lookback and reconcile ranges and the HTTP retry budget.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

import dagster as dg

from .http import RetryPolicy
from .providers.base import ConfigurationError

if TYPE_CHECKING:
    from .lake import LakeSettings

UTC = timezone.utc
DEFAULT_DB = "data/feedback.duckdb"
DEFAULT_START_DATE = "2024-01-01"
DEFAULT_LOOKBACK_DAYS = 7
DEFAULT_RECONCILE_DAYS = 90
FULL_REFRESH_TAG = "feedback/full_refresh"
# The providers a run covers, comma-separated (the runs list shows it).
PROVIDERS_TAG = "feedback/providers"
# Set on a run whose step published the analysts' snapshot (failed runs included: what was
# committed before the failure is published), so the dashboard's failure sensor redraws after it.
PUBLISHED_TAG = "feedback/published"


@dataclass(frozen=True)
class PipelineSettings:
    """The shared settings (see the README's configuration table)."""

    db_path: str
    start_date: date
    lookback_days: int
    reconcile_days: int = DEFAULT_RECONCILE_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "PipelineSettings":
        env = os.environ if environ is None else environ
        return cls(
            db_path=_db_path(env),
            start_date=_start_date(env),
            lookback_days=_int(env, "FEEDBACK_LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS, low=0, high=3650),
            # The weekly reconcile re-reads this many days (today included): at least one.
            reconcile_days=_int(env, "FEEDBACK_RECONCILE_DAYS", DEFAULT_RECONCILE_DAYS, low=1, high=3650),
        )


def _db_path(env: Mapping[str, str]) -> str:
    value = env.get("FEEDBACK_DB") or DEFAULT_DB
    if value.endswith(("/", os.sep)) or os.path.isdir(value):
        raise ConfigurationError(f"FEEDBACK_DB must be a file path such as data/feedback.duckdb, not a directory: {value!r}")
    return value


def _start_date(env: Mapping[str, str]) -> date:
    raw = env.get("FEEDBACK_START_DATE") or DEFAULT_START_DATE
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise ConfigurationError(f"FEEDBACK_START_DATE must be a date written YYYY-MM-DD; got {raw!r}") from None
    if value > datetime.now(UTC).date():
        raise ConfigurationError(f"FEEDBACK_START_DATE {raw} is in the future; the first partition must be today or earlier")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number between {low} and {high}; got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}; got {value}")
    return value


class PipelineResource(dg.ConfigurableResource):
    """Where the warehouse lives and how hard HTTP calls retry (not secret)."""

    db_path: str = DEFAULT_DB
    http_max_attempts: int = 6
    http_max_wait_seconds: float = 600.0
    http_base_delay_seconds: float = 1.0
    retry_after_floor_seconds: float = 1.0
    lock_timeout_seconds: float = 3600.0
    # The Iceberg copy (lake/): unset means none. The catalog URI may hold a database password.
    lake_warehouse: str | None = None
    lake_catalog_uri: str | None = None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.http_max_attempts,
            base_delay=self.http_base_delay_seconds,
            max_total_wait=self.http_max_wait_seconds,
            retry_after_floor=self.retry_after_floor_seconds,
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "PipelineResource":
        kwargs: dict[str, object] = {"db_path": dg.EnvVar("FEEDBACK_DB") if environ.get("FEEDBACK_DB") else DEFAULT_DB}
        if environ.get("FEEDBACK_HTTP_MAX_ATTEMPTS"):
            kwargs["http_max_attempts"] = _int(environ, "FEEDBACK_HTTP_MAX_ATTEMPTS", 6, low=1, high=100)
        if environ.get("FEEDBACK_HTTP_MAX_WAIT_SECONDS"):
            kwargs["http_max_wait_seconds"] = float(_int(environ, "FEEDBACK_HTTP_MAX_WAIT_SECONDS", 600, low=0, high=86_400))
        for field, var in (("lake_warehouse", "FEEDBACK_LAKE_WAREHOUSE"), ("lake_catalog_uri", "FEEDBACK_LAKE_CATALOG_URI")):
            if environ.get(var):
                kwargs[field] = dg.EnvVar(var)
        return cls(**kwargs)

    def lake_settings(self) -> "LakeSettings | None":
        """The Iceberg copy's settings, None when ``FEEDBACK_LAKE_WAREHOUSE`` is unset."""
        from .lake import LakeSettings

        values = {"FEEDBACK_LAKE_WAREHOUSE": self.lake_warehouse or "", "FEEDBACK_LAKE_CATALOG_URI": self.lake_catalog_uri or ""}
        return LakeSettings.from_env(values, db_path=self.db_path)
