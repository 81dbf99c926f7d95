"""Dagster definitions: the provider assets (one step), two jobs, the hourly and weekly schedules,
the resume sensor, resources (one per provider account).

Loaded by ``workspace.yaml`` and ``dagster ... -m feedback_pipeline.definitions``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from datetime import timedelta

import dagster as dg

from . import dagster_env
from .accounts import ACCOUNTS_FILE_VAR, Account, AccountsFileError, ProviderSettings, environment_account, load_accounts
from .alerts import alert_definitions
from .assets import asset_key, build_feedback_assets
from .budget import RateBudget
from .dashboard import ASSET_NAME as DASHBOARD_ASSET
from .dashboard import DashboardResource, build_dashboard_asset, build_dashboard_refresh_sensor
from .dashboard.asset import publish_hook as dashboard_publish_hook
from .memory import arrow_uses_malloc, limit_arenas
from .partitions import feedback_partitions
from .providers import asset_names, get_spec, names
from .providers.base import ConfigurationError
from .providers.spec import ProviderResource
from .resume import build_resume_sensor, read_resume_state
from .schedules import build_hourly_schedule, build_reconcile_schedule
from .settings import FULL_REFRESH_TAG, PROVIDERS_TAG, PipelineResource, PipelineSettings
from .collector import freeze_imports, skip_final_collection

# Test and operator knobs for a provider's request budget (documented in the README):
# FEEDBACK_<PROVIDER>_BUDGET_LIMIT requests per FEEDBACK_<PROVIDER>_BUDGET_WINDOW_SECONDS.
BUDGET_LIMIT_VAR = "FEEDBACK_{}_BUDGET_LIMIT"
BUDGET_WINDOW_VAR = "FEEDBACK_{}_BUDGET_WINDOW_SECONDS"

# Dagster's event-log switches (one planned event per asset for a partition range, batched event
# writes) for the CLI, the code server and run workers, which all import this module: see dagster_env.
dagster_env.apply()
# Every process that imports this module exits without the interpreter's final collections (collector.py).
skip_final_collection()
# The run worker's threads (Dagster's and the step's) share two malloc arenas (memory.limit_arenas),
# and Arrow's buffers live in them too (memory.arrow_uses_malloc).
limit_arenas()
arrow_uses_malloc()

# BackfillPolicy is marked beta in this Dagster release; we pin the release, so the warning is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(environ: dict[str, str] | None = None) -> dg.Definitions:
    """Everything, configured from ``environ`` (default: the process environment and .env)."""
    env = dict(os.environ if environ is None else environ)
    settings = PipelineSettings.from_env(env)
    partitions = feedback_partitions(settings.start_date)
    # The dashboard is unpartitioned and downstream of every provider asset, so the jobs'
    # `.downstream()` selection below takes it in and each run redraws it after the providers, in
    # that same run (Dagster allows unpartitioned assets in a partitioned asset job: see
    # dashboard/asset.py).
    accounts = provider_accounts(env)
    budgets = provider_budgets(env)
    # Each provider's accounts: `<provider>` (the plain variables', also when they are unset, so
    # an unconfigured provider fails naming them) and `<provider>__<n>` (the file's n-th).
    resources: dict[str, object] = {name: get_spec(name).resource_from_env(env) for name in names()}
    account_keys: dict[str, list[str]] = {}
    for name in names():
        keys = [name] if get_spec(name).is_configured(env) else []
        for n, account in enumerate((a for a in accounts if a.provider == name and a.source != "environment"), start=1):
            keys.append(f"{name}__{n}")
            resources[keys[-1]] = account_resource(account)
        account_keys[name] = keys or [name]
    assets = [
        build_feedback_assets(partitions, accounts=account_keys, budgets=budgets, after_publish=[dashboard_publish_hook()]),
        build_dashboard_asset(list(asset_names().values())),
    ]
    resources["pipeline"] = PipelineResource.from_environment(env)
    resources["dashboard"] = DashboardResource.from_environment(env)

    # The jobs cover every configured provider (one with at least one account); with none
    # configured they cover all five, whose part of the step then fails at once naming the
    # variables to set.
    covered = [name for name in names() if any(a.provider == name for a in accounts)] or list(names())
    # The jobs (and so the schedule) plan no checks: the step reports each provider's results
    # itself as one unplanned evaluation per check, so a range run writes five evaluations per
    # asset rather than one planned row per partition, and a failed provider's checks keep their
    # last real result. Asset launches, which do plan checks, get an evaluation per planned row
    # (assets.evaluations).
    selection = dg.AssetSelection.assets(*(asset_key(n) for n in covered)).downstream().without_checks()
    providers_tag = {PROVIDERS_TAG: ",".join(covered)}
    ingest = dg.define_asset_job(
        "feedback_ingest",
        selection=selection,
        partitions_def=partitions,
        tags=providers_tag,
        description="Materialize the feedback assets of every configured provider for a partition range, as one run.",
    )
    full_refresh = dg.define_asset_job(
        "feedback_full_refresh",
        selection=selection,
        partitions_def=partitions,
        tags={**providers_tag, FULL_REFRESH_TAG: "true"},
        description=(
            "Full refresh of a partition range: ignores stored cursors, re-reads every day of the range from each "
            "configured provider and replaces those partitions, so records deleted at the provider disappear. "
            "Pick a partition range when launching; it is one run."
        ),
    )
    schedule = build_hourly_schedule(ingest, lookback_days=settings.lookback_days, first_partition=settings.start_date, tags=providers_tag)
    reconcile = build_reconcile_schedule(full_refresh, reconcile_days=settings.reconcile_days, first_partition=settings.start_date, full_refresh_tag=FULL_REFRESH_TAG)
    # A failed step keeps its run from drawing the dashboard: this sensor requests a redraw then.
    sensors = [build_dashboard_refresh_sensor(list(asset_names().values()))]
    # Unfinished queries (budget spent, outage, kill) continue by themselves: runs of
    # feedback_ingest selecting the provider's asset over the query's window.
    sensors.append(
        build_resume_sensor(
            target=ingest,
            asset_names={name: asset_names()[name] for name in covered},
            read_state=lambda: read_resume_state(settings.db_path, budgets),
            min_room=min_room(budgets),
            full_refresh_tag=FULL_REFRESH_TAG,
            providers_tag=PROVIDERS_TAG,
            accounts={name: {a.account_id for a in accounts if a.provider == name} for name in covered},
            also_select=[dg.AssetKey(DASHBOARD_ASSET)],
        )
    )
    core = dg.Definitions(
        assets=assets,
        jobs=[ingest, full_refresh],
        schedules=[schedule, reconcile],
        sensors=sensors,
        resources=resources,
        # One executor for the jobs, `dagster asset materialize` and UI launches alike: the run is
        # one step (the providers run in threads inside it), so a subprocess per step would only
        # add an interpreter start and a second import of Dagster and the pipeline.
        executor=dg.in_process_executor,
    )
    secret_keys = [k for keys in account_keys.values() for k in keys]
    return dg.Definitions.merge(core, alert_definitions(env, secret_resource_keys=secret_keys))


def provider_accounts(env: Mapping[str, str]) -> list[Account]:
    """Every configured account: each provider's plain variables' one (when they are set), then
    the entries of ``FEEDBACK_ACCOUNTS_FILE``. A bad file fails here, naming file, entry and key;
    so does an entry whose ``{env: NAME}`` variable is unset (it would fail every run)."""
    specs = {name: ProviderSettings(get_spec(name).settings, get_spec(name).account) for name in names()}
    plain = [a for name in names() if (a := environment_account(name, specs[name], env)) is not None]
    path = env.get(ACCOUNTS_FILE_VAR)
    if not path:
        return plain
    extra = load_accounts(path, specs, env, existing=plain)
    for account in extra:
        for key, var in account.env_vars.items():
            if not env.get(var):
                raise AccountsFileError(f"{account.source}: key {key!r} reads variable {var}, which is not set")
    return plain + extra


def account_resource(account: Account) -> ProviderResource:
    """The Dagster resource of an accounts-file entry: ``EnvVar`` for every ``{env: NAME}`` (all
    secrets), the file's plain values for the rest (never a secret: the parser refuses inline ones)."""
    spec = get_spec(account.provider)
    values: dict[str, object] = {k: v for k, v in account.values.items() if v is not None and k not in account.env_vars}
    values.update({key: dg.EnvVar(var) for key, var in account.env_vars.items()})
    return spec.resource(**values)


