"""The web UI's side of the pipeline: ``make ui`` with the repo's dagster.yaml, driven through the
same GraphQL API (and the same mutations) the UI uses.

One ``feedback-pipeline ui`` (sandbox + Dagster code server, webserver and daemon as separate
processes) is started for the module in a scratch directory, with DAGSTER_HOME=.dagster_home
holding the repo's ``dagster.yaml`` verbatim, so the queued run coordinator, the run-granularity
writer pool limit of one and the daemons are in force. The module's last test stops it with
Ctrl-C as a terminal would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psutil
import pytest

from feedback_pipeline.checks import CHECKS as CHECK_RULES
from feedback_pipeline.providers import get_spec, names
from feedback_pipeline.sandbox.server import free_port

PROVIDERS = names()

pytestmark = pytest.mark.slow

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[1]
ASSETS = sorted(f"{p}_feedback" for p in PROVIDERS)
CHECKS_OF_AN_ASSET = list(CHECK_RULES)
LOCATION = "feedback_pipeline"
REPOSITORY = "__repository__"
PARTITIONS = 70  # FEEDBACK_START_DATE is 69 days ago: 70 daily partitions, today included
BACKFILL = 60  # the backfill covers the 60 days before today
STARTUP_TIMEOUT = 90
BACKFILL_TIMEOUT = 240  # ~120 s seen on 2 CPUs: 30 s backfill-daemon ticks around a ~50 s run


@dataclass
class Webserver:
    url: str
    process: subprocess.Popen
    log_path: Path
    db_path: Path
    home: Path
    first_partition: date
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}})
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _wait_until_ready(server: Webserver) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"the UI exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            data = server.graphql(query)
            names = [(n["location"]["name"], n["name"]) for n in data["repositoriesOrError"].get("nodes", [])]
            if (LOCATION, REPOSITORY) in names:
                return
        except (httpx.HTTPError, AssertionError, ValueError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the UI did not answer GraphQL within {STARTUP_TIMEOUT}s:\n{server.log_tail()}")
        time.sleep(0.5)


@dataclass
class Ui:
    """``feedback-pipeline ui`` (what ``make ui`` runs) in a scratch working directory."""

    cli: subprocess.Popen
    cwd: Path
    sandbox_url: str
    webserver: Webserver
    services_pgid: int


@dataclass
class UiStop:
    exit_code: int | None
    left_behind: bool
    log: str


@contextmanager
def make_ui(tmp: Path, *, days: int, per_day: int) -> Iterator[Ui]:
    """The UI exactly as ``make ui`` starts it (sandbox + Dagster code server, webserver and
    daemon, DAGSTER_HOME=.dagster_home with the repo's dagster.yaml), on free ports, in ``tmp``
    holding copies of dagster.yaml and workspace.yaml so that .dagster_home/ and data/ do not
    touch the checkout; ready when GraphQL lists the location. Everything is killed on exit.
    (Also used by the browser tests in e2e/.)"""
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copyfile(ROOT / name, tmp / name)
    port, sandbox_port = free_port(), free_port()
    cli = Path(sys.executable).with_name("feedback-pipeline")
    command = [str(cli), "ui", "--port", str(port), "--sandbox-port", str(sandbox_port), "--days", str(days), "--per-day", str(per_day), "--no-rate-limit"]
    log_path = tmp / "ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=tmp, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    first = datetime.now(UTC).date() - timedelta(days=days - 1)
    server = Webserver(f"http://127.0.0.1:{port}", process, log_path, tmp / "data" / "feedback.duckdb", tmp / ".dagster_home", first)
    pgids = {process.pid}
    try:
        _wait_until_ready(server)
        services = [p for p in psutil.Process(process.pid).children() if "dagster" in " ".join(p.cmdline())]
        assert len(services) == 3, [p.cmdline() for p in services]  # code server, webserver, daemon
        pgids |= {os.getpgid(p.pid) for p in services}
        assert len(pgids) == 2, pgids  # the services share one group, not the CLI's
        yield Ui(process, tmp, f"http://127.0.0.1:{sandbox_port}", server, max(pgids - {process.pid}))
    finally:
        server.client.close()
        try:  # the services' group too when startup failed before it was known
            pgids |= {os.getpgid(p.pid) for p in psutil.Process(process.pid).children(recursive=True)}
        except (psutil.Error, ProcessLookupError):
            pass
        for group in pgids:  # never leave anything behind, pass or fail
            _kill_group(group)


def stop_ui(ui: Ui) -> UiStop:
    """Ctrl-C as a terminal delivers it: SIGINT to the foreground group, which holds the CLI (and
    make) but not the Dagster services (their own group); the CLI must shut everything down."""
    os.kill(ui.cli.pid, signal.SIGINT)
    code: int | None = None
    try:
        code = ui.cli.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pass
    left_behind = _group_alive(ui.services_pgid)
    return UiStop(code, left_behind, ui.webserver.log_path.read_text(errors="replace"))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    with make_ui(tmp_path_factory.mktemp("ui"), days=PARTITIONS, per_day=10) as handle:
        yield handle


@pytest.fixture(scope="module")
def webserver(ui: Ui) -> Webserver:
    return ui.webserver


# -- queries and mutations (shaped like the UI's own) ---------------------------------------------

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    kinds
    description
    isPartitioned
    pools
    backfillPolicy { policyType maxPartitionsPerRun }
    partitionKeys
    jobNames
  }
}
"""

INSTANCE = """
query Instance {
  instance {
    runQueuingSupported
    runQueueConfig { maxConcurrentRuns }
    poolConfig { poolGranularity defaultPoolLimit }
    concurrencyLimit(concurrencyKey: "feedback_duckdb_writer") { limit usingDefaultLimit }
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
  }
}
"""

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message stack }
  }
}
"""

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      isAssetBackfill
      numPartitions
      error { message }
      runs { runId status jobName tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

PARTITION_STATUS = """
query PartitionStatus($assetKeys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    partitionStats { numMaterialized numPartitions numFailed numMaterializing }
    assetPartitionStatuses {
      __typename
      ... on TimePartitionStatuses { ranges { startKey endKey status } }
    }
  }
}
"""

SCHEDULE = """
query Schedule($scheduleSelector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $scheduleSelector) {
    __typename
    ... on Schedule {
      name
      cronSchedule
      executionTimezone
      pipelineName
      description
      defaultStatus
      scheduleState { id status }
    }
  }
}
"""

START_SCHEDULE = """
mutation StartThisSchedule($scheduleSelector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $scheduleSelector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

STOP_SCHEDULE = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

CHECK_STATUS = """
query Checks($assetKeys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks { name description executionForLatestMaterialization { status runId evaluation { severity description } } }
      }
    }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on InvalidSubsetError { message }
    ... on PythonError { message stack }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status jobName tags { key value } }
  }
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { error { message } failureMetadata { description metadataEntries { label } } }
      }
    }
  }
}
"""

JOB = """
query Job($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { name description tags { key value } }
  }
}
"""


def check_statuses(server: Webserver, assets: list[str]) -> dict[str, dict[str, str | None]]:
    """What the asset pages' Checks tabs show: each check's status for the latest
    materialization (None: not evaluated)."""
    out: dict[str, dict[str, str | None]] = {}
    for node in server.graphql(CHECK_STATUS, {"assetKeys": [{"path": [a]} for a in assets]})["assetNodes"]:
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", checks
        out[node["assetKey"]["path"][0]] = {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks["checks"]}
    return out


def asset_launch(assets: list[str], partition: str) -> dict[str, Any]:
    """What an asset page's Materialize dialog sends for one partition: the assets with their checks."""
    return {
        "mode": "default",
        "runConfigData": "{}",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": [a]} for a in assets],
            "assetCheckSelection": [{"assetKey": {"path": [a]}, "name": c} for a in assets for c in CHECKS_OF_AN_ASSET],
        },
    }


