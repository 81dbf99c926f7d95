"""The one provider step through Dagster: partitions and ranges into DuckDB, metadata, checks,
one provider failing while the others commit, the Failure's sentence, the run tag."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from feedback_pipeline.assets import build_feedback_assets
from feedback_pipeline.checks import CHECKS
from feedback_pipeline.partitions import feedback_partitions
from feedback_pipeline.providers import get_spec, names
from feedback_pipeline.sandbox.data import BAD_RECORD_NEWEST_AGE_DAYS
from feedback_pipeline.settings import FULL_REFRESH_TAG, PROVIDERS_TAG, PipelineResource

UTC = timezone.utc
PROVIDERS = names()
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture(scope="module")
def feedback_assets() -> dg.AssetsDefinition:
    return build_feedback_assets(feedback_partitions(today() - timedelta(days=60)))


def resources(sandbox, db: Path, **overrides) -> dict:
    env = sandbox.env()
    res: dict = {name: get_spec(name).resource_from_env(env, plain=True) for name in PROVIDERS}
    res["pipeline"] = PipelineResource(db_path=str(db), http_base_delay_seconds=0.01, retry_after_floor_seconds=0.01, http_max_attempts=2)
    res.update(overrides)
    return res


def run(assets_def, res, first: date, last: date, *, providers=("formbricks",), instance=None, checks=True, **tags) -> dg.ExecuteInProcessResult:
    selection = dg.AssetSelection.assets(*(f"{p}_feedback" for p in providers))
    return dg.materialize(
        [assets_def],
        selection=selection if checks else selection.without_checks(),
        resources=res,
        tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat(), **tags},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def published(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def metadata(result: dg.ExecuteInProcessResult, provider: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(f"{provider}_feedback")]
    assert events, f"no materialization of {provider}"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def checks_of(result: dg.ExecuteInProcessResult, provider: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(f"{provider}_feedback")}


def test_one_partition_materializes_into_duckdb(sandbox, tmp_path: Path, feedback_assets):
    db = tmp_path / "feedback.duckdb"
    day = today() - timedelta(days=3)
    result = dg.materialize(
        [feedback_assets], selection="formbricks_feedback", resources=resources(sandbox, db), partition_key=day.isoformat(), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert published(db, "SELECT DISTINCT collected_date, provider FROM feedback") == [(day, "formbricks")]


def test_a_range_is_one_run_and_rerunning_it_changes_nothing(sandbox, tmp_path: Path, feedback_assets):
    db = tmp_path / "feedback.duckdb"
    first, last = today() - timedelta(days=9), today()
    result = run(feedback_assets, resources(sandbox, db), first, last)
    assert result.success
    snapshot = published(db, "SELECT * FROM feedback ORDER BY feedback_id")
    assert len(snapshot) > 150 and {r[4] for r in snapshot} <= {first + timedelta(days=i) for i in range(10)}
    meta = metadata(result, "formbricks")
    assert meta["rows_inserted"] == len(snapshot) and meta["dagster/row_count"] == len(snapshot)
    again = run(feedback_assets, resources(sandbox, db), first, last)
    assert again.success
    assert published(db, "SELECT * FROM feedback ORDER BY feedback_id") == snapshot  # ingested_at included
    assert metadata(again, "formbricks")["rows_inserted"] == 0


def test_metadata_names_say_what_they_count_and_a_summary_comes_first(sandbox, tmp_path: Path, feedback_assets):
    result = run(feedback_assets, resources(sandbox, tmp_path / "f.duckdb"), today() - timedelta(days=4), today())
    meta = metadata(result, "formbricks")
    assert list(meta)[0] == "summary"
    assert meta["summary"].startswith(f"{meta['rows_inserted']} new, 0 updated, 0 unchanged, 0 deleted, {meta['rows_rejected']} rejected in ")
    assert meta["analyst_snapshot_published"] is True and "records_outside_window_skipped" in meta
    assert "published_snapshot" not in meta and "rows_outside_window" not in meta
    for key in ("window", "rows_updated", "rows_unchanged", "requests", "retries", "pages", "watermark", "duration_seconds"):
        assert key in meta
    # A run that normalized records reports the time it took, however small.
    assert meta["records_received"] > 0 and meta["seconds_normalizing"] > 0


def test_a_range_puts_the_full_metadata_on_its_last_partition_and_a_pointer_on_the_others(sandbox, tmp_path: Path, feedback_assets):
    first, last = today() - timedelta(days=4), today()
    result = run(feedback_assets, resources(sandbox, tmp_path / "f.duckdb"), first, last)
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("formbricks_feedback")]
    assert [e.partition for e in events] == [(first + timedelta(days=i)).isoformat() for i in range(5)]
    full = {k: v.value for k, v in events[-1].materialization.metadata.items()}
    assert "rows_inserted" in full and "accounts" in full and full["window"] == f"{first}..{last}"
    for event in events[:-1]:
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        assert set(meta) == {"summary", "window", "full_refresh"} and meta["window"] == full["window"]
        assert meta["summary"].startswith(full["summary"]) and f"full metadata is on partition {last}" in meta["summary"]


def test_checks_after_a_healthy_run_pass_and_speak_of_the_runs_window(sandbox, tmp_path: Path, feedback_assets):
    db = tmp_path / "f.duckdb"
    first, last = today() - timedelta(days=29), today()
    result = run(feedback_assets, resources(sandbox, db), first, last, providers=PROVIDERS)
    assert result.success
    for provider in PROVIDERS:
        checks = checks_of(result, provider)
        assert set(checks) == set(CHECKS), provider
        assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items()}
        rows = published(db, f"SELECT count(*) FROM feedback WHERE provider = '{provider}'")[0][0]
        assert checks["unique_keys"].metadata["window"].value == f"{first}..{last}"
        assert checks["unique_keys"].metadata["rows_in_window"].value == rows
        meta = metadata(result, provider)
        rate = checks["reject_rate"].metadata
        assert rate["records_rejected"].value == meta["rows_rejected"]
        assert rate["records_received_for_window"].value == meta["rows_inserted"] + meta["rows_rejected"]
        assert "FROM feedback_rejects" in rate["list_them"].value


def test_reject_rate_counts_only_this_runs_records_and_names_the_reasons(sandbox, tmp_path: Path, feedback_assets):
    db = tmp_path / "f.duckdb"
    run(feedback_assets, resources(sandbox, db), today() - timedelta(days=29), today(), providers=("mintlify",))
    stored = published(db, "SELECT count(*) FROM feedback_rejects WHERE provider = 'mintlify'")[0][0]
    # A later run over a day without a bad record: the rejects stored earlier do not count.
    day = today() - timedelta(days=2)  # the sandbox's bad records are 20 and more days old (data.bad_record_day)
    result = run(feedback_assets, resources(sandbox, db), day, day, providers=("mintlify",))
    rate = checks_of(result, "mintlify")["reject_rate"]
    assert stored >= 1 and rate.passed and rate.metadata["records_rejected"].value == 0
    assert rate.metadata["top_reasons"].value == "none"
    # The run over a bad record's day: counted, with its reason.
    day = today() - timedelta(days=BAD_RECORD_NEWEST_AGE_DAYS)
    result = run(feedback_assets, resources(sandbox, db), day, day, providers=("mintlify",))
    rate = checks_of(result, "mintlify")["reject_rate"]
    assert rate.metadata["records_rejected"].value == 1 and rate.metadata["top_reasons"].value == "missing_collected_at: 1"


def test_an_unconfigured_provider_fails_at_once_naming_the_variables(sandbox, tmp_path: Path, feedback_assets):
    res = resources(sandbox, tmp_path / "f.duckdb", formbricks=get_spec("formbricks").resource())
    result = run(feedback_assets, res, today(), today())
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "FORMBRICKS_HUB_URL" in message and "FORMBRICKS_HUB_API_KEY" in message and "FORMBRICKS_TENANT_ID" in message
    assert sandbox.sandbox.state.requests_for("formbricks") == []


def test_full_refresh_tag_replaces_the_partitions(sandbox, tmp_path: Path, feedback_assets):
    db = tmp_path / "feedback.duckdb"
    first, last = today() - timedelta(days=5), today()
    run(feedback_assets, resources(sandbox, db), first, last)
    victim = published(db, "SELECT feedback_id FROM feedback ORDER BY feedback_id LIMIT 1")[0][0]
    sandbox.sandbox.delete("formbricks", victim)
    result = run(feedback_assets, resources(sandbox, db), first, last, **{FULL_REFRESH_TAG: "true"})
    assert result.success
    assert metadata(result, "formbricks")["rows_deleted"] == 1
    assert not published(db, f"SELECT 1 FROM feedback WHERE feedback_id = '{victim}'")


# -- one provider failing ----------------------------------------------------------------------


@pytest.fixture
def refused_hub(sandbox, tmp_path: Path, feedback_assets):
    """A five-provider run in which the Hub refuses the key (HTTP 401)."""
    db = tmp_path / "f.duckdb"
    env = sandbox.env()
    hub = get_spec("formbricks").resource(hub_url=env["FORMBRICKS_HUB_URL"], hub_api_key="not-the-key", tenant_id=env["FORMBRICKS_TENANT_ID"])
    instance = dg.DagsterInstance.ephemeral()
    first = today() - timedelta(days=2)
    result = run(feedback_assets, resources(sandbox, db, formbricks=hub), first, today(), providers=PROVIDERS, instance=instance, checks=False)
    return result, db, instance


def test_one_provider_failing_leaves_the_others_committed_and_materialized(refused_hub):
    result, db, _ = refused_hub
    assert not result.success
    others = [p for p in PROVIDERS if p != "formbricks"]
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {f"{p}_feedback" for p in others}
    stored = dict(published(db, "SELECT provider, count(*) FROM feedback GROUP BY provider"))
    assert set(stored) == set(others) and all(n > 0 for n in stored.values())
    assert len(result.get_step_failure_events()) == 1


def test_the_failure_opens_with_the_projects_sentence_naming_only_the_failed_account(refused_hub):
    result, _, _ = refused_hub
    data = result.get_step_failure_events()[0].event_specific_data
    failure = data.user_failure_data
    first_line = failure.description.splitlines()[0]
    assert first_line.startswith("formbricks/tenant-sandbox: GET ") and "HTTP 401" in first_line and "check FORMBRICKS_HUB_API_KEY" in first_line
    assert "<html" not in failure.description.lower()
    assert all(p not in first_line for p in PROVIDERS if p != "formbricks")
    meta = {k: v.value for k, v in failure.metadata.items()}
    assert meta["failed_providers"] == "formbricks" and meta["provider"] == "formbricks" and meta["status"] == "401"
    assert meta["failed_accounts"] == "formbricks/tenant-sandbox" and meta["account_id"] == "tenant-sandbox"
    assert meta["endpoint"].startswith("GET ") and "FORMBRICKS_HUB_API_KEY" in meta["what_to_check"]
    # What Dagster shows as the error's message starts with that sentence.
    assert data.error.message.split(": ", 1)[1].startswith(first_line)


def test_checks_of_a_provider_that_failed_are_not_evaluated_never_failed(refused_hub):
    result, _, instance = refused_hub
    assert checks_of(result, "formbricks") == {}
    storage = instance.event_log_storage
    for name in CHECKS:
        # No planned check either: nothing for Dagster to resolve as "Execution failed".
        assert storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("formbricks_feedback"), name), limit=5) == []
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("mapbox_feedback"), name), limit=5)
        assert [r.status.value for r in history] in (["SUCCEEDED"], ["FAILED"])
    assert all(c.passed for n, c in checks_of(result, "mapbox").items() if n != "reject_rate")


def test_every_run_is_tagged_with_the_providers_it_covers(sandbox, tmp_path: Path, feedback_assets):
    instance = dg.DagsterInstance.ephemeral()
    result = run(feedback_assets, resources(sandbox, tmp_path / "f.duckdb"), today(), today(), providers=("mapbox", "formbricks"), instance=instance)
    assert instance.get_run_by_id(result.run_id).tags[PROVIDERS_TAG] == "formbricks,mapbox"


# -- checks planned by asset launches (the UI, backfills, `dagster asset materialize`) -------------


def check_history(instance: dg.DagsterInstance, provider: str) -> dict[str, list[tuple[str | None, str]]]:
    """Each check's rows in the instance (partition, status), as the Checks tab reads them."""
    storage = instance.event_log_storage
    return {
        name: sorted((r.partition, r.status.value) for r in storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey(f"{provider}_feedback"), name), limit=100))
        for name in CHECKS
    }


