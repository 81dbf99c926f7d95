"""Cost of the Iceberg mirror's commit (``LakeMirror.apply``) at a given table size.

A working database with the contract's ``feedback`` table and the change log is filled with
synthetic rows by SQL (5 providers x 365 days), mirrored once (a full build, timed), then a
1% change is committed the way the warehouse commits (generation bumped, keys logged) and applied
``--repeat`` times, each with fresh changes. The realistic change is what an hourly run commits:
updates and deletions in the lookback window (today and 7 days before) and new rows of today;
``--spread`` also times 1% of updates spread over every day (every partition rewritten).

    .venv/bin/python -m bench.lake --records 200000
    .venv/bin/python -m bench.lake --records 1000000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from bench import common as C
from feedback_pipeline.schema import FEEDBACK_COLUMNS

ACCOUNT = "acct-1"
END_DAY = date(2026, 1, 31)


def create_working_db(path: Path) -> duckdb.DuckDBPyConnection:
    """A working database with ``feedback`` (the contract's DDL from schema.py), the publish
    generation and the change log, as the warehouse lays them out."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    columns = ",\n    ".join(f"{name} {sqltype}" for name, sqltype, _ in FEEDBACK_COLUMNS)
    con.execute(f"CREATE TABLE feedback (\n    {columns}\n)")
    con.execute("CREATE TABLE pipeline_publish (generation BIGINT NOT NULL, published BIGINT NOT NULL, changes_since BIGINT)")
    con.execute("INSERT INTO pipeline_publish VALUES (0, 0, 0)")
    con.execute("CREATE TABLE pipeline_changes (generation BIGINT NOT NULL, provider VARCHAR, account_id VARCHAR, feedback_id VARCHAR)")
    # The database's identity for the lake (lake.changes.source_identity): when it was created.
    con.execute("CREATE TABLE pipeline_schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    con.execute("INSERT INTO pipeline_schema_version VALUES (1, now())")
    return con


def synthetic_rows_sql(first: int, count: int, days: int, end_day: date = END_DAY) -> tuple[str, dict[str, Any]]:
    """A SELECT of ``count`` rows with ids ``first..first+count-1``, spread over ``days`` days
    ending at ``end_day`` and over the five providers."""
    providers = list(C.PROVIDERS)
    sql = f"""SELECT
        ($providers)[1 + i % 5] AS provider,
        '{ACCOUNT}' AS account_id,
        'fb-' || lpad(i::VARCHAR, 9, '0') AS feedback_id,
        ($end::TIMESTAMP - to_days(CAST((i // 5) % $days AS INTEGER)) + to_seconds(i % 86400))::TIMESTAMPTZ AS collected_at,
        CAST(timezone('UTC', collected_at) AS DATE) AS collected_date,
        collected_at + INTERVAL 1 HOUR AS updated_at,
        (['open', 'in_progress', 'resolved', 'dismissed', NULL])[1 + i % 5] AS status,
        (['pending', 'in_progress', 'done', 'rejected', 'x'])[1 + i % 5] AS provider_status,
        'category-' || (i % 7) AS category,
        CASE WHEN i % 3 = 0 THEN 'title ' || i END AS title,
        'synthetic feedback text number ' || i || ' ' || repeat('lorem ipsum ', 6) AS body,
        CASE WHEN i % 2 = 0 THEN (i % 11)::DOUBLE END AS rating,
        'user-' || (i % 5000) AS user_id,
        'user' || (i % 5000) || '@example.com' AS user_email,
        '/docs/page-' || (i % 300) AS page_url,
        json_object('votes', i % 100, 'n', i)::JSON AS attributes,
        TIMESTAMPTZ '2026-02-01 00:00:00+00' AS ingested_at
    FROM range($first, $first + $count) t(i)"""
    return sql, {"providers": providers, "end": end_day, "days": days, "first": first, "count": count}


def commit_change(con: duckdb.DuckDBPyConnection, keys_sql: str, statements: list[tuple[str, dict[str, Any]]], params: dict[str, Any] | None = None) -> int:
    """One warehouse-style transaction: bump the generation, log the keys ``keys_sql`` selects
    (columns provider, account_id, feedback_id), run ``statements``; returns the generation."""
    con.execute("BEGIN TRANSACTION")
    generation = con.execute("UPDATE pipeline_publish SET generation = generation + 1 RETURNING generation").fetchone()[0]
    con.execute(f"INSERT INTO pipeline_changes SELECT $gen, provider, account_id, feedback_id FROM ({keys_sql})", {**(params or {}), "gen": generation})
    for sql, args in statements:
        con.execute(sql, args)
    con.execute("COMMIT")
    return generation


def insert_synthetic(con: duckdb.DuckDBPyConnection, first: int, count: int, days: int, end_day: date = END_DAY) -> int:
    sql, params = synthetic_rows_sql(first, count, days, end_day)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS {sql}", params)
    generation = commit_change(con, "SELECT provider, account_id, feedback_id FROM _new", [("INSERT INTO feedback SELECT * FROM _new", {})])
    con.execute("DROP TABLE _new")
    return generation


def one_percent_change(con: duckdb.DuckDBPyConnection, stored: int, next_id: int, seed: int, *, spread: bool, keys: int | None = None) -> tuple[int, int]:
    """Commit a change of 1% of ``stored`` rows (or of ``keys`` rows); returns (generation, keys).
    Realistic (default): half updates and a tenth deletions among the lookback window's rows,
    the rest new rows of today. ``spread``: updates only, uniformly over every stored row."""
    n = keys or max(1, stored // 100)
    window = "TRUE" if spread else f"collected_date >= DATE '{END_DAY - timedelta(days=C.LOOKBACK_DAYS)}'"
    updates = n if spread else n // 2
    deletes = 0 if spread else n // 10
    inserts = n - updates - deletes
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _pick AS
        SELECT provider, account_id, feedback_id, row_number() OVER () AS k FROM (
            SELECT provider, account_id, feedback_id FROM feedback WHERE {window}
            ORDER BY hash(feedback_id, $seed) LIMIT $m)""",
        {"seed": seed, "m": updates + deletes},
    )
    new_sql, new_params = synthetic_rows_sql(next_id, inserts, 1)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS {new_sql}", new_params)
    generation = commit_change(
        con,
        "SELECT provider, account_id, feedback_id FROM _pick UNION ALL SELECT provider, account_id, feedback_id FROM _new",
        [
            (f"UPDATE feedback SET status = 'resolved', provider_status = 'changed {seed}', ingested_at = now() "
             f"WHERE (provider, account_id, feedback_id) IN (SELECT provider, account_id, feedback_id FROM _pick WHERE k <= {updates})", {}),
            (f"DELETE FROM feedback WHERE (provider, account_id, feedback_id) IN (SELECT provider, account_id, feedback_id FROM _pick WHERE k > {updates})", {}),
            ("INSERT INTO feedback SELECT * FROM _new", {}),
        ],
    )
    return generation, n


def bench_lake(records: int, repeat: int = 3, spread: bool = False, change_keys: int | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Time the initial build and the 1% incremental apply at ``records`` stored rows."""
    from feedback_pipeline.lake import LakeMirror, LakeSettings

    root = Path(tempfile.mkdtemp(prefix="bench-lake-", dir=workdir))
    try:
        db = root / "feedback.duckdb"
        con = create_working_db(root / "feedback.duckdb.work")
        started = time.monotonic()
        generation = insert_synthetic(con, 0, records, C.DAYS)
        out: dict[str, Any] = {"records": records, "fill_seconds": round(time.monotonic() - started, 2)}
        settings = LakeSettings.from_env({"FEEDBACK_LAKE_WAREHOUSE": str(root / "lake")}, db_path=db)
        assert settings is not None
        mirror = LakeMirror(settings)
        out["initial"] = _timed(mirror, con, generation, "bench-initial")
        next_id, runs = records, []
        for index in range(repeat):
            generation, keys = one_percent_change(con, records, next_id, seed=index, spread=False, keys=change_keys)
            next_id += keys
            runs.append(_timed(mirror, con, generation, f"bench-{index}"))
        out["incremental"] = runs
        out["incremental_seconds_median"] = statistics.median(r["seconds"] for r in runs)
        out["incremental_cpu_seconds_median"] = statistics.median(r["cpu_seconds"] for r in runs)
        out["nothing_changed"] = _timed(mirror, con, generation, "bench-nothing")
        if spread:
            generation, keys = one_percent_change(con, records, next_id, seed=99, spread=True, keys=change_keys)
            out["spread"] = _timed(mirror, con, generation, "bench-spread")
        con.close()
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _timed(mirror: Any, con: duckdb.DuckDBPyConnection, generation: int, run_id: str) -> dict[str, Any]:
    """One apply: its LakeCommit fields, wall seconds and the process's CPU seconds (all threads;
    steadier than wall time on a shared machine)."""
    wall, cpu = time.monotonic(), time.process_time()
    commit = mirror.apply(con, generation, run_id)
    result = dict(commit.__dict__) if commit else {"snapshot_id": None}
    result["seconds"] = round(time.monotonic() - wall, 3)
    result["cpu_seconds"] = round(time.process_time() - cpu, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="stored rows (default 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="1%% applies to time (default 3)")
    parser.add_argument("--spread", action="store_true", help="also time 1%% of updates spread over every day")
    parser.add_argument("--change-keys", type=int, help="keys per change instead of 1%% of --records (same change at two sizes)")
    parser.add_argument("--output", type=Path, help="write the JSON here too")
    args = parser.parse_args()
    result = bench_lake(args.records, args.repeat, args.spread, args.change_keys)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
