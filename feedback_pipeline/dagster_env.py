"""Dagster's event-log settings for this project, read by Dagster from the process environment.

Why: a run over a partition range writes Dagster events per asset AND per partition. Two of
Dagster's environment switches cut that bookkeeping; they are read (``os.getenv``) by whichever
process writes the events, so they must be set in every process that does:

* ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``: run creation writes ONE
  ``ASSET_MATERIALIZATION_PLANNED`` event per asset holding the run's partition range, instead
  of one per asset and partition (1,825 events for a year of five assets). Runs are created by
  the process that launches them: the ``dagster`` CLI, the webserver (UI launches) and the
  daemon (schedule, backfills). The price, in Dagster 1.13's partition status cache: partitions
  of a *failed* multi-partition run are not painted "failed" (nor "in progress" while it runs)
  in the asset's partition bar; they keep their last status. The failure is still on the run,
  in the step's ``Failure`` naming the providers, in the alerts, and the unfinished queries in
  ``pipeline_cursors`` (which ``feedback_resume`` resumes); asset backfills find their failed
  partitions from the run's range tags, not from these events.
* ``DAGSTER_EVENT_BATCH_SIZE``: the per-partition materialization events of a range (one per
  asset and partition: Dagster's semantics, they mark each partition materialized) and the
  planned events are handed to the event log storage in batches. PostgreSQL storage writes a batch
  in one INSERT and updates the asset row once; Dagster's own SQLite storage stores them one by
  one, the project's (``dagster.yaml``: :mod:`feedback_pipeline.dagster_storage`) in one
  transaction per file.

Set here as defaults (an operator's own value wins): :func:`apply` runs when the definitions are
imported (the CLI, the code server and run workers all import them), and ``services.py`` passes
:func:`with_event_settings` to the webserver and the daemon, which never import the definitions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

EVENT_SETTINGS: Mapping[str, str] = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    # A year of one asset's partitions is 365 events: one batch per asset and run.
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set the defaults in ``environ`` (this process's environment) where unset."""
    for name, value in EVENT_SETTINGS.items():
        environ.setdefault(name, value)


def with_event_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the defaults where unset: the environment for a Dagster service process."""
    return {**EVENT_SETTINGS, **env}