def test_a_healthy_range_launched_with_checks_passes_every_row_dagster_planned(sandbox, tmp_path: Path, feedback_assets):
    # A backfill plans one row per partition of each check: each gets an evaluation, all pass.
    first = today() - timedelta(days=2)
    instance = dg.DagsterInstance.ephemeral()
    result = run(feedback_assets, resources(sandbox, tmp_path / "f.duckdb"), first, today(), providers=PROVIDERS, instance=instance)
    assert result.success
    days = [(first + timedelta(days=i)).isoformat() for i in range(3)]
    for provider in PROVIDERS:
        assert check_history(instance, provider) == {name: [(d, "SUCCEEDED") for d in days] for name in CHECKS}, provider


def test_an_asset_launch_with_checks_evaluates_a_failed_providers_checks_over_the_stored_rows_never_failing_them(sandbox, tmp_path: Path, feedback_assets):
    # What the UI, a backfill and `dagster asset materialize` launch: the assets with their checks,
    # which Dagster plans at run creation; one it leaves without a result reads "Execution failed".
    db = tmp_path / "f.duckdb"
    first = today() - timedelta(days=2)
    run(feedback_assets, resources(sandbox, db), first, today())  # formbricks has rows in the window
    env = sandbox.env()
    hub = get_spec("formbricks").resource(hub_url=env["FORMBRICKS_HUB_URL"], hub_api_key="not-the-key", tenant_id=env["FORMBRICKS_TENANT_ID"])
    instance = dg.DagsterInstance.ephemeral()
    result = run(feedback_assets, resources(sandbox, db, formbricks=hub), first, today(), providers=("formbricks", "mapbox"), instance=instance)
    assert not result.success and "HTTP 401" in result.get_step_failure_events()[0].event_specific_data.user_failure_data.description
    checks = checks_of(result, "formbricks")
    assert set(checks) == set(CHECKS) and all(c.passed for c in checks.values())
    stored = published(db, "SELECT count(*) FROM feedback WHERE provider = 'formbricks'")[0][0]
    assert stored > 0 and checks["unique_keys"].metadata["rows_in_window"].value == stored
    assert checks["reject_rate"].metadata["records_received"].value == 0  # refused before any record
    for check in checks.values():
        assert check.description.startswith("Evaluated without this run's sync of formbricks: it failed in this run (formbricks/tenant-sandbox: GET ")
        assert "HTTP 401" in check.metadata["not_synced_by_this_run"].value
    days = [(first + timedelta(days=i)).isoformat() for i in range(3)]
    # Dagster planned one row per partition of the range: each has an evaluation, none is left planned.
    assert check_history(instance, "formbricks") == {name: [(d, "SUCCEEDED") for d in days] for name in CHECKS}
    assert {n: c.passed for n, c in checks_of(result, "mapbox").items()} == dict.fromkeys(CHECKS, True)
    assert metadata(result, "mapbox")["rows_inserted"] > 0  # the other provider materialized as usual


