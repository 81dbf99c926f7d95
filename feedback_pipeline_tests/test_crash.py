"""Crash test: a backfill killed with SIGKILL at random moments, then rerun, ends exactly where an
uninterrupted run ends, and the analysts' file is never half-written.

The backfill runs as operators run it: ``dagster asset materialize ... --partition-range A...B``
in a subprocess (its steps in their own processes), against a sandbox served from this test
process and slowed down by ``slow`` faults so the run takes seconds and commits part-way. The
whole process group is killed with SIGKILL several times (seeded random moments: some on a timer
after the first request, some just after a snapshot was published, i.e. around a commit), then
the backfill is rerun to completion. Meanwhile a thread polls ``FEEDBACK_DB`` read-only: it must
always open and hold a consistent state (no key twice, collected_date = UTC date of
collected_at, every row exactly as an uninterrupted run writes it, never fewer rows than before).
After every kill the working database (``.work`` + ``.wal``) must open cleanly.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from feedback_pipeline.providers import provider_from_env
from feedback_pipeline.providers.base import Window
from feedback_pipeline.sandbox.core import Fault
from feedback_pipeline.sandbox.server import SandboxServer
from feedback_pipeline.schema import ROW_COLUMNS
from feedback_pipeline.warehouse import Warehouse

from .conftest import FAST_RETRIES, make_sandbox, run_sync, uvicorn_errors_silenced, work_db

UTC = timezone.utc
PROVIDERS = ("mintlify", "usersnap")  # 100 records per page: many pages, commits part-way
DAYS, PER_DAY = 20, 200  # 4,000 records per provider = 40 pages each
# Seconds per request: a provider's backfill takes ~20 s and commits every 5 s, so the killed
# attempts together never finish it and each kill lands mid-run.
SLOW = 0.5
KILLS = 4
SEED = int(os.environ.get("FEEDBACK_CRASH_SEED", "20261121"))
DAGSTER = Path(sys.executable).parent / "dagster"
CONTENT = ", ".join(ROW_COLUMNS)


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    server = make_sandbox(PROVIDERS, days=DAYS, per_day=PER_DAY)
    with uvicorn_errors_silenced():  # a killed client makes uvicorn log ClientDisconnect
        yield server
    server.stop()


def reference_tables(server: SandboxServer, directory: Path, window: Window) -> tuple[Path, list[tuple], list[tuple]]:
    """What an uninterrupted run writes (the engine in this process, no faults)."""
    env = server.env()
    wh = Warehouse(directory / "reference.duckdb")
    for name in PROVIDERS:
        run_sync(provider_from_env(name, env, policy=FAST_RETRIES), wh, window)
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        return (wh.path, *tables(con))
    finally:
        con.close()


def tables(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple], list[tuple]]:
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT {CONTENT} FROM feedback ORDER BY provider, feedback_id").fetchall()
    rejects = con.execute("SELECT * EXCLUDE (rejected_at) FROM feedback_rejects ORDER BY provider, record_key, reason").fetchall()
    return rows, rejects


class Watcher(threading.Thread):
    """Polls the analysts' file read-only while runs go on; records every problem it sees.

    Rows are compared with the uninterrupted run's database inside DuckDB (attached read-only),
    so polling stays cheap next to the runs it watches."""

    def __init__(self, path: Path, reference: Path):
        super().__init__(name="analyst", daemon=True)
        self.path, self.reference = path, reference
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.opens = 0
        self.publishes = 0
        self.published = threading.Event()
        self.committed = threading.Event()  # the working database's WAL changed: a commit
        self.wal = path.with_name(path.name + ".work.wal")
        self._wal_state: tuple[int, int] | None = None
        self.max_rows = 0
        self._inode: tuple[int, int, int] | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            self.look()
            for _ in range(5):  # commits are short: watch the WAL more often than the snapshot
                self.watch_wal()
                time.sleep(0.01)

    def watch_wal(self) -> None:
        try:
            stat = os.stat(self.wal)
            state = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            state = None
        if state != self._wal_state:
            if state is not None:
                self.committed.set()
            self._wal_state = state

    def look(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return  # nothing published yet
        inode = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a freed inode number is reused
        if inode != self._inode:
            if self._inode is not None:
                self.publishes += 1
                self.published.set()
            self._inode = inode
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except Exception as exc:  # noqa: BLE001 - every failure to open is a finding
            self.problems.append(f"FEEDBACK_DB did not open: {type(exc).__name__}: {exc}")
            return
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"ATTACH '{self.reference}' AS ref (READ_ONLY)")
            rows, dupes, bad_dates, foreign = con.execute(
                f"""SELECT
                    (SELECT count(*) FROM feedback),
                    (SELECT count(*) FROM (SELECT 1 FROM feedback GROUP BY provider, account_id, feedback_id HAVING count(*) > 1)),
                    (SELECT count(*) FROM feedback WHERE collected_date IS DISTINCT FROM CAST(timezone('UTC', collected_at) AS DATE)),
                    (SELECT count(*) FROM (SELECT {CONTENT} FROM feedback EXCEPT SELECT {CONTENT} FROM ref.feedback))"""
            ).fetchone()
        except Exception as exc:  # noqa: BLE001
            self.problems.append(f"FEEDBACK_DB is not readable: {type(exc).__name__}: {exc}")
            return
        finally:
            con.close()
        self.opens += 1
        if dupes:
            self.problems.append(f"{dupes} key(s) twice in FEEDBACK_DB")
        if bad_dates:
            self.problems.append(f"{bad_dates} row(s) with a wrong collected_date")
        if foreign:
            self.problems.append(f"{foreign} row(s) an uninterrupted run does not write")
        if rows < self.max_rows:
            self.problems.append(f"FEEDBACK_DB went back from {self.max_rows} to {rows} rows")
        self.max_rows = max(self.max_rows, rows)


def work_db_opens_cleanly(db: Path, scratch: Path) -> int:
    """Open a copy of the working database (with its WAL) as the next run would; rows in it."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    work = db.with_name(db.name + ".work")
    if not work.exists():
        return 0
    shutil.copyfile(work, scratch / work.name)
    wal = work.with_name(work.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, scratch / wal.name)
    con = duckdb.connect(str(scratch / work.name))
    try:
        dupes = con.execute("SELECT count(*) FROM (SELECT 1 FROM feedback GROUP BY provider, account_id, feedback_id HAVING count(*) > 1)").fetchone()[0]
        assert dupes == 0
        return con.execute("SELECT count(*) FROM feedback").fetchone()[0]
    finally:
        con.close()


