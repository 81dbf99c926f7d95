"""A local cache of where each key's row sits in the Iceberg table: key -> ``collected_date``.

Why: the change log names the keys that changed, not where their previous versions were. A row
whose key changed may have moved to another day, and a deleted row is no longer in ``feedback``
at all, so without this cache finding the files to rewrite means reading the key columns of every
data file of the table: a cost that follows the table, not the change. With it, the partitions
to rewrite are a join of the changed keys with this table.

The cache is derived data in its own DuckDB file and records the Iceberg table uuid and snapshot
id it describes. It is updated right after each commit; when it does not describe the table's
current snapshot (a kill between the catalog commit and the cache update, a lost file, another
writer), it is rebuilt from the table's key columns once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from ..warehouse.transaction import transaction

MEMORY_LIMIT = "64MB"


class KeyCache:
    """The cache file at ``path`` (see the module docstring); one connection per apply."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(path), config={"memory_limit": MEMORY_LIMIT, "threads": 2})
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS lake_keys (provider VARCHAR, account_id VARCHAR, feedback_id VARCHAR, collected_date DATE)"
        )
        self.con.execute("CREATE TABLE IF NOT EXISTS lake_keys_state (table_uuid VARCHAR, snapshot_id BIGINT)")

    def close(self) -> None:
        self.con.close()

    def describes(self, table_uuid: str, snapshot_id: int | None) -> bool:
        """True when the cache holds exactly the keys of that table snapshot."""
        rows = self.con.execute("SELECT table_uuid, snapshot_id FROM lake_keys_state").fetchall()
        return rows == [(table_uuid, snapshot_id)]

    def replace(self, rows: pa.RecordBatchReader | pa.Table, table_uuid: str, snapshot_id: int | None) -> None:
        """Replace the whole cache (after a full rebuild, or from the table's key columns)."""
        with self._registered(_rows=rows), transaction(self.con):
            self.con.execute("DELETE FROM lake_keys")
            self.con.execute("INSERT INTO lake_keys SELECT provider, account_id, feedback_id, collected_date FROM _rows")
            self._set_state(table_uuid, snapshot_id)

    def partitions_of(self, keys: pa.Table) -> set[tuple[str, date]]:
        """The ``(provider, collected_date)`` partitions holding the table's rows of ``keys``."""
        with self._registered(_keys=keys):
            rows = self.con.execute(
                "SELECT DISTINCT provider, collected_date FROM lake_keys SEMI JOIN _keys USING (provider, account_id, feedback_id)"
            ).fetchall()
        return {(provider, day) for provider, day in rows}

    def update(self, keys: pa.Table, locations: pa.Table, table_uuid: str, snapshot_id: int) -> None:
        """After a commit: ``keys`` are gone from where they were, ``locations`` are where their
        current rows now sit."""
        with self._registered(_keys=keys, _locations=locations), transaction(self.con):
            self.con.execute("DELETE FROM lake_keys WHERE (provider, account_id, feedback_id) IN (SELECT provider, account_id, feedback_id FROM _keys)")
            self.con.execute("INSERT INTO lake_keys SELECT provider, account_id, feedback_id, collected_date FROM _locations")
            self._set_state(table_uuid, snapshot_id)

    @contextmanager
    def _registered(self, **tables: pa.RecordBatchReader | pa.Table) -> Iterator[None]:
        """Arrow ``tables`` readable in SQL by their names for the block (unregistered after it,
        error or not)."""
        for name, table in tables.items():
            self.con.register(name, table)
        try:
            yield
        finally:
            for name in tables:
                self.con.unregister(name)

    def _set_state(self, table_uuid: str, snapshot_id: int | None) -> None:
        self.con.execute("DELETE FROM lake_keys_state")
        self.con.execute("INSERT INTO lake_keys_state VALUES (?, ?)", [table_uuid, snapshot_id])