def wait_for_run(server: Webserver, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while True:
        data = server.graphql(RUN, {"runId": run_id})
        if data["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return data
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {data['runOrError']['status']} after {BACKFILL_TIMEOUT}s\n{server.log_tail()}")
        time.sleep(1)


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _materialized_keys(node: dict[str, Any]) -> set[str]:
    statuses = node["assetPartitionStatuses"]
    assert statuses["__typename"] == "TimePartitionStatuses", statuses
    keys: set[str] = set()
    for status_range in statuses["ranges"]:
        if status_range["status"] == "MATERIALIZED":
            keys.update(_days(date.fromisoformat(status_range["startKey"]), date.fromisoformat(status_range["endKey"])))
    return keys


# -- tests ------------------------------------------------------------------------------------------


def test_the_instance_runs_with_the_repos_dagster_yaml(webserver: Webserver):
    instance = webserver.graphql(INSTANCE)["instance"]
    assert instance["runQueuingSupported"] is True  # QueuedRunCoordinator
    assert instance["runQueueConfig"]["maxConcurrentRuns"] == 4
    assert instance["poolConfig"] == {"poolGranularity": "run", "defaultPoolLimit": 1}
    assert instance["concurrencyLimit"]["limit"] == 1
    daemons = {d["daemonType"]: d for d in instance["daemonHealth"]["allDaemonStatuses"] if d["required"]}
    assert {"SCHEDULER", "BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(daemons)


def test_the_five_assets_are_in_group_feedback_with_kinds_descriptions_and_daily_partitions(webserver: Webserver):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in webserver.graphql(ASSET_NODES)["assetNodes"]}
    dashboard = nodes.pop("feedback_dashboard")  # downstream of the five, unpartitioned
    assert dashboard["groupName"] == "feedback" and not dashboard["isPartitioned"] and "feedback_ingest" in dashboard["jobNames"]
    assert sorted(nodes) == ASSETS
    expected_keys = _days(webserver.first_partition, datetime.now(UTC).date())
    for name, node in nodes.items():
        provider = name.removesuffix("_feedback")
        assert node["groupName"] == "feedback"
        assert set(node["kinds"]) == {"duckdb", "api"}
        assert node["description"].startswith(get_spec(provider).description)
        assert "`feedback` table" in node["description"]
        assert node["isPartitioned"] and node["pools"] == ["feedback_duckdb_writer"]
        assert node["backfillPolicy"]["policyType"] == "SINGLE_RUN"
        assert node["partitionKeys"][0] == expected_keys[0] and len(node["partitionKeys"]) in (PARTITIONS, PARTITIONS + 1)
        assert {"feedback_ingest", "feedback_full_refresh"} <= set(node["jobNames"])


def test_before_any_run_every_check_reads_not_evaluated(webserver: Webserver):
    # The graph's node footer then says "0 / 3 Passed" next to a tick: Dagster 1.13's own drawing
    # of checks without a result (README, "Checks"); what the API says is "none yet".
    assert check_statuses(webserver, ASSETS) == {a: dict.fromkeys(CHECKS_OF_AN_ASSET, None) for a in ASSETS}


def test_a_ui_backfill_of_60_partitions_of_all_five_assets_is_one_run_and_materializes_each_partition(webserver: Webserver):
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=BACKFILL), today - timedelta(days=1)
    partitions = _days(first, last)
    assert len(partitions) == BACKFILL and first > webserver.first_partition
    asset_keys = [{"path": [name]} for name in ASSETS]

    # What the Materialize dialog sends for a partition range of an asset selection.
    launched = webserver.graphql(
        LAUNCH_BACKFILL,
        {"backfillParams": {"assetSelection": asset_keys, "partitionNames": partitions, "fromFailure": False, "tags": []}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while True:
        backfill = webserver.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"backfill still {backfill['status']} after {BACKFILL_TIMEOUT}s: {backfill}\n{webserver.log_tail()}")
        time.sleep(2)

    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (backfill, webserver.log_tail())
    assert backfill["isAssetBackfill"] and backfill["numPartitions"] == BACKFILL
    # Single-run backfill policy: the whole selection and range is one run.
    assert len(backfill["runs"]) == 1, backfill["runs"]
    run = backfill["runs"][0]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS"
    assert tags["dagster/asset_partition_range_start"] == first.isoformat()
    assert tags["dagster/asset_partition_range_end"] == last.isoformat()
    assert tags["dagster/backfill"] == backfill_id
    # The runs list says which providers the run covered (tagged by the step itself for UI launches).
    assert tags["feedback/providers"] == ",".join(PROVIDERS)
    counts = {"/".join(s["assetKey"]["path"]): s for s in backfill["assetBackfillData"]["assetBackfillStatuses"]}
    assert sorted(counts) == ASSETS
    for status in counts.values():
        assert (status["numPartitionsTargeted"], status["numPartitionsMaterialized"], status["numPartitionsFailed"]) == (BACKFILL, BACKFILL, 0)

    # What the asset pages show: exactly the 60 backfilled partitions are materialized.
    nodes = webserver.graphql(PARTITION_STATUS, {"assetKeys": asset_keys})["assetNodes"]
    assert sorted("/".join(n["assetKey"]["path"]) for n in nodes) == ASSETS
    for node in nodes:
        assert _materialized_keys(node) == set(partitions), node["assetKey"]
        stats = node["partitionStats"]
        assert (stats["numMaterialized"], stats["numFailed"], stats["numMaterializing"]) == (BACKFILL, 0, 0), node

    # Every check of every asset passed (the backfill planned them, as the UI's launches do).
    assert check_statuses(webserver, ASSETS) == {a: dict.fromkeys(CHECKS_OF_AN_ASSET, "SUCCEEDED") for a in ASSETS}

    # The analysts' snapshot (read-only): every provider has rows on every day, none outside.
    with duckdb.connect(str(webserver.db_path), read_only=True) as con:
        rows = con.execute("SELECT provider, collected_date, count(*) FROM feedback GROUP BY ALL").fetchall()
    days_by_provider: dict[str, set[str]] = {}
    for provider, collected, count in rows:
        assert count > 0
        days_by_provider.setdefault(provider, set()).add(collected.isoformat())
    assert {p: days_by_provider.get(p, set()) for p in PROVIDERS} == {p: set(partitions) for p in PROVIDERS}


def test_a_ui_launch_with_a_refused_key_fails_naming_the_account_and_leaves_no_check_failed(ui: Ui):
    webserver = ui.webserver
    day = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assets = ["formbricks_feedback", "mapbox_feedback"]
    # The Hub answers 401 with an HTML page (a proxy's), as in the issue.
    httpx.post(f"{ui.sandbox_url}/_control/formbricks/faults", json={"kind": "server_error", "status": 401, "count": None}, timeout=10).raise_for_status()
    try:
        launched = webserver.graphql(LAUNCH_RUN, {"executionParams": asset_launch(assets, day)})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        data = wait_for_run(webserver, launched["run"]["runId"])
    finally:
        httpx.delete(f"{ui.sandbox_url}/_control/faults", timeout=10).raise_for_status()
    run = data["runOrError"]
    assert run["status"] == "FAILURE"
    assert {t["key"]: t["value"] for t in run["tags"]}["feedback/providers"] == "formbricks,mapbox"
    # The error the run page opens with: the project's sentence first, no HTML.
    [failure] = [e for e in data["logsForRun"]["events"] if e["__typename"] == "ExecutionStepFailureEvent"]
    first = failure["failureMetadata"]["description"].splitlines()[0]
    assert first.startswith("formbricks/tenant-sandbox: GET ") and "HTTP 401" in first and "FORMBRICKS_HUB_API_KEY" in first and "<" not in first
    assert failure["error"]["message"].split(": ", 1)[1].startswith(first)
    assert {e["label"] for e in failure["failureMetadata"]["metadataEntries"]} >= {"failed_providers", "failed_accounts", "provider", "endpoint", "status", "what_to_check"}
    # No check reads failed or "Execution failed": formbricks' were evaluated over its stored rows.
    statuses = check_statuses(webserver, assets)
    assert statuses == {a: dict.fromkeys(CHECKS_OF_AN_ASSET, "SUCCEEDED") for a in assets}, statuses
    nodes = webserver.graphql(CHECK_STATUS, {"assetKeys": [{"path": ["formbricks_feedback"]}]})["assetNodes"]
    for check in nodes[0]["assetChecksOrError"]["checks"]:
        execution = check["executionForLatestMaterialization"]
        assert execution["runId"] == launched["run"]["runId"]
        assert execution["evaluation"]["description"].startswith("Evaluated without this run's sync of formbricks: it failed in this run (formbricks/tenant-sandbox: GET ")


def test_the_full_refresh_job_presets_its_tags_and_says_what_it_does(webserver: Webserver):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": "feedback_full_refresh"}
    job = webserver.graphql(JOB, {"selector": selector})["pipelineOrError"]
    assert job["__typename"] == "Pipeline", job
    assert {"key": "feedback/full_refresh", "value": "true"} in job["tags"]
    assert {"key": "feedback/providers", "value": ",".join(PROVIDERS)} in job["tags"]
    assert job["description"].startswith("Full refresh of a partition range")


def test_the_hourly_schedule_exists_and_can_be_started_and_stopped(webserver: Webserver):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "scheduleName": "feedback_ingest_hourly"}
    schedule = webserver.graphql(SCHEDULE, {"scheduleSelector": selector})["scheduleOrError"]
    assert schedule["__typename"] == "Schedule", schedule
    assert (schedule["cronSchedule"], schedule["executionTimezone"], schedule["pipelineName"]) == ("0 * * * *", "UTC", "feedback_ingest")
    assert schedule["defaultStatus"] == "STOPPED" and schedule["scheduleState"]["status"] == "STOPPED"

    started = webserver.graphql(START_SCHEDULE, {"scheduleSelector": selector})["startSchedule"]
    try:
        assert started["__typename"] == "ScheduleStateResult", started
        assert started["scheduleState"]["status"] == "RUNNING"
        state = webserver.graphql(SCHEDULE, {"scheduleSelector": selector})["scheduleOrError"]["scheduleState"]
        assert state["status"] == "RUNNING"
    finally:
        stopped = webserver.graphql(STOP_SCHEDULE, {"id": started["scheduleState"]["id"]})["stopRunningSchedule"]
    assert stopped["__typename"] == "ScheduleStateResult", stopped
    assert stopped["scheduleState"]["status"] == "STOPPED"
    assert webserver.graphql(SCHEDULE, {"scheduleSelector": selector})["scheduleOrError"]["scheduleState"]["status"] == "STOPPED"


WARNINGS = re.compile(r"will not be used|dg dev|deprecat|supersed", re.IGNORECASE)


def test_make_ui_prints_no_warning_and_ctrl_c_stops_every_service_and_the_sandbox(ui: Ui):
    assert (ui.cwd / ".dagster_home" / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    assert httpx.get(f"{ui.sandbox_url}/_control/health", timeout=10).json()["ok"]
    stop = stop_ui(ui)
    assert stop.exit_code == 0, stop.log[-4000:]
    assert not stop.left_behind, "Dagster processes survived the CLI"
    assert "Dagster services exited: code server 0, webserver 0, daemon 0" in stop.log, stop.log[-4000:]
    assert "Stopped the Dagster UI and the sandbox." in stop.log
    assert f"DAGSTER_HOME={ui.cwd / '.dagster_home'}" in stop.log
    assert "Serving dagster-webserver" in stop.log and "Started Dagster code proxy server" in stop.log  # the log is theirs
    assert not WARNINGS.findall(stop.log), [line for line in stop.log.splitlines() if WARNINGS.search(line)]
    for url in (ui.sandbox_url, ui.webserver.url):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)
