"""The Iceberg copy through the real ``feedback_ingest`` job: after a backfill, an incremental run
with changes and a full refresh with deletions, a pyiceberg reader sees ``feedback`` row for row,
and each run that changed rows made exactly one snapshot carrying its run id."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.lake import LakeSettings
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG
from feedback_pipeline.schema import FEEDBACK_COLUMNS
from feedback_pipeline.settings import FULL_REFRESH_TAG

pytest.importorskip("pyiceberg")  # the `lake` extra, which `make install` includes

from feedback_pipeline.lake.table import TABLE, open_catalog  # noqa: E402

from .test_lake import lake_rows  # noqa: E402 - what a reader on another engine sees
from .conftest import job_environment  # noqa: E402

UTC = timezone.utc
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
COLUMNS = ", ".join(name for name, _, _ in FEEDBACK_COLUMNS)
ORDER = "provider, account_id, feedback_id"


@pytest.fixture
def lake_run(sandbox, tmp_path: Path, monkeypatch):
    today = datetime.now(UTC).date()
    three = {k: v for k, v in sandbox.env().items() if k.startswith(("MAPBOX", "FEEDBACKKIT", "FORMBRICKS"))}
    env = job_environment(monkeypatch, three, tmp_path / "feedback.duckdb", FEEDBACK_LAKE_WAREHOUSE=str(tmp_path / "lake"))
    job = build_definitions(env).resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()

    def run(first, last, **tags) -> dg.ExecuteInProcessResult:
        result = job.execute_in_process(
            instance=instance, tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat(), **tags}, run_config=QUIET
        )
        assert result.success
        return result

    run.today = today  # type: ignore[attr-defined]
    run.db = Path(env["FEEDBACK_DB"])  # type: ignore[attr-defined]
    run.settings = LakeSettings.from_env(env, db_path=env["FEEDBACK_DB"])  # type: ignore[attr-defined]
    return run


def feedback_rows(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {COLUMNS} FROM feedback ORDER BY {ORDER}").fetchall()
    finally:
        con.close()


def snapshots(settings: LakeSettings) -> list:
    return list(open_catalog(settings).load_table(TABLE).snapshots())


def test_the_iceberg_copy_equals_feedback_after_backfill_changes_and_a_full_refresh(lake_run, sandbox):
    first, today = lake_run.today - timedelta(days=9), lake_run.today
    backfill = lake_run(first, today)
    rows = feedback_rows(lake_run.db)
    assert len(rows) > 400 and lake_rows(lake_run.settings) == rows
    (snapshot,) = snapshots(lake_run.settings)
    assert snapshot.summary["feedback.run-id"] == backfill.run_id

    # Changes at the providers: the next run commits one more snapshot, rows equal again.
    sandbox.sandbox.touch("mapbox", 0.05, seed=3, changes={"status": "fixed"})
    changed = lake_run(first, today)
    assert feedback_rows(lake_run.db) != rows
    assert lake_rows(lake_run.settings) == feedback_rows(lake_run.db)
    assert len(snapshots(lake_run.settings)) == 2 and snapshots(lake_run.settings)[-1].summary["feedback.run-id"] == changed.run_id

    # A run that changes nothing makes no snapshot.
    lake_run(first, today)
    assert len(snapshots(lake_run.settings)) == 2

    # A record deleted at the provider leaves the copy with the full refresh that removes it.
    victim = next(r for r in feedback_rows(lake_run.db) if r[0] == "formbricks")[2]
    assert sandbox.sandbox.delete("formbricks", victim)
    lake_run(first, today, **{FULL_REFRESH_TAG: "true"})
    rows = feedback_rows(lake_run.db)
    assert victim not in {r[2] for r in rows if r[0] == "formbricks"}
    assert lake_rows(lake_run.settings) == rows
