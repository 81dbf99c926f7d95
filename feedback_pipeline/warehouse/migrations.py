"""The schema, as an append-only list of migrations, and the analyst views (``views/*.sql``).

The working database and every snapshot file are built by the same migrations, so a snapshot
has exactly the working database's tables and views (working-only tables stay empty in it).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from importlib import resources
from typing import Any

import duckdb

from .. import erasure
from ..schema import FEEDBACK_COLUMNS, REJECT_COLUMNS
from . import changes
from .model import UTC
from .transaction import transaction

VIEWS = ("feedback_daily_counts", "feedback_status_funnel", "nps_daily", "mintlify_page_helpfulness")


# Long free texts: DuckDB's automatic choice stores them uncompressed; ZSTD makes them ~4x
# smaller (measured on sandbox data: the feedback table 51.7 MB -> 13.4 MB), and DuckDB 1.4
# reads ZSTD columns of storage version v1.4.0 files.
ZSTD_COLUMNS = frozenset({"title", "body", "attributes", "payload"})


def _ddl_columns(columns: tuple[tuple[str, str, Any], ...], compressed: frozenset[str] = frozenset()) -> str:
    return ",\n    ".join(f"{name} {sqltype}" + (" USING COMPRESSION zstd" if name in compressed else "") for name, sqltype, _ in columns)


def _recreate(table: str, columns: tuple[tuple[str, str, Any], ...]) -> tuple[str, ...]:
    """Statements that rebuild ``table`` with ZSTD_COLUMNS compressed (DuckDB has no ALTER for a
    column's compression); the rows are copied as they are."""
    return (
        f"CREATE TABLE {table}_rebuilt (\n    {_ddl_columns(columns, ZSTD_COLUMNS)}\n)",
        f"INSERT INTO {table}_rebuilt SELECT * FROM {table}",
        f"DROP TABLE {table}",
        f"ALTER TABLE {table}_rebuilt RENAME TO {table}",
    )


def _view(name: str) -> str:
    """The view's statement from ``views/<name>.sql``; ``{answers}`` in it (nps_daily) becomes the
    union of the provider specs' ``nps_answers`` queries, so each provider's rule lives once, in
    its own module."""
    text = resources.files(__package__).joinpath("views", f"{name}.sql").read_text(encoding="utf-8")
    if "{answers}" in text:
        from ..providers import specs

        queries = [spec.nps_answers for spec in specs().values() if spec.nps_answers]
        answers = "\n    UNION ALL\n".join(f"    SELECT collected_date, score FROM ({query})" for query in queries)
        text = text.replace("{answers}", answers or "    SELECT NULL::DATE AS collected_date, NULL::DOUBLE AS score WHERE false")
    return text


def refresh_views(con: duckdb.DuckDBPyConnection, *, snapshot: bool = False) -> None:
    """Re-create the views whose rendered statement changed since it was applied (a provider spec's
    ``nps_answers`` changed, or a provider came or went): ``pipeline_views`` keeps a digest of each.
    In the working database a change marks the snapshot behind and due for a full copy."""
    exists = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pipeline_views' AND database_name = current_database()"
    if not con.execute(exists).fetchone()[0]:
        return  # a schema from before migration 8 (only while an older schema is being tested)
    stored = dict(con.execute("SELECT name, digest FROM pipeline_views").fetchall())
    current = {name: hashlib.sha256(_view(name).encode()).hexdigest() for name in VIEWS}
    stale = [name for name, digest in current.items() if stored.get(name) != digest]
    if not stale:
        return
    with transaction(con):
        for name in stale:
            con.execute(_view(name))
            con.execute("INSERT OR REPLACE INTO pipeline_views VALUES (?, ?)", [name, current[name]])
        if not snapshot:
            changes.log_everything(con, changes.bump(con))


# Migrations: index i brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE TABLE feedback (\n    {_ddl_columns(FEEDBACK_COLUMNS)}\n)",
        f"CREATE TABLE feedback_rejects (\n    {_ddl_columns(REJECT_COLUMNS)}\n)",
        # Per provider account and collected day: when the day was last read completely and up
        # to which instant every change of it is known (the watermark of change queries).
        """CREATE TABLE pipeline_sync_days (
            provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL, day DATE NOT NULL,
            synced_at TIMESTAMPTZ NOT NULL, watermark TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (provider, account_id, day))""",
        # In-flight queries: the resume value of the last committed page of an unfinished query.
        """CREATE TABLE pipeline_cursors (
            provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL, query_key VARCHAR NOT NULL,
            first_day DATE NOT NULL, last_day DATE NOT NULL, changes_since TIMESTAMPTZ,
            started_at TIMESTAMPTZ NOT NULL, resume JSON NOT NULL, pages INTEGER NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (provider, account_id, query_key))""",
        # Keys seen by an unfinished full refresh (rows of the window not seen get deleted at its end).
        """CREATE TABLE pipeline_refresh_keys (
            provider VARCHAR NOT NULL, account_id VARCHAR NOT NULL, query_key VARCHAR NOT NULL,
            feedback_id VARCHAR NOT NULL)""",
    ),
    # 2: analyst views (README "Querying"); views, so they are always as fresh as the table.
    tuple(_view(name) for name in VIEWS),
    # 3: the publish generation. `generation` counts the committed transactions that changed what
    # analysts see (bumped inside them); `published` is the generation FEEDBACK_DB shows.
    (
        "CREATE TABLE pipeline_publish (generation BIGINT NOT NULL, published BIGINT NOT NULL)",
        "INSERT INTO pipeline_publish VALUES (0, 0)",
    ),
    # 4: the change log that makes publishing incremental (see changes.py): the keys each
    # generation changed, and the generation each snapshot file was last brought to.
    (
        """CREATE TABLE pipeline_changes (
            generation BIGINT NOT NULL, provider VARCHAR, account_id VARCHAR, feedback_id VARCHAR,
            collected_date DATE)""",
        "CREATE TABLE pipeline_snapshot_files (file VARCHAR PRIMARY KEY, generation BIGINT NOT NULL)",
        "ALTER TABLE pipeline_publish ADD COLUMN changes_since BIGINT",
        "UPDATE pipeline_publish SET changes_since = generation",
    ),
    # 5: the long texts compressed with ZSTD (see ZSTD_COLUMNS).
    (*_recreate("feedback", FEEDBACK_COLUMNS), *_recreate("feedback_rejects", REJECT_COLUMNS)),
    # 6: erasure of one person (erasure.py holds the statements): the salt, the audit of
    # erasures (salted digests only) and the suppression list later writes consult.
    erasure.DDL,
    # 7: the request ledger of APIs with a request budget (budget.py): one row per request sent
    # in the last window, per organization (a digest of its API key, never the key).
    ("CREATE TABLE pipeline_request_ledger (organization VARCHAR NOT NULL, sent_at TIMESTAMPTZ NOT NULL)",),
    # 8: a digest of each analyst view's statement as applied (refresh_views re-creates a view
    # whose rendered statement changed, e.g. nps_daily when a provider spec's NPS query does).
    ("CREATE TABLE pipeline_views (name VARCHAR PRIMARY KEY, digest VARCHAR NOT NULL)",),
    # 9: when each logged row was written (its ``ingested_at``), so a publish reads the current
    # rows of the changed keys only from row groups written since (changes.written_since).
    ("ALTER TABLE pipeline_changes ADD COLUMN ingested_at TIMESTAMPTZ",),
    # 10: the collected date a changed key's row had before the change (changes.py), so a
    # publish deletes a snapshot's old copies within the dates they sit on.
    ("ALTER TABLE pipeline_changes ADD COLUMN previous_date DATE",),
    # 11: per database file, an upper bound of the feedback table's row groups beyond what its
    # rows fill, so a checkpoint counts them only when a merge may be due (vacuum.py).
    ("CREATE TABLE pipeline_row_groups (file VARCHAR PRIMARY KEY, extra BIGINT NOT NULL, generation BIGINT NOT NULL)",),
)
# The first schema version that has ``pipeline_publish``: migrations from then on mark the
# snapshot behind, and (with the change log) due for a full copy.
GENERATION_SINCE = 3


