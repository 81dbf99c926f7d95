"""feedback_resume: which unfinished queries get a run, over which window, and which wait."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg
import pytest

from feedback_pipeline.resume import ResumeState, Unfinished, busy_providers, plan_resumes

UTC = timezone.utc
NAMES = {"mintlify": "mintlify_feedback", "mapbox": "mapbox_feedback"}
NOW = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)


def unfinished(provider: str, key: str, first: str, last: str, minute: int = 0) -> Unfinished:
    return Unfinished(provider, "acct", key, date.fromisoformat(first), date.fromisoformat(last), datetime(2026, 12, 4, 15, minute, tzinfo=UTC))


def plan(state: ResumeState, busy: set[str] | None = None, now: datetime = NOW):
    return plan_resumes(state, asset_names=NAMES, busy_providers=busy or set(), min_room=10, now=now, full_refresh_tag="feedback/full_refresh", providers_tag="feedback/providers")


def test_an_unfinished_query_gets_one_run_over_exactly_its_window():
    state = ResumeState([unfinished("mapbox", "window:2026-01-01..2026-03-31", "2026-01-01", "2026-03-31")], {})
    (request,), waiting = plan(state)
    assert waiting == []
    assert request.asset_selection == [dg.AssetKey("mapbox_feedback")]
    assert request.tags["dagster/asset_partition_range_start"] == "2026-01-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-31"
    assert request.tags["feedback/providers"] == "mapbox"
    assert "feedback/full_refresh" not in request.tags


def test_a_query_of_an_account_no_longer_configured_is_not_resumed():
    # Its run would sync nothing and leave the cursor: the same request every hour, for ever.
    gone = Unfinished("mapbox", "old-proj", "window:2026-01-01..2026-01-31", date(2026, 1, 1), date(2026, 1, 31), NOW)
    state = ResumeState([gone, unfinished("mintlify", "window:2026-02-01..2026-02-28", "2026-02-01", "2026-02-28")], {})
    requests, waiting = plan_resumes(
        state, asset_names=NAMES, busy_providers=set(), min_room=10, now=NOW, full_refresh_tag="feedback/full_refresh",
        providers_tag="feedback/providers", accounts={"mapbox": {"acct"}, "mintlify": {"acct"}},
    )
    assert [r.tags["feedback/providers"] for r in requests] == ["mintlify"]
    assert waiting == ["mapbox/old-proj window:2026-01-01..2026-01-31: account no longer configured (`feedback-pipeline reset mapbox --account old-proj` forgets it)"]


def test_the_sensor_requests_no_run_for_a_cursor_of_an_account_removed_from_the_configuration(sandbox, tmp_path: Path):
    env = {**sandbox.env(), "FEEDBACK_DB": str(tmp_path / "f.duckdb")}
    day = date(2026, 1, 5)
    with Warehouse(env["FEEDBACK_DB"]).session() as session, session.cursor() as cursor:
        cursor.con.execute(
            "INSERT INTO pipeline_cursors (provider, account_id, query_key, first_day, last_day, started_at, resume, pages, updated_at) "
            "VALUES ('mapbox', 'old-proj', ?, ?, ?, now(), '{\"cursor\": \"x\"}', 1, now())",
            [f"window:{day}..{day}", day, day],
        )
    sensor = build_definitions(env).resolve_sensor_def("feedback_resume")
    result = sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral()))
    assert isinstance(result, dg.SkipReason) and "mapbox/old-proj" in result.skip_message and "no longer configured" in result.skip_message
    # A cursor of a configured account is resumed, and the run draws the dashboard too.
    with Warehouse(env["FEEDBACK_DB"]).session() as session, session.cursor() as cursor:
        cursor.con.execute("UPDATE pipeline_cursors SET account_id = ?", [sandbox.env()["MAPBOX_ACCOUNT"]])
    (request,) = sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral())).run_requests
    assert request.asset_selection == [dg.AssetKey("mapbox_feedback"), dg.AssetKey("feedback_dashboard")]


def test_an_unfinished_full_refresh_is_resumed_as_a_full_refresh():
    state = ResumeState([unfinished("mapbox", "refresh:2026-01-01..2026-01-31", "2026-01-01", "2026-01-31")], {})
    (request,), _ = plan(state)
    assert request.tags["feedback/full_refresh"] == "true"


def test_a_provider_without_budget_room_or_with_a_run_in_progress_waits():
    state = ResumeState([unfinished("mintlify", "window:a", "2026-01-01", "2026-01-02"), unfinished("mapbox", "window:b", "2026-01-01", "2026-01-02")], {"mintlify": 3})
    requests, waiting = plan(state, busy={"mapbox"})
    assert requests == []
    assert any("mintlify" in w and "3 request(s) of room" in w for w in waiting)
    assert any("mapbox" in w and "queued or in progress" in w for w in waiting)
    requests, _ = plan(ResumeState(state.unfinished, {"mintlify": 40}))
    assert {r.tags["feedback/providers"] for r in requests} == {"mintlify", "mapbox"}


def test_one_resume_run_per_provider_at_a_time():
    state = ResumeState([unfinished("mapbox", "window:a", "2026-01-01", "2026-01-31"), unfinished("mapbox", "window:b", "2026-02-01", "2026-02-28")], {})
    requests, waiting = plan(state)
    assert len(requests) == 1 and requests[0].tags["dagster/asset_partition_range_start"] == "2026-01-01"
    assert len(waiting) == 1


def test_the_run_key_changes_with_progress_and_with_the_hour_but_not_within_it():
    state = ResumeState([unfinished("mapbox", "window:a", "2026-01-01", "2026-01-31", minute=5)], {})
    key = plan(state)[0][0].run_key
    assert plan(state, now=NOW.replace(minute=59))[0][0].run_key == key
    assert plan(state, now=NOW.replace(hour=16))[0][0].run_key != key
    moved = ResumeState([unfinished("mapbox", "window:a", "2026-01-01", "2026-01-31", minute=6)], {})
    assert plan(moved)[0][0].run_key != key


def test_busy_providers_come_from_in_progress_runs_tags_or_selection():
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset(name="mapbox_feedback")
    def mapbox_feedback() -> None: ...

    @dg.asset(name="mintlify_feedback")
    def mintlify_feedback() -> None: ...

    defs = dg.Definitions(assets=[mapbox_feedback, mintlify_feedback])
    job = defs.resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job, asset_selection=frozenset({dg.AssetKey("mapbox_feedback")}))
    # The run stays NOT_STARTED: in progress as far as the sensor is concerned.
    assert busy_providers(instance, NAMES, "feedback/providers") == {"mapbox"}
    instance.add_run_tags(run.run_id, {"feedback/providers": "mintlify,mapbox"})
    assert busy_providers(instance, NAMES, "feedback/providers") == {"mintlify", "mapbox"}


# -- the sensor driving a backfill larger than the budget to its end -----------------------------

import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from feedback_pipeline.definitions import build_definitions  # noqa: E402
from feedback_pipeline.resume import ACCOUNT_TAG, read_resume_state  # noqa: E402
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG  # noqa: E402
from feedback_pipeline.warehouse import Warehouse  # noqa: E402

from feedback_pipeline.providers import provider_from_env  # noqa: E402
from feedback_pipeline.sync import sync  # noqa: E402

from .conftest import FAST_RETRIES, make_sandbox, recent_window  # noqa: E402
from .test_budget import LIMIT, QUIET, WINDOW, assert_within_budget, budget_env  # noqa: E402


def test_a_backfill_larger_than_the_budget_completes_through_the_sensor(tmp_path: Path, monkeypatch):
    server = make_sandbox(("mintlify",), per_day=30)
    try:
        # What the backfill must end with: the sandbox's records, synced without any budget.
        with Warehouse(tmp_path / "expected" / "f.duckdb").session() as session, session.cursor() as cursor:
            sync(provider_from_env("mintlify", server.env(), policy=FAST_RETRIES), cursor, recent_window(30))
            want = cursor.query("SELECT feedback_id, body, status FROM feedback ORDER BY feedback_id")
        # Now the emulator enforces the budget (same data: no reset), with an empty request log.
        server.sandbox.state.mintlify_rate_limit = LIMIT
        server.sandbox.emulators["mintlify"].rate_window = WINDOW
        server.sandbox.state.clear_log()

        env = budget_env(server, tmp_path, monkeypatch, max_wait=0)  # never wait: stop and resume
        defs = build_definitions(env)
        job = defs.resolve_job_def("feedback_ingest")
        sensor = defs.resolve_sensor_def("feedback_resume")
        instance = dg.DagsterInstance.ephemeral()
        today = datetime.now(UTC).date()
        first = (today - timedelta(days=29)).isoformat()
        backfill = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("mintlify_feedback")], tags={RANGE_START_TAG: first, RANGE_END_TAG: today.isoformat()},
            run_config=QUIET, raise_on_error=False,
        )
        assert not backfill.success  # 900 records = 9+ pages; the budget allows LIMIT per run

        resumed = []
        for _ in range(200):  # a bound, not a timing: each pass either launches a run or waits for room
            state = read_resume_state(env["FEEDBACK_DB"], {})
            if state is not None and not state.unfinished:
                break
            data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
            if not data.run_requests:
                time.sleep(0.25)  # the budget has no room yet (or nothing to do)
                continue
            for request in data.run_requests:
                assert request.tags[RANGE_START_TAG] == first and request.tags[RANGE_END_TAG] == today.isoformat()
                assert request.tags[ACCOUNT_TAG] and request.asset_selection == [dg.AssetKey("mintlify_feedback"), dg.AssetKey("feedback_dashboard")]
                result = job.execute_in_process(
                    instance=instance, asset_selection=request.asset_selection, tags=request.tags, run_config=QUIET, raise_on_error=False
                )
                resumed.append(result)
        assert len(resumed) >= 2 and resumed[-1].success and not any(r.success for r in resumed[:-1])
        assert read_resume_state(env["FEEDBACK_DB"], {}) == ResumeState([], {})
        with Warehouse(env["FEEDBACK_DB"]).session() as session:
            got = session.query("SELECT feedback_id, body, status FROM feedback ORDER BY feedback_id")
        assert got == want
        assert_within_budget(server)
        # The last resumed run materialized the whole range (the UI shows those partitions done)
        # and drew the dashboard from what it published.
        marked = [e.asset_key for e in resumed[-1].get_asset_materialization_events()]
        assert marked.count(dg.AssetKey("mintlify_feedback")) == 30 and dg.AssetKey("feedback_dashboard") in marked
    finally:
        server.stop()


def test_the_sensor_skips_while_a_run_holds_the_working_database(tmp_path: Path):
    wh = Warehouse(tmp_path / "f.duckdb")
    with wh.session():
        assert read_resume_state(wh.path, {}, lock_timeout=0.1) is None
    assert read_resume_state(wh.path, {}) == ResumeState([], {})


def test_the_sensor_leaves_an_unfinished_erasure_to_the_next_run(tmp_path: Path, monkeypatch):
    import feedback_pipeline.warehouse.publish as publish

    wh = Warehouse(tmp_path / "f.duckdb")
    with wh.session():
        pass
    wh.files.erasing.touch()  # what an erase killed after its transaction leaves
    monkeypatch.setattr(publish, "rebuild", lambda *a, **k: pytest.fail("a sensor evaluation must stay quick"))
    assert read_resume_state(wh.path, {}) == ResumeState([], {})
    assert wh.files.erasing.exists()


@pytest.mark.parametrize("other_account_down", [True, False], ids=["other account behind", "other account done"])
def test_a_one_account_resume_run_marks_the_range_done_only_when_every_account_read_it(tmp_path: Path, monkeypatch, other_account_down: bool):
    import duckdb

    from feedback_pipeline.definitions import provider_budgets
    from feedback_pipeline.providers import asset_names
    from feedback_pipeline.resume import plan_resumes
    from feedback_pipeline.sandbox.core import Fault

    server = make_sandbox(accounts=2)
    try:
        today = datetime.now(timezone.utc).date()
        env = {
            **server.env(), **server.write_accounts_file(tmp_path / "accounts.yaml"),
            "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"), "FEEDBACK_DASHBOARD": str(tmp_path / "d.html"),
            "FEEDBACK_START_DATE": (today - timedelta(days=40)).isoformat(), "FEEDBACK_HTTP_MAX_ATTEMPTS": "1",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        job = build_definitions(env).resolve_job_def("feedback_ingest")
        tags = {RANGE_START_TAG: (today - timedelta(days=29)).isoformat(), RANGE_END_TAG: today.isoformat()}
        state = server.sandbox.state
        state.add_fault("mintlify", Fault("server_error", count=None, after=2, account=1))  # stops part-way: a cursor
        if other_account_down:
            state.add_fault("mintlify", Fault("server_error", count=None, after=0, account=2))
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        first = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=quiet, tags=tags, asset_selection=[dg.AssetKey("mintlify_feedback")])
        assert not first.success and not first.get_asset_materialization_events()
        state.clear_faults("mintlify")
        if other_account_down:
            state.add_fault("mintlify", Fault("server_error", count=None, after=0, account=2))
        requests, _ = plan_resumes(
            read_resume_state(env["FEEDBACK_DB"], provider_budgets(env)), asset_names=asset_names(), busy_providers=set(), min_room=10,
            now=datetime.now(timezone.utc), full_refresh_tag="feedback/full_refresh", providers_tag="feedback/providers",
        )
        (request,) = requests
        resumed = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=quiet, tags=request.tags, asset_selection=list(request.asset_selection))
        assert resumed.success
        marked = {e.partition for e in resumed.get_asset_materialization_events() if e.asset_key == dg.AssetKey("mintlify_feedback")}
        con = duckdb.connect(env["FEEDBACK_DB"], read_only=True)
        accounts = con.execute("SELECT count(DISTINCT account_id) FROM feedback WHERE provider = 'mintlify'").fetchone()[0]
        con.close()
        assert accounts == (1 if other_account_down else 2)
        assert len(marked) == (0 if other_account_down else 30)
    finally:
        server.stop()