def test_a_launch_of_checks_only_evaluates_them_over_the_stored_rows_without_a_sync(sandbox, tmp_path: Path, feedback_assets):
    # The Checks tab's "Execute" on one check: the step runs with no asset and no partition
    # selected, so the check covers every partition.
    db = tmp_path / "f.duckdb"
    day = today() - timedelta(days=1)
    run(feedback_assets, resources(sandbox, db), day, day)
    requests = len(sandbox.sandbox.state.requests_for("formbricks"))
    result = dg.materialize(
        [feedback_assets],
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("formbricks_feedback"), "unique_keys")),
        resources=resources(sandbox, db),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success and result.get_asset_materialization_events() == []
    check = checks_of(result, "formbricks")["unique_keys"]
    assert check.passed and check.metadata["rows_in_window"].value == published(db, "SELECT count(*) FROM feedback")[0][0] > 0
    assert check.description == "Evaluated without this run's sync of formbricks: this run launched its checks without syncing it"
    assert set(checks_of(result, "formbricks")) == {"unique_keys"}
    assert len(sandbox.sandbox.state.requests_for("formbricks")) == requests  # no sync


def test_a_failed_publish_is_said_in_the_materialization_and_fails_the_run(sandbox, tmp_path: Path, monkeypatch):
    from feedback_pipeline.warehouse.session import Session

    assets = build_feedback_assets(feedback_partitions(today() - timedelta(days=60)))
    db, day = tmp_path / "f.duckdb", today() - timedelta(days=2)

    def disk_full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Session, "publish_if_behind", disk_full)
    result = run(assets, resources(sandbox, db), day, day, providers=("formbricks",))
    assert not result.success
    meta = metadata(result, "formbricks")
    assert "analysts' snapshot NOT published (OSError)" in meta["summary"] and meta["analyst_snapshot_published"] is False