def schema_version(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> int:
    table = f"{catalog}.pipeline_schema_version" if catalog else "pipeline_schema_version"
    return con.execute(f"SELECT coalesce(max(version), 0) FROM {table}").fetchone()[0]


def migrate(con: duckdb.DuckDBPyConnection, *, snapshot: bool = False) -> None:
    """Bring the database of ``con``'s current catalog to the newest schema, one transaction per
    migration. In the working database each migration from ``GENERATION_SINCE`` on marks the
    snapshot behind and due for a full copy (new tables or views must reach it); ``snapshot``
    builds a snapshot file's schema, which has no generation of its own to bump."""
    con.execute("CREATE TABLE IF NOT EXISTS pipeline_schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    current = schema_version(con)
    if current > len(MIGRATIONS):
        raise RuntimeError(f"the warehouse has schema version {current}, newer than this pipeline knows ({len(MIGRATIONS)}); upgrade the pipeline.")
    for version in range(current, len(MIGRATIONS)):
        with transaction(con):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            if not snapshot and version + 1 >= GENERATION_SINCE:
                changes.log_everything(con, changes.bump(con))
            con.execute("INSERT INTO pipeline_schema_version VALUES (?, ?)", [version + 1, datetime.now(UTC)])
    refresh_views(con, snapshot=snapshot)
