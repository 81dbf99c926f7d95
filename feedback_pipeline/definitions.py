"""Dagster definitions: the provider assets (one step), two jobs, the hourly schedule, resources.

Loaded by ``workspace.yaml`` and ``dagster ... -m feedback_pipeline.definitions``.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

from . import dagster_env
from .alerts import alert_definitions
from .assets import asset_key, build_feedback_assets
from .dashboard import DashboardResource, build_dashboard_asset, build_dashboard_refresh_sensor
from .partitions import feedback_partitions
from .providers import asset_names, configured, get_spec, names
from .schedules import build_hourly_schedule
from .settings import FULL_REFRESH_TAG, PROVIDERS_TAG, PipelineResource, PipelineSettings

# Dagster's event-log switches (one planned event per asset for a partition range, batched event
# writes) for the CLI, the code server and run workers, which all import this module: see dagster_env.
dagster_env.apply()

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
    assets = [build_feedback_assets(partitions), build_dashboard_asset(list(asset_names().values()))]
    resources: dict[str, object] = {name: get_spec(name).resource_from_env(env) for name in names()}
    resources["pipeline"] = PipelineResource.from_environment(env)
    resources["dashboard"] = DashboardResource.from_environment(env)

    # The jobs cover every configured provider; with none configured they cover all five, whose
    # part of the step then fails at once naming the variables to set.
    covered = list(configured(env) or names())
    # The jobs (and so the schedule) plan no checks: the step logs each provider's results itself.
    # A check a run plans but does not evaluate shows "Execution failed" when the run fails
    # (Dagster's AssetCheckExecutionRecord.resolve_status), and a partition range plans one check
    # row per partition; unplanned, a failed provider's checks keep their last real result.
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
    # A failed step keeps its run from drawing the dashboard: this sensor requests a redraw then.
    sensors = [build_dashboard_refresh_sensor(list(asset_names().values()))]
    core = dg.Definitions(
        assets=assets,
        jobs=[ingest, full_refresh],
        schedules=[schedule],
        sensors=sensors,
        resources=resources,
        # One executor for the jobs, `dagster asset materialize` and UI launches alike: the run is
        # one step (the providers run in threads inside it), so a subprocess per step would only
        # add an interpreter start and a second import of Dagster and the pipeline.
        executor=dg.in_process_executor,
    )
    return dg.Definitions.merge(core, alert_definitions(env))


defs = build_definitions()
