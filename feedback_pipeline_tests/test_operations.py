"""Operating semantics through the real ``feedback_ingest`` job and all five providers:
backfill then cheap hourly runs, change detection, resume after an outage, full refresh,
and an analyst holding FEEDBACK_DB open during a run."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from feedback_pipeline.assets import metadata_by_provider
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG
from feedback_pipeline.providers import names
from feedback_pipeline.settings import FULL_REFRESH_TAG

PROVIDERS = names()

UTC = timezone.utc
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture
def pipeline(sandbox, tmp_path: Path, monkeypatch):
    """Environment pointing every provider at the sandbox; returns a function running the job."""
    today = datetime.now(UTC).date()
    env = {
        **sandbox.env(),
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_DASHBOARD": str(tmp_path / "dashboard.html"),  # the job redraws it; keep it out of the checkout
        "FEEDBACK_START_DATE": (today - timedelta(days=29)).isoformat(),
        "FEEDBACK_HTTP_MAX_ATTEMPTS": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(env)
    job = defs.resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()

    def run(first, last, **tags) -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            instance=instance,
            tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat(), **tags},
            run_config=QUIET,
            raise_on_error=False,
        )

    run.db = Path(env["FEEDBACK_DB"])  # type: ignore[attr-defined]
    run.today = today  # type: ignore[attr-defined]
    run.defs = defs  # type: ignore[attr-defined]
    return run


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return metadata_by_provider(result)


def snapshot(db: Path, sql: str = "SELECT * FROM feedback ORDER BY provider, feedback_id") -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def hourly_request(defs: dg.Definitions, tick: datetime) -> dg.RunRequest:
    schedule = defs.resolve_schedule_def("feedback_ingest_hourly")
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        return schedule.evaluate_tick(context).run_requests[0]


def test_backfill_then_an_hourly_run_with_nothing_new_costs_one_or_two_requests(pipeline, sandbox):
    backfill = pipeline(pipeline.today - timedelta(days=29), pipeline.today)
    assert backfill.success
    rows = snapshot(pipeline.db)
    assert {r[0] for r in rows} == set(PROVIDERS) and len(rows) > 2900
    request = hourly_request(pipeline.defs, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    sandbox.sandbox.state.clear_log()
    hourly = pipeline(
        datetime.fromisoformat(request.tags[RANGE_START_TAG]).date(), datetime.fromisoformat(request.tags[RANGE_END_TAG]).date()
    )
    assert hourly.success
    per_provider = {name: len(sandbox.sandbox.state.requests_for(name)) for name in PROVIDERS}
    assert all(n <= 2 for n in per_provider.values()), per_provider
    meta = metadata(hourly)
    assert all(m["rows_inserted"] == 0 and m["rows_updated"] == 0 for m in meta.values()), meta
    assert snapshot(pipeline.db) == rows  # ingested_at included


def test_added_records_and_status_changes_are_caught_by_the_next_hourly_run(pipeline, sandbox):
    first = pipeline.today - timedelta(days=7)
    assert pipeline(first, pipeline.today).success
    changes = {
        "mapbox": {"status": "fixed"},
        "usersnap": {"status_type": "done"},
        "feedbackkit": {"status": "completed"},
        "mintlify": {"status": "resolved"},
    }
    changed_ids = {}
    for provider, change in changes.items():
        store = sandbox.sandbox.emulators[provider].store
        stored = {r[2] for r in snapshot(pipeline.db) if r[0] == provider}
        field, value = next(iter(change.items()))
        candidates = [rid for rid in sorted(store.records) if rid in stored and store.records[rid].get(field) != value]
        changed_ids[provider] = candidates[:3]
        for rid in changed_ids[provider]:
            sandbox.sandbox.update(provider, rid, change)
    sandbox.sandbox.state.clear_log()
    result = pipeline(first, pipeline.today)
    assert result.success
    meta = metadata(result)
    for provider in changes:
        assert meta[provider]["rows_updated"] == 3, (provider, meta[provider])
    statuses = {(r[0], r[2]): r[6] for r in snapshot(pipeline.db)}
    assert all(statuses[(p, rid)] == "resolved" for p in changes for rid in changed_ids[p])
    # Only changes were asked for where the API can tell (one request each).
    for provider in ("mapbox", "usersnap", "formbricks", "feedbackkit"):
        assert len(sandbox.sandbox.state.requests_for(provider)) == 1, provider


def test_an_outage_then_a_rerun_resumes_and_ends_with_the_same_table(pipeline, sandbox, tmp_path: Path):
    first = pipeline.today - timedelta(days=29)
    sandbox.sandbox.state.add_fault("mintlify", Fault(kind="server_error", after=3, count=None, status=503))
    failed = pipeline(first, pipeline.today)
    assert not failed.success
    assert {m for m in metadata(failed)} == set(PROVIDERS) - {"mintlify"}  # the others still landed
    kept = snapshot(pipeline.db, "SELECT count(*) FROM feedback WHERE provider = 'mintlify'")[0][0]
    assert kept >= 290  # three pages of 100 (minus rejects) were committed with their cursor
    sandbox.sandbox.state.clear_faults()
    sandbox.sandbox.state.clear_log()
    rerun = pipeline(first, pipeline.today)
    assert rerun.success
    assert len(sandbox.sandbox.state.requests_for("mintlify")) == 3  # 600 records: pages 4-6 only
    assert metadata(rerun)["mintlify"]["resumed_queries"] != "none"
    resumed_table = snapshot(pipeline.db)
    reference = pipeline(first, pipeline.today, **{FULL_REFRESH_TAG: "true"})
    assert reference.success
    assert [r[:-1] for r in snapshot(pipeline.db)] == [r[:-1] for r in resumed_table]


def test_a_full_refresh_makes_deleted_records_disappear(pipeline, sandbox):
    first = pipeline.today - timedelta(days=5)
    assert pipeline(first, pipeline.today).success
    victims = {}
    for provider in PROVIDERS:
        ids = sorted(r[2] for r in snapshot(pipeline.db) if r[0] == provider)
        victims[provider] = ids[0]
        sandbox.sandbox.delete(provider, ids[0])
    result = pipeline(first, pipeline.today, **{FULL_REFRESH_TAG: "true"})
    assert result.success
    stored = {(r[0], r[2]) for r in snapshot(pipeline.db)}
    assert not any((p, rid) in stored for p, rid in victims.items())
    assert all(m["rows_deleted"] == 1 for m in metadata(result).values())


def _analyst(path: str, ready, done, out) -> None:
    con = duckdb.connect(path, read_only=True)
    count = con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    ready.set()
    done.wait(120)
    out.put((count, con.execute("SELECT count(*) FROM feedback").fetchone()[0]))
    con.close()


def test_an_analyst_holding_feedback_db_open_never_blocks_a_run(pipeline, sandbox):
    assert pipeline(pipeline.today - timedelta(days=3), pipeline.today).success
    before = snapshot(pipeline.db, "SELECT count(*) FROM feedback")[0][0]
    ctx = multiprocessing.get_context("spawn")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    analyst = ctx.Process(target=_analyst, args=(str(pipeline.db), ready, done, out))
    analyst.start()
    try:
        assert ready.wait(60)
        result = pipeline(pipeline.today - timedelta(days=20), pipeline.today)
        assert result.success
    finally:
        done.set()
        analyst.join(60)
    assert out.get(timeout=5) == (before, before)  # the open session kept working, unchanged
    assert snapshot(pipeline.db, "SELECT count(*) FROM feedback")[0][0] > before  # a new one sees the run
