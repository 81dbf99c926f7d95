"""feedback_resume: which unfinished queries get a run, over which window, and which wait."""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg

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