@pytest.mark.timeout(240)
def test_a_backfill_killed_at_random_moments_ends_as_an_uninterrupted_run(server: SandboxServer, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    first, last = today() - timedelta(days=DAYS - 1), today()
    window = Window.for_days(first, last)
    reference, reference_rows, reference_rejects = reference_tables(server, tmp_path, window)
    assert len(reference_rows) > 7000

    db = tmp_path / "analysts" / "feedback.duckdb"
    db.parent.mkdir()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FEEDBACK_"))}
    env.update({k: v for k, v in server.env().items() if k.split("_")[0] in {p.upper() for p in PROVIDERS}})
    env.update(
        FEEDBACK_DB=str(db),
        FEEDBACK_START_DATE=(first - timedelta(days=5)).isoformat(),
        DAGSTER_HOME=str(home),
        PYTHONUNBUFFERED="1",
    )
    command = [
        str(DAGSTER), "asset", "materialize", "-m", "feedback_pipeline.definitions",
        "--select", ",".join(f"{p}_feedback" for p in PROVIDERS),
        "--partition-range", f"{first.isoformat()}...{last.isoformat()}",
    ]
    state = server.sandbox.state
    for name in PROVIDERS:
        state.add_fault(name, Fault(kind="slow", delay=SLOW, count=None))

    watcher = Watcher(db, reference)
    watcher.start()
    kills: list[str] = []
    logs: list[Path] = []
    timings: list[str] = []
    try:
        for attempt in range(KILLS + 1):
            log = tmp_path / f"attempt{attempt}.log"
            logs.append(log)
            served_before = sum(state.request_counts.get(p, 0) for p in PROVIDERS)
            watcher.published.clear()
            started = time.monotonic()
            with open(log, "wb") as out:
                process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    if attempt == KILLS:
                        assert process.wait(timeout=120) == 0, log.read_text()[-3000:]
                        timings.append(f"final run {time.monotonic() - started:.1f}s")
                        break
                    # Wait for the run to reach the providers, then pick the moment.
                    deadline = time.monotonic() + 60
                    while sum(state.request_counts.get(p, 0) for p in PROVIDERS) == served_before:
                        assert process.poll() is None, log.read_text()[-3000:]
                        assert time.monotonic() < deadline, "the run never reached the sandbox"
                        time.sleep(0.02)
                    timings.append(f"start {time.monotonic() - started:.1f}s")
                    watcher.committed.clear()
                    if attempt % 2 == 0:
                        delay = rng.uniform(0.5, 8.0)
                        moment = f"{delay:.2f}s after the first request"
                        time.sleep(delay)
                    else:
                        # Right after the working database's WAL changed: during or just after a
                        # commit (and its checkpoint).
                        watcher.committed.wait(timeout=12)
                        delay = rng.uniform(0.0, 0.06)
                        moment = f"{delay * 1000:.0f}ms after a commit was seen" if watcher.committed.is_set() else "no commit within 12s"
                        time.sleep(delay)
                    finished = process.poll() is not None
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:  # the whole group had already exited
                        pass
                    process.wait(timeout=30)
                    kills.append(moment + (" (the run had already finished)" if finished else ""))
                finally:
                    if process.poll() is None:
                        try:
                            os.killpg(process.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        process.wait(timeout=30)
            # After every kill the working database opens cleanly (its WAL replays).
            work_db_opens_cleanly(db, tmp_path / "scratch")
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
        for name in PROVIDERS:
            state.clear_faults(name)
    watcher.look()

    print(f"\ncrash test (seed {SEED}): {len(kills)} kill points: " + "; ".join(kills))
    print("timings: " + ", ".join(timings))
    resumed = [log.name for log in logs if "resuming" in log.read_text(errors="replace")]
    print(f"runs that resumed from a committed cursor: {resumed or 'none'}; the analyst's file was opened {watcher.opens} times across {watcher.publishes} publishes")
    assert len(kills) == KILLS
    assert not watcher.problems, watcher.problems[:5]
    assert watcher.opens > 10

    con = duckdb.connect(str(db), read_only=True)
    try:
        final_rows, final_rejects = tables(con)
    finally:
        con.close()
    assert final_rows == reference_rows
    assert final_rejects == reference_rejects
    assert work_db_opens_cleanly(db, tmp_path / "scratch") == len(reference_rows)
    leftovers = sorted(p.name for p in db.parent.iterdir() if p.name.endswith(".tmp"))
    print(f"leftover temp files: {leftovers or 'none'}")
    # The real CLI path leaks no credential: not in any run's output, the instance's storage
    # (event log, run records) or the databases.
    secrets = [env[v] for v in ("MINTLIFY_API_KEY", "USERSNAP_JWT_SECRET")]
    for path in [*logs, *home.rglob("*"), *db.parent.iterdir()]:
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in secrets), f"a secret appears in {path.name}"


# A warehouse whose two snapshot files both exist (so the next publish applies changes in place),
# then one more change, then a publish killed at the point ``KILL_POINTS[point]`` patches.
KILLED_PUBLISH = """
import os, sys
from datetime import date, datetime, timezone
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Progress, Scope, Warehouse
import feedback_pipeline.warehouse.changes as changes
import feedback_pipeline.warehouse.publish as publish
from feedback_pipeline.warehouse.files import WarehouseFiles

wh = Warehouse(sys.argv[1])
DAY = date(2026, 3, 1)

def store(ids, body):
    batch = FeedbackBatch("mapbox", "acct")
    for i in ids:
        batch.add({}, feedback_id=i, collected_at="2026-03-01T10:00:00Z", body=body)
    with wh.session() as session, session.cursor() as cursor:
        cursor.commit(Scope("mapbox", "acct", DAY, DAY), batch.rows(), batch.rejects(), Progress("window:q", DAY, DAY, None, datetime.now(timezone.utc), 1, None))

def die(*args, **kwargs):
    os.kill(os.getpid(), 9)

def apply_then_die(*args, **kwargs):
    original_apply(*args, **kwargs)
    die()

store(["a", "b"], "v1"); wh.publish_if_behind()
store(["c"], "v2"); wh.publish_if_behind()
store(["a"], "v3"); assert wh.publish_if_behind().mode == "incremental"
store(["b", "d"], "v4")
point = sys.argv[2]
if point == "full copy before its rename":
    wh.files.idle().unlink()
    publish.fsync_file = die
elif point == "apply before its commit":
    original_apply = publish._apply
    publish._apply = apply_then_die
elif point == "between apply and switch":
    WarehouseFiles.switch = die
elif point == "after the switch, before recording it":
    changes.record_snapshot = die
wh.publish_if_behind()
"""
BEFORE = [("a", "v3"), ("b", "v1"), ("c", "v2")]
AFTER = [("a", "v3"), ("b", "v4"), ("c", "v2"), ("d", "v4")]


@pytest.mark.parametrize(
    "point, seen",
    [
        ("full copy before its rename", BEFORE),
        ("apply before its commit", BEFORE),
        ("between apply and switch", BEFORE),
        ("after the switch, before recording it", AFTER),
    ],
)
def test_a_publish_killed_at_any_point_leaves_a_complete_snapshot_and_the_next_publish_repairs(tmp_path: Path, point: str, seen: list) -> None:
    db = tmp_path / "feedback.duckdb"
    done = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, str(db), point], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]

    def analyst_sees() -> list[tuple]:
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute("SELECT feedback_id, body FROM feedback ORDER BY feedback_id").fetchall()
        finally:
            con.close()

    assert analyst_sees() == seen
    wh = Warehouse(db)
    assert wh.publish_if_behind() is not None  # the next run's publish redoes what was not recorded
    assert analyst_sees() == AFTER
    assert wh.publish_if_behind() is None
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []  # no litter left