def provider_budgets(env: Mapping[str, str]) -> dict[str, RateBudget]:
    """The request budgets the specs declare, with ``FEEDBACK_<PROVIDER>_BUDGET_LIMIT`` and
    ``FEEDBACK_<PROVIDER>_BUDGET_WINDOW_SECONDS`` overriding them (tests shorten the window; an
    operator whose plan allows more, or who shares the organization with other tools, sets them)."""
    budgets = {}
    for name in names():
        budget = get_spec(name).request_budget
        if budget is None:
            continue
        limit_var, window_var = BUDGET_LIMIT_VAR.format(name.upper()), BUDGET_WINDOW_VAR.format(name.upper())
        limit = _positive(env, limit_var, budget.limit)
        window = _positive(env, window_var, budget.window.total_seconds())
        budgets[name] = RateBudget(int(limit), timedelta(seconds=window), budget.margin)
    return budgets


def _positive(env: Mapping[str, str], var: str, default: float) -> float:
    raw = env.get(var)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{var} must be a positive number; got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{var} must be a positive number; got {raw!r}")
    return value


def min_room(budgets: Mapping[str, RateBudget]) -> int:
    """The room ``feedback_resume`` waits for before resuming a provider with a budget: a tenth
    of the smallest limit (10 of Mintlify's 100), at least one request."""
    return max(1, min((b.limit for b in budgets.values()), default=10) // 10)


defs = build_definitions()
# Dagster, the libraries and the definitions live as long as the process: later full collections
# skip them (collector.py).
freeze_imports()
