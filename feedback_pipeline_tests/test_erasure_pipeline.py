"""Erasure end to end: the real ``feedback_ingest`` job fills the warehouse and the Iceberg copy
from the sandbox, ``feedback-pipeline erase`` removes one person while an analyst holds the
snapshot open, no file under the warehouse directory keeps the person's bytes (working file, WAL,
both snapshots, the Iceberg data files), and a later run over the same range, while the sandbox
still serves the person's records, does not bring them back and counts them as suppressed."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feedback_pipeline.assets import metadata_by_provider
from feedback_pipeline.cli import main
from feedback_pipeline.definitions import build_definitions
from feedback_pipeline.lake import LakeSettings
from feedback_pipeline.schedules import RANGE_END_TAG, RANGE_START_TAG
from feedback_pipeline.schema import FEEDBACK_COLUMNS
from feedback_pipeline.settings import FULL_REFRESH_TAG

pytest.importorskip("pyiceberg")  # the `lake` extra, which `make install` includes

from feedback_pipeline.lake.table import TABLE, open_catalog  # noqa: E402
from .conftest import job_environment  # noqa: E402

UTC = timezone.utc
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
COLUMNS = ", ".join(name for name, _, _ in FEEDBACK_COLUMNS)
ORDER = "provider, account_id, feedback_id"
# The provider whose sandbox record is turned into a reject naming the person (its native
# fields): the erasure must find the identifier inside reject payloads too.
REJECT_PROVIDER, DATE_FIELD, EMAIL_FIELD = "feedbackkit", "createdAt", "userEmail"


@pytest.fixture
def pipeline(sandbox, tmp_path: Path, monkeypatch):
    today = datetime.now(UTC).date()
    warehouse = tmp_path / "warehouse"
    env = job_environment(monkeypatch, sandbox.env(), warehouse / "feedback.duckdb", FEEDBACK_LAKE_WAREHOUSE=str(warehouse / "lake"))
    job = build_definitions(env).resolve_job_def("feedback_ingest")
    instance = dg.DagsterInstance.ephemeral()
    first = today - timedelta(days=9)

    def run(**tags) -> dg.ExecuteInProcessResult:
        result = job.execute_in_process(
            instance=instance, tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: today.isoformat(), **tags}, run_config=QUIET
        )
        assert result.success
        return result

    run.db = Path(env["FEEDBACK_DB"])  # type: ignore[attr-defined]
    run.dir = warehouse  # type: ignore[attr-defined]
    run.lake = LakeSettings.from_env(env, db_path=env["FEEDBACK_DB"])  # type: ignore[attr-defined]
    return run


def query(db: Path, sql: str, params=None) -> list[tuple]:
    """What a new analyst connection to FEEDBACK_DB sees."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def lake_rows(settings: LakeSettings) -> list[tuple]:
    arrow = open_catalog(settings).load_table(TABLE).scan().to_arrow()
    reader = duckdb.connect()
    reader.execute("SET TimeZone = 'UTC'")
    reader.register("lake", arrow)
    return reader.execute(f"SELECT {COLUMNS} FROM lake ORDER BY {ORDER}").fetchall()


def files_holding(root: Path, identifier: str) -> set[str]:
    """Files under ``root`` holding ``identifier`` (any case): in their raw bytes (DuckDB files,
    WAL, catalog, manifests), and for Parquet files in any decoded string column (their pages
    are compressed, so raw bytes would not show it)."""
    needle = re.compile(re.escape(identifier.encode()), re.IGNORECASE)
    found = set()
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if needle.search(path.read_bytes()):
            found.add(str(path.relative_to(root)))
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            for column in table.columns:
                if (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) and pc.any(pc.match_substring(pc.utf8_lower(column), identifier.lower())).as_py():
                    found.add(str(path.relative_to(root)))
                    break
    return found