@pytest.fixture(scope="module")
def hub() -> Iterator[SandboxServer]:
    server = make_sandbox(("formbricks",), days=3, per_day=20)
    yield server
    server.stop()


def test_a_run_killed_between_its_last_commit_and_the_publish_is_published_by_the_next_run(hub: SandboxServer, tmp_path: Path) -> None:
    """SIGKILL after a step committed everything (days marked synced) but before it published:
    the next run finds nothing new at the provider, yet the analysts must get what was committed."""
    db = tmp_path / "feedback.duckdb"
    env = hub.env()
    window = Window.for_days(today() - timedelta(days=2), today())
    script = f"""
import os
from datetime import date
from feedback_pipeline.providers.base import Window
from feedback_pipeline.providers import provider_from_env
from feedback_pipeline.sync import sync
from feedback_pipeline.warehouse import Warehouse
wh = Warehouse({str(db)!r})
wh.publish_if_behind()  # the (empty) first snapshot
provider = provider_from_env("formbricks", {env!r})
with wh.session() as session:
    with session.cursor() as cursor:
        sync(provider, cursor, Window.for_days(date.fromisoformat({window.first_day.isoformat()!r}), date.fromisoformat({window.last_day.isoformat()!r})))
    os.kill(os.getpid(), 9)  # the machine dies right before the step publishes
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-3000:]
    wh = Warehouse(db)
    run_sync(provider_from_env("formbricks", env, policy=FAST_RETRIES), wh, window)  # the next hourly run
    with work_db(wh) as con:
        work = sorted(con.execute(f"SELECT {CONTENT} FROM feedback").fetchall())
    assert len(work) > 40
    con = duckdb.connect(str(db), read_only=True)
    try:
        published = sorted(con.execute(f"SELECT {CONTENT} FROM feedback").fetchall())
    finally:
        con.close()
    assert published == work, f"FEEDBACK_DB has {len(published)} rows, the working database {len(work)}"
