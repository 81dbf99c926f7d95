"""Redraw the dashboard after a run that failed part-way but still changed data.

Dagster does not run the steps downstream of a failed step, so when one provider fails, the
``feedback_dashboard`` step of that run never starts, although what was committed was published:
the other providers' rows, and the pages a failed account fetched before it stopped (a run
stopped by its request budget publishes them without materializing anything). The sensor
``feedback_dashboard_after_failure`` sees such a run (one the step tagged ``feedback/published``,
or one that materialized a provider asset) and requests one run of the job
``feedback_dashboard_refresh``, which redraws the file (or leaves it, if the snapshot did not
change after all). It runs in the daemon (``make ui`` starts one), is on by default since it only
reacts to failures, and requests at most one run per failed run (the run key).
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at runtime.
from collections.abc import Sequence

import dagster as dg

from ..settings import PUBLISHED_TAG
from .asset import ASSET_NAME

SENSOR_NAME = "feedback_dashboard_after_failure"
REFRESH_JOB = "feedback_dashboard_refresh"


def build_dashboard_refresh_sensor(upstream: Sequence[dg.AssetKey | str]) -> dg.SensorDefinition:
    """The failure sensor that requests the job ``feedback_dashboard_refresh`` (only the
    dashboard) after a failed run that materialized any of ``upstream`` (the provider assets).
    The job comes with the sensor: ``Definitions`` takes in the jobs its sensors target."""
    providers = {dg.AssetKey.from_coercible(key) for key in upstream}
    job = dg.define_asset_job(
        REFRESH_JOB,
        selection=dg.AssetSelection.assets(ASSET_NAME),
        description="Redraw the feedback dashboard from the snapshot (requested after a run that failed part-way).",
    )

    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        request_job=job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After a run that failed but materialized a provider asset (so the snapshot may have changed), redraw the dashboard.",
    )
    def feedback_dashboard_after_failure(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        if run.job_name == REFRESH_JOB:
            return dg.SkipReason("the dashboard's own refresh failed; not retrying it")
        if run.tags.get(PUBLISHED_TAG) != "true":
            records = context.instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000).records
            if not any(r.asset_key in providers for r in records):
                return dg.SkipReason(f"run {run.run_id} published nothing and materialized no provider asset: nothing new to draw")
        return dg.RunRequest(run_key=f"after-{run.run_id}")

    return feedback_dashboard_after_failure
