"""The ``feedback_dashboard`` asset: where it sits in the graph, and that the ingest job redraws
the file in the same run whenever the run changed data (and leaves it when nothing changed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from feedback_pipeline.providers import asset_names
from feedback_pipeline.dashboard import ASSET_NAME, DEFAULT_DASHBOARD, REFRESH_JOB, SENSOR_NAME, early
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.dashboard.sensor import build_dashboard_refresh_sensor
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG
from feedback_pipeline.warehouse import Warehouse

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
    assert first["drawn_early"] is True  # started by the provider step once it had published
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


def test_the_warm_child_starts_only_in_a_run_whose_commits_change_the_warehouse(ingest, sandbox, monkeypatch):
    prepared: list[str] = []
    real = early.prepare
    monkeypatch.setattr(early, "prepare", lambda run_id, *args: (prepared.append(run_id), real(run_id, *args)))
    first = ingest()
    assert len(prepared) == 1 and first["redrawn"] and first["drawn_early"]
    assert early._WARM == {}  # told to go once the step had published, then taken by the dashboard step

    ingest()  # nothing changed: no child at all
    assert len(prepared) == 1

    sandbox.sandbox.touch("mapbox", 1.0, changes={"status": "out_of_scope"})
    changed = ingest()
    assert len(prepared) == 2 and changed["redrawn"] and early._WARM == {}


def test_a_run_without_the_dashboard_starts_no_drawing(sandbox, tmp_path: Path, monkeypatch):
    today = datetime.now(UTC).date()
    env = {**sandbox.env(), "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"), "FEEDBACK_DASHBOARD": str(tmp_path / "dashboard.html"),
           "FEEDBACK_START_DATE": (today - timedelta(days=29)).isoformat()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = []
    monkeypatch.setattr(early, "start", lambda *args, **kwargs: started.append(args))
    monkeypatch.setattr(early, "prepare", lambda *args, **kwargs: started.append(args))
    defs = build_definitions(env)
    # what `dagster asset materialize --select mapbox_feedback` runs
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("mapbox_feedback")})
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=today.isoformat(), run_config=QUIET)
    assert result.success and started == [] and not (tmp_path / "dashboard.html").exists()


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
    abandoned: list[str] = []
    real = early.abandon
    monkeypatch.setattr(early, "abandon", lambda run_id: (abandoned.append(run_id), real(run_id)))
    failed = defs.resolve_job_def("feedback_ingest").execute_in_process(instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)
    assert not failed.success and not out.exists()  # the dashboard step never ran
    assert early.take(failed.run_id) is None  # and the provider step, which failed, started no drawing
    assert abandoned == [failed.run_id] and failed.run_id not in early._WARM  # its warm child was stopped
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
    Warehouse(tmp_path / "feedback.duckdb").publish_if_behind()  # the snapshot exists and is current
    defs = build_definitions({"FEEDBACK_DB": str(tmp_path / "feedback.duckdb")})  # no provider configured: every step fails
    instance = dg.DagsterInstance.ephemeral()
    today = datetime.now(UTC).date().isoformat()
    failed = defs.resolve_job_def("feedback_ingest").execute_in_process(
        instance=instance, tags={RANGE_START_TAG: today, RANGE_END_TAG: today}, run_config=QUIET, raise_on_error=False
    )
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    context = dg.build_run_status_sensor_context(SENSOR_NAME, failure, instance, failed.dagster_run).for_run_failure()
    assert isinstance(defs.resolve_sensor_def(SENSOR_NAME)(context), dg.SkipReason)


def test_a_run_stopped_by_its_budget_after_publishing_pages_asks_for_a_redraw(sandbox, tmp_path: Path):
    # It materializes nothing (Mintlify did not finish), but the pages it committed were published.
    from feedback_pipeline.assets import build_feedback_assets
    from feedback_pipeline.budget import RateBudget
    from feedback_pipeline.partitions import feedback_partitions
    from feedback_pipeline.providers import asset_names
    from feedback_pipeline.settings import PipelineResource

    from .test_assets import published, resources, run

    today = datetime.now(UTC).date()
    assets = build_feedback_assets(feedback_partitions(today - timedelta(days=60)), budgets={"mintlify": RateBudget(2, timedelta(hours=1))})
    db = tmp_path / "f.duckdb"
    pipeline = PipelineResource(db_path=str(db), http_max_wait_seconds=0, http_base_delay_seconds=0.01, retry_after_floor_seconds=0.01, http_max_attempts=2)
    instance = dg.DagsterInstance.ephemeral()
    result = run(assets, resources(sandbox, db, pipeline=pipeline), today - timedelta(days=29), today, providers=("mintlify",), instance=instance, checks=False)
    assert not result.success and not result.get_asset_materialization_events()
    assert published(db, "SELECT count(*) FROM feedback WHERE provider = 'mintlify'")[0][0] > 0
    sensor = build_dashboard_refresh_sensor(list(asset_names().values()))
    context = dg.build_run_status_sensor_context(SENSOR_NAME, result.get_run_failure_event(), instance, instance.get_run_by_id(result.run_id)).for_run_failure()
    assert sensor(context) == dg.RunRequest(run_key=f"after-{result.run_id}")


# -- the drawing happens in a child process --------------------------------------------------------


def test_the_child_draws_the_same_result_and_the_run_process_never_loads_altair_or_vl_convert(mapbox_snapshot: Path, tmp_path: Path):
    import subprocess
    import sys

    out = tmp_path / "out" / "dashboard.html"
    script = (
        "import sys\n"
        "from feedback_pipeline.dashboard.build import build_dashboard_in_child\n"
        f"r = build_dashboard_in_child({str(mapbox_snapshot)!r}, {str(out)!r})\n"
        "from feedback_pipeline.dashboard.summary import summary_markdown\n"
        "print(r.written, r.key is not None, r.data is not None, '| mapbox | acct |' in summary_markdown(r))\n"
        "print(sorted(m for m in ('altair', 'vl_convert') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["True True True True", "[]"]
    assert out.exists() and "mapbox" in out.read_text(encoding="utf-8")


def test_an_unchanged_snapshot_starts_no_child(mapbox_snapshot: Path, tmp_path: Path, monkeypatch):
    from feedback_pipeline.dashboard import build as build_module

    out = tmp_path / "dashboard.html"
    assert build_module.build_dashboard_in_child(mapbox_snapshot, out).written

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(build_module.subprocess, "Popen", no_child)
    again = build_module.build_dashboard_in_child(mapbox_snapshot, out)
    assert again.written is False and again.data is None and again.key


def test_the_child_gets_the_paths_and_no_secret_of_the_run(mapbox_snapshot: Path, tmp_path: Path, monkeypatch):
    from feedback_pipeline.dashboard import build as build_module

    monkeypatch.setenv("MAPBOX_ACCESS_TOKEN", "pk.secret-token")
    monkeypatch.setenv("FEEDBACKKIT_API_KEY", "sf_secret")
    seen = {}
    real_popen = build_module.subprocess.Popen

    def spy(command, **kwargs):
        seen.update(command=command, env=kwargs["env"])
        return real_popen(command, **kwargs)

    monkeypatch.setattr(build_module.subprocess, "Popen", spy)
    assert build_module.build_dashboard_in_child(mapbox_snapshot, tmp_path / "d.html").written
    assert "MAPBOX_ACCESS_TOKEN" not in seen["env"] and "FEEDBACKKIT_API_KEY" not in seen["env"]
    assert not any("secret" in value for value in [*seen["env"].values(), *seen["command"]])
    assert set(seen["env"]) <= {*build_module.CHILD_VARIABLES, "PYTHONPATH"}
    assert str(mapbox_snapshot) in seen["command"] and str(tmp_path / "d.html") in seen["command"]


def test_a_build_failing_in_the_child_raises_its_exception_in_the_run(mapbox_snapshot: Path, tmp_path: Path):
    import duckdb

    from feedback_pipeline.dashboard.build import build_dashboard_in_child

    con = duckdb.connect(str(mapbox_snapshot))  # the parent's check still works; the child's queries fail
    con.execute("DROP VIEW feedback_status_funnel")
    con.close()
    with pytest.raises(duckdb.CatalogException, match="feedback_status_funnel"):
        build_dashboard_in_child(mapbox_snapshot, tmp_path / "dashboard.html")
    assert not (tmp_path / "dashboard.html").exists()


def test_a_child_that_dies_without_a_result_fails_with_what_it_said(mapbox_snapshot: Path, tmp_path: Path, monkeypatch):
    from feedback_pipeline.dashboard import build as build_module
    from feedback_pipeline.dashboard.build import DashboardChildError

    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\necho 'vl-convert: out of memory' >&2\nexit 3\n")
    crash.chmod(0o755)
    monkeypatch.setattr(build_module.sys, "executable", str(crash))
    with pytest.raises(DashboardChildError, match=r"exited with 3 .*vl-convert: out of memory"):
        build_module.build_dashboard_in_child(mapbox_snapshot, tmp_path / "d.html")


def test_the_asset_fails_with_the_childs_exception(sandbox, tmp_path: Path, monkeypatch):
    today = datetime.now(UTC).date()
    unwritable = Path("/proc") / f"no-such-folder-{tmp_path.name}"  # only the child's write fails (Linux)
    env = {
        **sandbox.env(),
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_DASHBOARD": str(unwritable / "dashboard.html"),
        "FEEDBACK_START_DATE": (today - timedelta(days=29)).isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = build_definitions(env).resolve_job_def("feedback_ingest").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags={RANGE_START_TAG: today.isoformat(), RANGE_END_TAG: today.isoformat()},
        run_config=QUIET, raise_on_error=False,
    )
    [failure] = [e for e in result.get_step_failure_events() if e.step_key == ASSET_NAME]
    error = failure.event_specific_data.error
    cause = error.cause  # Dagster wraps the exception the step raised
    assert cause.cls_name == "FileNotFoundError" and str(unwritable) in cause.message
    assert any(e.asset_key == dg.AssetKey("mapbox_feedback") for e in result.get_asset_materialization_events())
