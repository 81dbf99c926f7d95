"""The Iceberg copy (feedback_pipeline/lake): equal to ``feedback`` row for row after every apply,
one snapshot per apply that changed rows, crash-safe, and absent when its variable is unset.

Each test builds a working DuckDB file with the contract's ``feedback`` DDL, the publish
generation and the change log (``bench.lake.create_working_db``), commits changes the way the
warehouse does (generation bumped, keys logged in the same transaction), and reads the table back
with pyiceberg into DuckDB through Arrow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from bench.lake import END_DAY, commit_change, create_working_db, insert_synthetic
from feedback_pipeline.lake import LakeSettings
from feedback_pipeline.schema import FEEDBACK_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ", ".join(f"{name}::VARCHAR AS {name}" if sqltype == "JSON" else name for name, sqltype, _ in FEEDBACK_COLUMNS)
ORDER = "provider, account_id, feedback_id"

pytest.importorskip("pyiceberg")  # the `lake` extra; `make install` includes it
from pyiceberg.types import DateType, DoubleType, StringType, TimestamptzType  # noqa: E402

from feedback_pipeline.lake import LakeMirror  # noqa: E402
from feedback_pipeline.lake.table import TABLE, open_catalog  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    found = LakeSettings.from_env({"FEEDBACK_LAKE_WAREHOUSE": str(tmp_path / "lake")}, db_path=tmp_path / "feedback.duckdb")
    assert found is not None
    return found


@pytest.fixture
def work(tmp_path: Path):
    con = create_working_db(tmp_path / "feedback.duckdb.work")
    yield con
    con.close()


def generation(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT generation FROM pipeline_publish").fetchall()[0][0]


def feedback_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(f"SELECT {COLUMNS} FROM feedback ORDER BY {ORDER}").fetchall()


def lake_rows(settings: LakeSettings, snapshot_id: int | None = None) -> list[tuple]:
    """The table as a reader sees it: a fresh catalog, a pyiceberg scan, DuckDB over the Arrow."""
    table = open_catalog(settings).load_table(TABLE)
    arrow = table.scan(snapshot_id=snapshot_id).to_arrow()
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    reader.register("lake", arrow)
    return reader.execute(f"SELECT {COLUMNS} FROM lake ORDER BY {ORDER}").fetchall()


def snapshots(settings: LakeSettings) -> list:
    return list(open_catalog(settings).load_table(TABLE).snapshots())


def change_rows(con: duckdb.DuckDBPyConnection, seed: int) -> int:
    """Updates, a move to another day, deletions and inserts in one warehouse-style commit."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _pick AS
        SELECT provider, account_id, feedback_id, row_number() OVER () AS k
        FROM (SELECT * FROM feedback ORDER BY hash(feedback_id, $seed) LIMIT 30)""",
        {"seed": seed},
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _new AS SELECT * REPLACE ('new-' || $seed || '-' || feedback_id AS feedback_id) FROM feedback ORDER BY feedback_id LIMIT 12",
        {"seed": seed},
    )
    return commit_change(
        con,
        "SELECT provider, account_id, feedback_id FROM _pick UNION ALL SELECT provider, account_id, feedback_id FROM _new",
        [
            ("UPDATE feedback SET status = 'resolved', body = 'changed ' || $seed WHERE feedback_id IN (SELECT feedback_id FROM _pick WHERE k <= 10)", {"seed": seed}),
            # collected_at moved by ten days: the row changes partition.
            ("UPDATE feedback SET collected_at = collected_at - INTERVAL 10 DAY, collected_date = collected_date - 10 "
             "WHERE feedback_id IN (SELECT feedback_id FROM _pick WHERE k BETWEEN 11 AND 15)", {}),
            ("DELETE FROM feedback WHERE feedback_id IN (SELECT feedback_id FROM _pick WHERE k > 15)", {}),
            ("INSERT INTO feedback SELECT * FROM _new", {}),
        ],
    )


def test_first_apply_mirrors_every_row_in_one_snapshot_with_the_contract_types(work, settings):
    insert_synthetic(work, 0, 2_000, days=30)
    commit = LakeMirror(settings).apply(work, generation(work), "run-1")

    assert commit is not None and commit.mode == "full" and commit.rows_written == 2_000
    assert lake_rows(settings) == feedback_rows(work)
    table = open_catalog(settings).load_table(TABLE)
    assert [s.snapshot_id for s in table.snapshots()] == [commit.snapshot_id]
    summary = table.current_snapshot().summary
    assert summary["feedback.run-id"] == "run-1" and summary["feedback.generation"] == str(generation(work))
    assert [f.name for f in table.spec().fields] == ["provider", "collected_date"]
    types = {f.name: (f.field_type, f.required) for f in table.schema().fields}
    assert types["collected_at"] == (TimestamptzType(), True)
    assert types["updated_at"] == (TimestamptzType(), False)
    assert types["collected_date"] == (DateType(), True)
    assert types["rating"] == (DoubleType(), False)
    assert types["attributes"] == (StringType(), False)
    assert LakeMirror(settings).generation() == generation(work)


def test_apply_after_updates_moves_deletes_and_inserts_equals_feedback_with_one_new_snapshot(work, settings):
    insert_synthetic(work, 0, 2_000, days=30)
    mirror = LakeMirror(settings)
    first = mirror.apply(work, generation(work), "run-1")
    before = lake_rows(settings)
    files_before = {t.file.file_path for t in open_catalog(settings).load_table(TABLE).scan().plan_files()}

    change_rows(work, seed=1)
    commit = mirror.apply(work, generation(work), "run-2")

    assert commit is not None and commit.mode == "incremental" and commit.keys_changed == 42
    assert lake_rows(settings) == feedback_rows(work)
    table = open_catalog(settings).load_table(TABLE)
    assert [s.snapshot_id for s in table.snapshots()] == [first.snapshot_id, commit.snapshot_id]
    current = table.current_snapshot()
    assert current.summary.operation.value == "overwrite"
    assert current.summary["feedback.run-id"] == "run-2" and current.summary["feedback.generation"] == str(generation(work))
    # Only the touched partitions' files were replaced; every other file is the same file.
    files_after = {t.file.file_path for t in table.scan().plan_files()}
    assert len(files_before - files_after) == commit.files_removed <= commit.partitions_rewritten < len(files_before) / 2
    # Time travel: the first snapshot still reads as the table was.
    assert lake_rows(settings, snapshot_id=first.snapshot_id) == before


def test_nothing_changed_commits_no_snapshot_and_rejects_alone_only_move_the_generation(work, settings):
    insert_synthetic(work, 0, 500, days=10)
    mirror = LakeMirror(settings)
    mirror.apply(work, generation(work), "run-1")
    assert mirror.apply(work, generation(work), "run-2") is None

    work.execute("BEGIN TRANSACTION")
    work.execute("UPDATE pipeline_publish SET generation = generation + 1")
    work.execute("INSERT INTO pipeline_changes SELECT generation, 'mapbox', 'acct-1', NULL FROM pipeline_publish")
    work.execute("COMMIT")
    assert mirror.apply(work, generation(work), "run-3") is None
    assert len(snapshots(settings)) == 1
    assert mirror.generation() == generation(work)


def test_a_reset_in_the_log_or_a_pruned_log_rebuilds_the_table(work, settings):
    insert_synthetic(work, 0, 800, days=10)
    mirror = LakeMirror(settings)
    mirror.apply(work, generation(work), "run-1")

    commit_change(work, "SELECT NULL AS provider, NULL AS account_id, NULL AS feedback_id",
                  [("DELETE FROM feedback WHERE provider = 'mapbox'", {})])
    commit = mirror.apply(work, generation(work), "run-2")
    assert commit is not None and commit.mode == "full"
    assert lake_rows(settings) == feedback_rows(work)

    change_rows(work, seed=2)
    work.execute("UPDATE pipeline_publish SET changes_since = generation")  # log pruned past the table
    commit = mirror.apply(work, generation(work), "run-3")
    assert commit is not None and commit.mode == "full"
    assert lake_rows(settings) == feedback_rows(work)
    assert len(snapshots(settings)) == 3


def test_a_working_database_created_again_under_the_same_catalog_is_mirrored_from_scratch(tmp_path, work, settings):
    """Deleting the working database and starting over restarts its generations from zero: the
    lake must not take its old generation for the new database's, nor keep the old rows."""
    insert_synthetic(work, 0, 800, days=10)
    for _ in range(3):
        change_rows(work, seed=_)  # the old database is several generations ahead
    LakeMirror(settings).apply(work, generation(work), "run-1")
    old_generation = generation(work)

    fresh = create_working_db(tmp_path / "recreated.duckdb.work")
    try:
        insert_synthetic(fresh, 5_000, 300, days=5)
        assert generation(fresh) < old_generation
        commit = LakeMirror(settings).apply(fresh, generation(fresh), "run-2")
        assert commit is not None and commit.mode == "full"
        assert lake_rows(settings) == feedback_rows(fresh)
        assert LakeMirror(settings).apply(fresh, generation(fresh), "run-3") is None
        change_rows(fresh, seed=9)
        again = LakeMirror(settings).apply(fresh, generation(fresh), "run-4")
        assert again is not None and again.mode == "incremental"
        assert lake_rows(settings) == feedback_rows(fresh)
    finally:
        fresh.close()