def test_erase_removes_one_person_everywhere_and_a_later_run_keeps_them_out(pipeline, sandbox, capsys):
    pipeline()
    # The person: an e-mail with rows at two providers or more in the synced range.
    person, providers = query(
        pipeline.db,
        "SELECT lower(user_email), count(DISTINCT provider) FROM feedback WHERE user_email IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
    )[0]
    assert providers >= 2
    # One more of the person's records, which the pipeline rejects (its date does not parse):
    # the payload kept in feedback_rejects names the person.
    other = query(pipeline.db, "SELECT feedback_id FROM feedback WHERE provider = ? AND user_email IS NULL ORDER BY 1 LIMIT 1", [REJECT_PROVIDER])[0][0]
    sandbox.sandbox.update(REJECT_PROVIDER, other, {DATE_FIELD: "not-a-date", EMAIL_FIELD: person})
    pipeline()
    theirs = query(pipeline.db, f"SELECT {COLUMNS} FROM feedback WHERE lower(user_email) = ? ORDER BY {ORDER}", [person])
    per_provider = Counter(r[0] for r in theirs)
    everything = query(pipeline.db, f"SELECT {COLUMNS} FROM feedback ORDER BY {ORDER}")
    rejects = query(pipeline.db, "SELECT provider, record_key, reason FROM feedback_rejects ORDER BY ALL")
    assert (REJECT_PROVIDER, other, "unparseable_collected_at") in rejects
    # The scan sees the person where they are: it can fail.
    held = files_holding(pipeline.dir, person)
    assert {"feedback.duckdb.work", "feedback.duckdb.a"} <= held or {"feedback.duckdb.work", "feedback.duckdb.b"} <= held
    assert any(name.endswith(".parquet") for name in held)

    analyst = duckdb.connect(str(pipeline.db), read_only=True)  # opened before the erasure
    try:
        assert main(["erase", "--email", person.upper()]) == 0
        out = capsys.readouterr().out
        assert f"{len(theirs)} feedback row(s) removed" in out and "1 reject(s) removed" in out
        assert person not in out.lower()
        # The open session keeps the snapshot it had until it closes (README).
        assert analyst.execute("SELECT count(*) FROM feedback WHERE lower(user_email) = ?", [person]).fetchone()[0] == len(theirs)
    finally:
        analyst.close()

    # A new connection sees exactly everyone else, unchanged (ingested_at included).
    assert query(pipeline.db, f"SELECT {COLUMNS} FROM feedback ORDER BY {ORDER}") == [r for r in everything if r not in theirs]
    assert query(pipeline.db, "SELECT provider, record_key, reason FROM feedback_rejects ORDER BY ALL") == [
        r for r in rejects if r != (REJECT_PROVIDER, other, "unparseable_collected_at")
    ]
    audit = query(pipeline.db, "SELECT provider, kind, identifier_hash, rows_removed, rejects_removed FROM pipeline_erasures")
    assert len(audit) == 1 and audit[0][:2] == (None, "email") and audit[0][3:] == (len(theirs), 1)
    assert re.fullmatch("[0-9a-f]{64}", audit[0][2])
    # No file under the warehouse directory holds the person's bytes any more.
    assert files_holding(pipeline.dir, person) == set()
    table = open_catalog(pipeline.lake).load_table(TABLE)
    assert len(table.snapshots()) == 1  # older snapshots expired with their files
    assert lake_rows(pipeline.lake) == query(pipeline.db, f"SELECT {COLUMNS} FROM feedback ORDER BY {ORDER}")

    # The sandbox still serves the person's records: a full refresh of the range reads them all.
    result = pipeline(**{FULL_REFRESH_TAG: "true"})
    assert query(pipeline.db, "SELECT count(*) FROM feedback WHERE lower(user_email) = ?", [person]) == [(0,)]
    assert (REJECT_PROVIDER, other, "unparseable_collected_at") not in query(pipeline.db, "SELECT provider, record_key, reason FROM feedback_rejects")
    suppressed = {p: m["rows_suppressed"] for p, m in metadata_by_provider(result).items()}
    expected = {p: per_provider.get(p, 0) + (1 if p == REJECT_PROVIDER else 0) for p in suppressed}
    assert suppressed == expected and sum(expected.values()) == len(theirs) + 1
    assert files_holding(pipeline.dir, person) == set()
    assert lake_rows(pipeline.lake) == query(pipeline.db, f"SELECT {COLUMNS} FROM feedback ORDER BY {ORDER}")
