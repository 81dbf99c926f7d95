"""The ``feedback_dashboard`` asset: where it sits in the graph, and that the ingest job redraws
the file in the same run whenever the run changed data (and leaves it when nothing changed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from feedback_pipeline.providers import asset_names
from feedback_pipeline.dashboard import ASSET_NAME, DEFAULT_DASHBOARD, REFRESH_JOB, SENSOR_NAME
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG

UTC = timezone.utc
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
KEY = dg.AssetKey(ASSET_NAME)


def test_the_dashboard_is_unpartitioned_and_downstream_of_every_provider_asset():
    defs = build_definitions({})
    graph = defs.resolve_asset_graph()
    assert graph.get(KEY).parent_keys == {dg.AssetKey(name) for name in asset_names().values()}
    assert graph.get(KEY).partitions_def is None
    job = defs.resolve_job_def("feedback_ingest")
    assert KEY in job.asset_layer.executable_asset_keys  # taken in by the job's .downstream() selection
    assert defs.resolve_assets_def(ASSET_NAME).required_resource_keys >= {"pipeline", "dashboard"}


def test_the_file_defaults_to_data_dashboard_html_and_follows_feedback_dashboard(tmp_path: Path):
    assert DEFAULT_DASHBOARD == "data/dashboard.html"
    defs = build_definitions({"FEEDBACK_DASHBOARD": str(tmp_path / "d.html")})
    assert isinstance(defs.resources["dashboard"].path, dg.EnvVar)  # resolved at run time, like FEEDBACK_DB
    assert build_definitions({}).resources["dashboard"].path == DEFAULT_DASHBOARD


@pytest.fixture
def ingest(sandbox, tmp_path: Path, monkeypatch):
    """Runs ``feedback_ingest`` over the last three days against the sandbox; returns a function
    giving the dashboard's materialization metadata of each run."""
    today = datetime.now(UTC).date()
    env = {
        **sandbox.env(),
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_DASHBOARD": str(tmp_path / "out" / "dashboard.html"),
        "FEEDBACK_START_DATE": (today - timedelta(days=29)).isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    job = build_definitions(env).resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()

    def run() -> dict:
        result = job.execute_in_process(
            instance=instance,
            tags={RANGE_START_TAG: (today - timedelta(days=2)).isoformat(), RANGE_END_TAG: today.isoformat()},
            run_config=QUIET,
        )
        [event] = result.asset_materializations_for_node(ASSET_NAME)
        assert event.partition is None  # one unpartitioned materialization in the partitioned run
        return {k: v.value for k, v in event.metadata.items()}

    run.path = Path(env["FEEDBACK_DASHBOARD"])  # type: ignore[attr-defined]
    return run


def test_each_run_that_changed_data_redraws_the_file_in_the_same_run(ingest, sandbox):
    first = ingest()
    path = ingest.path
    assert first["redrawn"] is True and Path(first["dashboard"]) == path.resolve() and path.exists()
    assert first["open_in_browser"] == path.resolve().as_uri()
    assert "| mapbox | sandbox-org |" in first["summary"] and "feedback rows" in first["summary"]
    drawn = path.read_bytes()

    unchanged = ingest()  # the providers changed nothing: no publish, so nothing to redraw
    assert unchanged["redrawn"] is False and unchanged["snapshot"] == first["snapshot"]
    assert "Unchanged" in unchanged["summary"] and path.read_bytes() == drawn

    sandbox.sandbox.touch("mapbox", 1.0, changes={"status": "out_of_scope"})
    changed = ingest()
    assert changed["redrawn"] is True and changed["snapshot"] != first["snapshot"]
    assert path.read_bytes() != drawn


def test_after_a_run_that_failed_part_way_the_sensor_requests_a_redraw(sandbox, tmp_path: Path, monkeypatch):
    today = datetime.now(UTC).date()
    out = tmp_path / "dashboard.html"
    env = {
        **sandbox.env(),
        "MAPBOX_ACCESS_TOKEN": "pk.not-a-valid-token",  # Mapbox fails at once (401); the others commit
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_DASHBOARD": str(out),
        "FEEDBACK_START_DATE": (today - timedelta(days=29)).isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(env)
    instance = dg.DagsterInstance.ephemeral()
    tags = {RANGE_START_TAG: today.isoformat(), RANGE_END_TAG: today.isoformat()}
    failed = defs.resolve_job_def("feedback_ingest").execute_in_process(instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)
    assert not failed.success and not out.exists()  # the dashboard step never ran
    # yet the others changed data
    assert any(e.asset_key == dg.AssetKey("formbricks_feedback") for e in failed.get_asset_materialization_events())

    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    context = dg.build_run_status_sensor_context(SENSOR_NAME, failure, instance, failed.dagster_run).for_run_failure()
    request = sensor(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == f"after-{failed.run_id}"

    redraw = defs.resolve_job_def(REFRESH_JOB).execute_in_process(instance=instance, run_config=QUIET)
    assert redraw.success and out.exists()
    assert "formbricks" in out.read_text(encoding="utf-8")


def test_a_failed_run_that_changed_nothing_asks_for_no_redraw(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FEEDBACK_DB", str(tmp_path / "feedback.duckdb"))
    defs = build_definitions({"FEEDBACK_DB": str(tmp_path / "feedback.duckdb")})  # no provider configured: every step fails
    instance = dg.DagsterInstance.ephemeral()
    today = datetime.now(UTC).date().isoformat()
    failed = defs.resolve_job_def("feedback_ingest").execute_in_process(
        instance=instance, tags={RANGE_START_TAG: today, RANGE_END_TAG: today}, run_config=QUIET, raise_on_error=False
    )
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    context = dg.build_run_status_sensor_context(SENSOR_NAME, failure, instance, failed.dagster_run).for_run_failure()
    assert isinstance(defs.resolve_sensor_def(SENSOR_NAME)(context), dg.SkipReason)