def test_deleting_every_row_of_a_partition_removes_its_files(work, settings):
    insert_synthetic(work, 0, 500, days=10)
    mirror = LakeMirror(settings)
    mirror.apply(work, generation(work), "run-1")
    commit_change(
        work,
        "SELECT provider, account_id, feedback_id FROM feedback WHERE provider = 'usersnap' AND collected_date = $d",
        [("DELETE FROM feedback WHERE provider = 'usersnap' AND collected_date = $d", {"d": END_DAY})],
        {"d": END_DAY},
    )
    commit = mirror.apply(work, generation(work), "run-2")
    assert commit is not None and commit.files_removed == 1 and commit.files_added == 0
    assert lake_rows(settings) == feedback_rows(work)


CHILD = """
import importlib, inspect, time, duckdb
from pathlib import Path
from feedback_pipeline.lake import LakeMirror, LakeSettings

owner = getattr(importlib.import_module({module!r}), {cls!r})
static = isinstance(inspect.getattr_static(owner, {name!r}), staticmethod)
original = getattr(owner, {name!r})
def paused(*args, **kwargs):
    result = original(*args, **kwargs) if {call_first} else None
    Path({marker!r}).write_text("paused")
    time.sleep(120)
    return result
setattr(owner, {name!r}, staticmethod(paused) if static else paused)

settings = LakeSettings.from_env({{"FEEDBACK_LAKE_WAREHOUSE": {warehouse!r}}}, db_path={db!r})
con = duckdb.connect({work!r})
con.execute("SELECT 1")
LakeMirror(settings).apply(con, con.execute("SELECT generation FROM pipeline_publish").fetchall()[0][0], "killed-run")
"""


