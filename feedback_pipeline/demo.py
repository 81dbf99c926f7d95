"""``make demo``: the whole product in one command, against the built-in sandbox.

Runs the real Dagster job twice (a 30-day backfill as one run, then the hourly schedule's
incremental run), prints progress per provider while it works, and ends with a summary, a
sample analyst query against ``FEEDBACK_DB`` and the path of the dashboard the job drew. Exits
non-zero, saying why, if anything failed.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from .dashboard import DEFAULT_DASHBOARD
from .providers import names
from .schedules import RANGE_END_TAG, RANGE_START_TAG, hourly_range
from .settings import PipelineSettings

UTC = timezone.utc
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

SAMPLE_QUERY = """\
SELECT provider,
       count(*)                                             AS feedback,
       count(*) FILTER (WHERE status = 'open')              AS open,
       count(*) FILTER (WHERE status = 'resolved')          AS resolved,
       round(avg(rating), 2)                                AS avg_rating,
       max(collected_at)                                    AS latest
FROM feedback
WHERE collected_date >= current_date - INTERVAL 7 DAY
GROUP BY provider
ORDER BY feedback DESC"""


class _Progress(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        print(f"    {record.getMessage()}", flush=True)


def _format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        return "" if value is None else str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in text]
    return "\n".join(out)


def _run(job: dg.JobDefinition, instance: dg.DagsterInstance, first: str, last: str) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
        run_config=QUIET_RUN_CONFIG,
        raise_on_error=False,
    )


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    reasons = []
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error
        message = error.cause.message if error.cause else error.message
        reasons.append(f"{event.step_key}: {message.strip()}")
    return reasons


def _step_summary(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    from .assets import metadata_by_provider

    return metadata_by_provider(result)


def run_demo(server: Any, *, db_path: str, days: int) -> int:
    """Backfill ``days`` days, run the hourly increment, print the summary. Returns the exit code."""
    started = time.monotonic()
    db = Path(db_path)
    for stale in (db, db.with_name(db.name + ".work"), db.with_name(db.name + ".work.wal"), db.with_name(db.name + ".wal")):
        if stale.exists():
            stale.unlink()  # the demo rebuilds its own database from the sandbox every time
    today = datetime.now(UTC).date()
    first_day = today - timedelta(days=days - 1)
    env = {**server.env(), "FEEDBACK_DB": str(db), "FEEDBACK_START_DATE": first_day.isoformat()}
    os.environ.update(env)  # EnvVar resolves from the process environment at run time

    from .definitions import build_definitions

    settings = PipelineSettings.from_env(os.environ)  # fails naming the variable, like a run
    defs = build_definitions(dict(os.environ))
    job = defs.resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()
    progress = logging.getLogger("feedback_pipeline.sync")
    progress.setLevel(logging.INFO)
    progress.addHandler(_Progress())
    progress.propagate = False

    print(f"Sandbox: {server.url}    Warehouse: {db}")
    print(f"\n[1/2] Backfill {first_day}..{today} for {', '.join(names())} as one run")
    backfill = _run(job, instance, first_day.isoformat(), today.isoformat())
    failures = _failures(backfill)
    inc_first, inc_last = hourly_range(today, settings.lookback_days, first_day)
    print(f"\n[2/2] Incremental run, as the hourly schedule would request it: {inc_first}..{inc_last}")
    incremental = _run(job, instance, inc_first.isoformat(), inc_last.isoformat())
    failures += _failures(incremental)

    steps_b, steps_i = _step_summary(backfill), _step_summary(incremental)
    print("\nPer provider")
    rows = []
    for name in names():
        b, i = steps_b.get(name, {}), steps_i.get(name, {})
        rows.append((
            name,
            b.get("rows_inserted", "-"), b.get("rows_rejected", "-"), b.get("requests", "-"), b.get("retries", "-"),
            i.get("requests", "-"), i.get("rows_inserted", "-"), i.get("rows_updated", "-"),
        ))
    print(_format_table(["provider", "backfill rows", "rejects", "requests", "retries", "incr. requests", "incr. new", "incr. updated"], rows))

    if db.exists():
        con = duckdb.connect(str(db), read_only=True)
        try:
            status_rows = con.execute(
                "SELECT provider, coalesce(status, '(none)') AS status, count(*) FROM feedback GROUP BY ALL ORDER BY 1, 2"
            ).fetchall()
            print("\nRows in feedback by provider and status")
            print(_format_table(["provider", "status", "rows"], status_rows))
            rejects = con.execute("SELECT provider, reason, count(*) FROM feedback_rejects GROUP BY ALL ORDER BY 1, 2").fetchall()
            print("\nRejected records (feedback_rejects)")
            print(_format_table(["provider", "reason", "records"], rejects) if rejects else "none")
            print("\nSample analyst query:\n")
            print("\n".join("    " + line for line in SAMPLE_QUERY.splitlines()))
            cursor = con.execute(SAMPLE_QUERY)
            print()
            print(_format_table([d[0] for d in cursor.description], cursor.fetchall()))
        finally:
            con.close()
    elapsed = time.monotonic() - started
    print(f"\nDone in {elapsed:.1f}s. Query it yourself: duckdb -readonly {db}")
    # The job's feedback_dashboard asset drew it from the snapshot after each run.
    dashboard = Path(os.environ.get("FEEDBACK_DASHBOARD") or DEFAULT_DASHBOARD).resolve()
    if dashboard.exists():
        print(f"Dashboard: {dashboard}  (open it in a browser: {dashboard.as_uri()})")
    if failures or not (backfill.success and incremental.success):
        print("\nDEMO FAILED:")
        for reason in failures or ["a run did not succeed"]:
            print(f"  - {reason}")
        return 1
    return 0
