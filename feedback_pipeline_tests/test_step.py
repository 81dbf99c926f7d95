"""Several accounts per provider through the real ``feedback_ingest`` job: each account syncs with
its own rows, cursors and sync state; one account failing never holds back its siblings.

The last test uses the sandbox's own second account of every provider (``make_sandbox(accounts=2)``
and the accounts file it writes). The others declare a second account served by a second sandbox
(another seed) at its own base URL, which also covers accounts on other hosts and of other
organizations: Mapbox's ``account`` and FeedbackKit's ``project`` are labels the emulators do not
check; the Hub serves tenant ``tenant-other``; Mintlify's is another organization's project.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from feedback_pipeline.checks import CHECKS
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.providers import get_spec, provider_from_env
from feedback_pipeline.sandbox import mintlify as mintlify_emulator
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG
from feedback_pipeline.sync import sync
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, make_sandbox

UTC = timezone.utc
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
DAYS = 10
# provider -> (the second account's id, its entry's keys besides the secrets and base URL)
SECOND = {
    "mapbox": "eu",
    "feedbackkit": "ios-app",
    "formbricks": "tenant-other",
    "mintlify": mintlify_emulator.OTHER_PROJECT_ID,
}


@pytest.fixture(scope="module")
def second_server() -> Iterator[SandboxServer]:
    server = make_sandbox(seed=8)
    yield server
    server.stop()


def today():
    return datetime.now(UTC).date()


def second_accounts(first: SandboxServer, second: SandboxServer, *, broken_mapbox: bool = False) -> tuple[str, dict[str, str]]:
    """The accounts file (YAML text) and the variables its ``{env: NAME}`` entries read: each
    provider of :data:`SECOND` gets an account served by ``second`` (Mintlify's: the other
    organization's project, with that organization's key). ``broken_mapbox`` adds a Mapbox
    account on ``first`` whose token is refused."""
    env2 = second.env()
    document: dict[str, list[dict]] = {}
    variables: dict[str, str] = {}
    for provider, account_id in SECOND.items():
        spec = get_spec(provider)
        entry: dict = {spec.account: account_id}
        for setting in spec.settings:
            key = spec.key(setting)
            if key == spec.account or setting.var not in env2:
                continue
            if setting.secret:
                var = f"TEST_{provider.upper()}_{key.upper()}_2"
                variables[var] = env2[setting.var]
                entry[key] = {"env": var}
            else:
                entry[key] = env2[setting.var]
        document[provider] = [entry]
    variables["TEST_MINTLIFY_API_KEY_2"] = mintlify_emulator.OTHER_ORG_KEY
    if broken_mapbox:
        document["mapbox"].append({"account": "broken", "access_token": {"env": "TEST_MAPBOX_BROKEN"}, "base_url": first.env()["MAPBOX_BASE_URL"]})
        variables["TEST_MAPBOX_BROKEN"] = "pk.not-a-token-of-this-sandbox"
    return yaml.safe_dump(document), variables


@pytest.fixture
def job(sandbox, second_server, tmp_path: Path, monkeypatch):
    """A function running ``feedback_ingest`` over the last DAYS days with two accounts of
    Mapbox, FeedbackKit, the Hub and Mintlify."""
    second_server.reset()

    def make(**options: bool):
        text, variables = second_accounts(sandbox, second_server, **options)
        accounts = tmp_path / "accounts.yaml"
        accounts.write_text(text)
        env = {
            **sandbox.env(),
            **variables,
            "FEEDBACK_ACCOUNTS_FILE": str(accounts),
            "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
            "FEEDBACK_DASHBOARD": str(tmp_path / "dashboard.html"),
            "FEEDBACK_START_DATE": (today() - timedelta(days=40)).isoformat(),
            "FEEDBACK_HTTP_MAX_ATTEMPTS": "2",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        defs = build_definitions(env)
        instance = dg.DagsterInstance.ephemeral()

        def run() -> dg.ExecuteInProcessResult:
            first = today() - timedelta(days=DAYS - 1)
            return defs.resolve_job_def("feedback_ingest").execute_in_process(
                instance=instance, tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: today().isoformat()}, run_config=QUIET, raise_on_error=False
            )

        run.db = Path(env["FEEDBACK_DB"])  # type: ignore[attr-defined]
        run.defs = defs  # type: ignore[attr-defined]
        return run

    return make


def rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def alone(server: SandboxServer, provider: str, tmp_path: Path, overrides: dict | None = None) -> set[str]:
    """The feedback ids one account alone syncs from ``server`` over the same days."""
    wh = Warehouse(tmp_path / f"alone-{provider}-{id(server)}-{len(overrides or {})}.duckdb")
    first = today() - timedelta(days=DAYS - 1)
    from feedback_pipeline.providers.base import Window

    with wh.session() as session, session.cursor() as cursor:
        sync(provider_from_env(provider, server.env(), policy=FAST_RETRIES, overrides=overrides), cursor, Window.for_days(first, today()))
        return {r[0] for r in cursor.query("SELECT feedback_id FROM feedback")}


def test_two_accounts_of_a_provider_each_sync_their_own_rows_and_state_in_one_run(job, sandbox, second_server, tmp_path: Path):
    run = job()
    result = run()
    assert result.success, [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
    first_day = today() - timedelta(days=DAYS - 1)
    for provider, second_id in SECOND.items():
        first_id = provider_from_env(provider, sandbox.env()).account_id
        stored = {
            account: {r[0] for r in rows(run.db, "SELECT feedback_id FROM feedback WHERE provider = ? AND account_id = ?", [provider, account])}
            for account in (first_id, second_id)
        }
        assert stored[first_id] == alone(sandbox, provider, tmp_path), provider
        overrides = {get_spec(provider).account: second_id}
        if provider == "mintlify":
            overrides["api_key"] = mintlify_emulator.OTHER_ORG_KEY
        assert stored[second_id] == alone(second_server, provider, tmp_path, overrides), provider
        if provider in ("mapbox", "feedbackkit"):
            assert stored[second_id] and stored[second_id] != stored[first_id]
        # Each account has its own sync state: every day of the window, for both.
        for account in (first_id, second_id):
            days = rows(run.db, "SELECT count(*) FROM pipeline_sync_days WHERE provider = ? AND account_id = ? AND day >= ?", [provider, account, first_day])
            assert days == [(DAYS,)], (provider, account)
        meta = {k: v.value for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(f"{provider}_feedback") for k, v in e.materialization.metadata.items()}
        table = meta["accounts"]
        assert f"| {first_id} |" in table and f"| {second_id} |" in table
        assert meta["rows_inserted"] == len(stored[first_id]) + len(stored[second_id])


def test_an_account_interrupted_part_way_keeps_its_own_cursor_and_resumes_from_it(job, sandbox, second_server):
    run = job()
    # The first Mintlify account's API fails after its first page (100 of ~200 records); its
    # sibling (the other organization's project, on the second sandbox) finishes.
    sandbox.sandbox.state.add_fault("mintlify", Fault("server_error", count=None, after=1))
    failed = run()
    assert not failed.success
    first_id = mintlify_emulator.PROJECT_ID
    assert rows(run.db, "SELECT provider, account_id, pages FROM pipeline_cursors") == [("mintlify", first_id, 1)]
    # The first page's records (100, less any rejected) are committed with that cursor.
    assert 90 <= rows(run.db, "SELECT count(*) FROM feedback WHERE provider = 'mintlify' AND account_id = ?", [first_id])[0][0] <= 100
    days = rows(run.db, "SELECT account_id, count(*) FROM pipeline_sync_days WHERE provider = 'mintlify' GROUP BY ALL")
    assert days == [(SECOND["mintlify"], DAYS)]  # the sibling's days are done, the interrupted account's not
    sandbox.sandbox.state.clear_faults()
    sandbox.sandbox.state.clear_log()
    resumed = run()
    assert resumed.success
    meta = {k: v.value for e in resumed.get_asset_materialization_events() if e.asset_key == dg.AssetKey("mintlify_feedback") for k, v in e.materialization.metadata.items()}
    assert meta["resumed_queries"] == f"{first_id} window:{today() - timedelta(days=DAYS - 1)}..{today()}"
    assert all(("cursor" in dict(e.query)) for e in sandbox.sandbox.state.requests_for("mintlify"))  # no page fetched twice
    assert rows(run.db, "SELECT count(*) FROM pipeline_cursors") == [(0,)]


def test_one_account_failing_never_holds_back_its_sibling_and_only_it_is_named(job, sandbox):
    run = job(broken_mapbox=True)
    result = run()
    assert not result.success
    (step_failure,) = result.get_step_failure_events()
    failure = step_failure.event_specific_data.user_failure_data
    first_line = failure.description.splitlines()[0]
    assert first_line.startswith("mapbox/broken: GET ") and "HTTP 401" in first_line
    assert {k: v.value for k, v in failure.metadata.items()}["failed_accounts"] == "mapbox/broken"
    assert "sandbox-org" not in first_line and "pk.not-a-token" not in failure.description
    # The siblings (mapbox's own other accounts, every other provider) committed and published.
    published = dict(((p, a), n) for p, a, n in rows(run.db, "SELECT provider, account_id, count(*) FROM feedback GROUP BY ALL"))
    assert published[("mapbox", "sandbox-org")] > 0 and published[("mapbox", "eu")] > 0
    assert ("mapbox", "broken") not in published
    # The Mapbox partitions are not done (an account is missing): no materialization for it.
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "mapbox_feedback" not in materialized and "formbricks_feedback" in materialized



def test_an_asset_launch_with_checks_evaluates_a_provider_with_one_failed_account_over_all_its_stored_rows(job, sandbox):
    # What the UI launches for mapbox_feedback (the asset with its checks): one of its three
    # accounts is refused, so the asset is not materialized, and its checks, which Dagster
    # planned, are evaluated over every account's rows stored for the window instead of being
    # left to read "Execution failed".
    run = job(broken_mapbox=True)
    first = today() - timedelta(days=DAYS - 1)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [run.defs.resolve_assets_def("mapbox_feedback")],
        selection=dg.AssetSelection.assets("mapbox_feedback"),
        instance=instance,
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: today().isoformat()},
        raise_on_error=False,
    )
    assert not result.success and result.get_asset_materialization_events() == []
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == set(CHECKS) and all(c.passed for c in checks.values())
    stored = rows(run.db, "SELECT count(*) FROM feedback WHERE provider = 'mapbox'")[0][0]
    assert stored > 0 and checks["unique_keys"].metadata["rows_in_window"].value == stored
    for check in checks.values():
        assert check.description.startswith("Evaluated without this run's sync of mapbox: it failed in this run (mapbox/broken: GET ")
    # The two healthy accounts' records count in the reject rate.
    assert checks["reject_rate"].metadata["records_received"].value >= stored
    for name in CHECKS:
        history = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey("mapbox_feedback"), name), limit=50)
        assert {r.status.value for r in history} == {"SUCCEEDED"} and len(history) == DAYS, name


@pytest.fixture(scope="module")
def two_account_sandbox() -> Iterator[SandboxServer]:
    """The sandbox serving two accounts of every provider (one server, as upstream)."""
    server = make_sandbox(accounts=2)
    yield server
    server.stop()


def test_the_second_account_of_every_provider_syncs_its_own_rows_and_state(two_account_sandbox, tmp_path: Path, monkeypatch):
    from feedback_pipeline.accounts import ProviderSettings, load_accounts
    from feedback_pipeline.providers import names

    server = two_account_sandbox.reset()
    accounts_file = tmp_path / "accounts.yaml"
    env = {
        **server.env(),
        **server.write_accounts_file(accounts_file),
        "FEEDBACK_DB": str(tmp_path / "feedback.duckdb"),
        "FEEDBACK_DASHBOARD": str(tmp_path / "dashboard.html"),
        "FEEDBACK_START_DATE": (today() - timedelta(days=40)).isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    first_day = today() - timedelta(days=DAYS - 1)
    result = build_definitions(env).resolve_job_def("feedback_ingest").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags={RANGE_START_TAG: first_day.isoformat(), RANGE_END_TAG: today().isoformat()}, run_config=QUIET
    )
    assert result.success
    db = Path(env["FEEDBACK_DB"])
    specs = {n: ProviderSettings(get_spec(n).settings, get_spec(n).account) for n in names()}
    second = load_accounts(accounts_file, specs, env)
    assert {a.provider for a in second} == set(names())
    for account in second:
        provider = account.provider
        first_id = provider_from_env(provider, env).account_id
        overrides = {**{k: v for k, v in account.values.items() if v is not None}, **{k: env[var] for k, var in account.env_vars.items()}}
        stored = {
            who: {r[0] for r in rows(db, "SELECT feedback_id FROM feedback WHERE provider = ? AND account_id = ?", [provider, who])}
            for who in (first_id, account.account_id)
        }
        assert stored[account.account_id], provider
        assert stored[account.account_id] == alone(server, provider, tmp_path, overrides), provider
        assert stored[first_id] == alone(server, provider, tmp_path), provider
        assert stored[first_id] != stored[account.account_id], provider
        for who in (first_id, account.account_id):
            days = rows(db, "SELECT count(*) FROM pipeline_sync_days WHERE provider = ? AND account_id = ? AND day >= ?", [provider, who, first_day])
            assert days == [(DAYS,)], (provider, who)


# -- how many accounts sync at once, and in which order they start ------------------------------


def test_accounts_start_with_the_smallest_pages_and_the_one_array_provider_last():
    from feedback_pipeline.step import AccountRef, start_order

    refs = [AccountRef(p, k) for p, k in [("feedbackkit", "feedbackkit"), ("mapbox", "mapbox"), ("usersnap", "usersnap"),
                                         ("mapbox", "mapbox__2"), ("mintlify", "mintlify"), ("formbricks", "formbricks")]]
    order = [r.key for r in start_order(refs)]
    sizes = [get_spec(k.split("__")[0]).page_size for k in order]
    assert order[-1] == "feedbackkit" and sizes[-1] is None
    assert sizes[:-1] == sorted(sizes[:-1])  # 100, 100, 1000, ...
    assert order.index("mapbox") < order.index("mapbox__2")  # one provider's accounts keep their order


def test_at_most_max_concurrent_accounts_sync_at_once_and_outcomes_keep_the_callers_order():
    import threading
    import time
    from types import SimpleNamespace

    from feedback_pipeline.providers.base import ConfigurationError, Window
    from feedback_pipeline.step import MAX_CONCURRENT_ACCOUNTS, AccountRef, run_providers

    lock = threading.Lock()
    inside, most = 0, 0
    together = threading.Barrier(MAX_CONCURRENT_ACCOUNTS, timeout=30)  # each account waits for two others

    def build(ref: AccountRef):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        together.wait()
        time.sleep(0.05)  # room for any further worker to enter
        with lock:
            inside -= 1
        raise ConfigurationError(f"{ref.key} is not configured")

    refs = [AccountRef(p, f"{p}__{n}") for n in (1, 2) for p in ("feedbackkit", "mapbox", "usersnap")]
    session = SimpleNamespace(publish_if_behind=lambda: None)
    logger = SimpleNamespace(info=lambda m: None, warning=lambda m: None, error=lambda m: None)
    outcome = run_providers(refs, build, session, Window.for_days(today(), today()), full_refresh=False, logger=logger)  # type: ignore[arg-type]
    assert most == MAX_CONCURRENT_ACCOUNTS == 3
    assert [o.key for o in outcome.outcomes] == [r.key for r in refs]
    assert all(str(o.error) == f"{o.key} is not configured" for o in outcome.outcomes)