def _kill_mid_apply(tmp_path: Path, module: str, cls: str, name: str, *, call_first: bool) -> None:
    """Run an apply in a child process whose ``cls.name`` pauses (after running, with
    ``call_first``), and SIGKILL the child there."""
    marker = tmp_path / f"paused-{name}"
    script = CHILD.format(
        module=module, cls=cls, name=name, call_first=call_first, marker=str(marker),
        warehouse=str(tmp_path / "lake"), db=str(tmp_path / "feedback.duckdb"), work=str(tmp_path / "feedback.duckdb.work"),
    )
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, f"child ended before the pause: {child.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "child never reached the pause"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stderr.close()


def test_sigkill_before_the_catalog_swap_leaves_the_previous_snapshot_and_the_next_apply_catches_up(tmp_path, settings):
    work = create_working_db(tmp_path / "feedback.duckdb.work")
    insert_synthetic(work, 0, 1_000, days=20)
    first = LakeMirror(settings).apply(work, generation(work), "run-1")
    before = feedback_rows(work)
    change_rows(work, seed=3)
    work.close()  # the child opens the working database itself

    # Killed after the data files, manifests and the new metadata file are written, before the
    # catalog row points at it.
    _kill_mid_apply(tmp_path, "pyiceberg.catalog.sql", "SqlCatalog", "_write_metadata", call_first=True)

    assert [s.snapshot_id for s in snapshots(settings)] == [first.snapshot_id]
    assert lake_rows(settings) == before
    assert LakeMirror(settings).generation() == first.generation

    work = duckdb.connect(str(tmp_path / "feedback.duckdb.work"))
    commit = LakeMirror(settings).apply(work, generation(work), "run-2")
    assert commit is not None and commit.mode == "incremental"
    assert lake_rows(settings) == feedback_rows(work)
    assert len(snapshots(settings)) == 2
    work.close()


