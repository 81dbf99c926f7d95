"""``make demo``: the whole product in one command, against the built-in sandbox.

Runs the real Dagster job twice (a 30-day backfill as one run, then the hourly schedule's
incremental run), prints progress per provider while it works, and ends with a summary, a
sample analyst query against ``FEEDBACK_DB`` and the path of the dashboard the job drew. Exits
non-zero, saying why, if anything failed.

When the sandbox serves several accounts per provider (``feedback-pipeline demo`` starts it with
two: two Mintlify projects, two Usersnap projects, two Hub tenants, ...), the demo declares
accounts 2..N in ``FEEDBACK_ACCOUNTS_FILE`` (written next to the database) and the summary has a
row per provider and account: requests from the sandbox's request log, rows from the warehouse.
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

from .accounts import ACCOUNTS_FILE_VAR
from .dashboard import DEFAULT_DASHBOARD
from .providers import get_spec, names
from .schedules import RANGE_END_TAG, RANGE_START_TAG, hourly_range
from .settings import PipelineSettings

UTC = timezone.utc
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
DEMO_ACCOUNTS_FILE = "demo-accounts.yaml"  # next to the demo's database

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


def _sandbox_accounts(server: Any) -> list[tuple[str, int, str]]:
    """``(provider, sandbox account number, account_id)`` of every account the sandbox serves."""
    out = []
    for name, emulator in server.sandbox.emulators.items():
        spec = get_spec(name)
        for account in emulator.accounts:
            account_id = emulator.settings(server.url, account).get(spec.account) or spec.setting(spec.account).default
            out.append((name, account, account_id))
    return out


def _requests_by_account(server: Any) -> dict[tuple[str, int], int]:
    """Requests the sandbox has logged so far, per provider and account."""
    state = server.sandbox.state
    return {(name, account): len(state.requests_for(name, account)) for name, account, _ in _sandbox_accounts(server)}


def _account_rows(server: Any, con: duckdb.DuckDBPyConnection, before: dict, after_backfill: dict, after_incremental: dict) -> list[tuple[Any, ...]]:
    """One summary row per provider and account: requests per run (from the sandbox's request
    counts ``before`` and after each run) and rows and rejects in the warehouse. Every account
    the sandbox serves is listed, synced or not."""
    served = {(provider, account_id): account for provider, account, account_id in _sandbox_accounts(server)}
    stored = dict.fromkeys(served, (0, 0))
    for provider, account_id, feedback, rejects in con.execute(
        """SELECT provider, account_id, sum(feedback)::BIGINT, sum(rejects)::BIGINT FROM (
               SELECT provider, account_id, count(*) AS feedback, 0 AS rejects FROM feedback GROUP BY ALL
               UNION ALL
               SELECT provider, account_id, 0, count(*) FROM feedback_rejects GROUP BY ALL)
           GROUP BY ALL"""
    ).fetchall():
        stored[(provider, account_id)] = (feedback, rejects)
    out = []
    for (provider, account_id), (feedback, rejects) in sorted(stored.items()):
        account = served.get((provider, account_id))
        key = (provider, account)
        backfill = after_backfill[key] - before[key] if account else "-"
        incremental = after_incremental[key] - after_backfill[key] if account else "-"
        out.append((provider, account_id, backfill, incremental, feedback, rejects))
    return out


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
    os.environ.pop(ACCOUNTS_FILE_VAR, None)  # the demo syncs the sandbox's accounts only
    accounts = server.sandbox.state.accounts
    if accounts > 1:
        env.update(server.write_accounts_file(db.with_name(DEMO_ACCOUNTS_FILE)))
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
    if accounts > 1:
        print(f"Accounts: {accounts} per provider; all but the first declared in {ACCOUNTS_FILE_VAR}={env[ACCOUNTS_FILE_VAR]}")
    print(f"\n[1/2] Backfill {first_day}..{today} for {', '.join(names())} as one run")
    requests_before = _requests_by_account(server)
    backfill = _run(job, instance, first_day.isoformat(), today.isoformat())
    requests_backfill = _requests_by_account(server)
    failures = _failures(backfill)
    inc_first, inc_last = hourly_range(today, settings.lookback_days, first_day)
    print(f"\n[2/2] Incremental run, as the hourly schedule would request it: {inc_first}..{inc_last}")
    incremental = _run(job, instance, inc_first.isoformat(), inc_last.isoformat())
    requests_incremental = _requests_by_account(server)
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
            print("\nPer provider and account (requests as the sandbox counted them)")
            print(_format_table(
                ["provider", "account_id", "backfill requests", "incr. requests", "rows in feedback", "rejects"],
                _account_rows(server, con, requests_before, requests_backfill, requests_incremental),
            ))
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