def test_sigkill_after_the_catalog_swap_before_the_key_cache_update_stays_exact(tmp_path, settings):
    work = create_working_db(tmp_path / "feedback.duckdb.work")
    insert_synthetic(work, 0, 1_000, days=20)
    LakeMirror(settings).apply(work, generation(work), "run-1")
    change_rows(work, seed=4)
    work.close()

    _kill_mid_apply(tmp_path, "feedback_pipeline.lake.keys", "KeyCache", "update", call_first=False)

    work = duckdb.connect(str(tmp_path / "feedback.duckdb.work"))
    assert lake_rows(settings) == feedback_rows(work)  # the commit itself had landed
    # Deleting the rows the killed apply inserted needs their locations, which only that apply's
    # cache update would have recorded: the cache must notice it is stale and rebuild.
    commit_change(
        work,
        "SELECT provider, account_id, feedback_id FROM feedback WHERE feedback_id LIKE 'new-4-%'",
        [("DELETE FROM feedback WHERE feedback_id LIKE 'new-4-%'", {})],
    )
    commit = LakeMirror(settings).apply(work, generation(work), "run-3")
    assert commit is not None and commit.mode == "incremental"
    assert lake_rows(settings) == feedback_rows(work)
    work.close()


def test_settings_default_the_catalog_beside_feedback_db_and_keep_the_uri_out_of_repr(tmp_path):
    db = tmp_path / "data" / "feedback.duckdb"
    default = LakeSettings.from_env({"FEEDBACK_LAKE_WAREHOUSE": "s3://bucket/lake"}, db_path=db)
    assert default is not None
    assert default.catalog_uri == f"sqlite:///{tmp_path / 'data' / 'feedback_lake_catalog.db'}"
    assert default.warehouse == "s3://bucket/lake"
    secret = "postgresql+psycopg://lake:s3cr3t-pass@db.internal/catalog"
    explicit = LakeSettings.from_env({"FEEDBACK_LAKE_WAREHOUSE": "lake", "FEEDBACK_LAKE_CATALOG_URI": secret}, db_path=db)
    assert explicit is not None and explicit.catalog_uri == secret
    assert "s3cr3t" not in repr(explicit)
    assert LakeSettings.from_env({"FEEDBACK_LAKE_CATALOG_URI": secret}, db_path=db) is None


def test_with_the_variable_unset_nothing_imports_pyiceberg():
    code = textwrap.dedent(
        """
        import sys
        import feedback_pipeline.definitions
        from feedback_pipeline.lake import LakeSettings
        assert LakeSettings.from_env({}, db_path="data/feedback.duckdb") is None
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "pyiceberg")
        assert not loaded, loaded
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDBACK_LAKE")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
