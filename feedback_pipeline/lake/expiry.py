"""After an erasure, the Iceberg copy keeps no file that holds the erased rows.

Iceberg removes rows by writing new files: the old data files stay on storage for time travel as
long as a snapshot references them, and pyiceberg 0.12's ``ExpireSnapshots`` drops snapshots
from the metadata only (it deletes no file, and pyiceberg 0.12 has no remove-orphan-files). So
the mirror, on its first apply after an erasure (``pending``), expires every snapshot but the
current one and deletes every data file and manifest under the table's location that the
current snapshot does not reference (``purge``). Files are found by listing the location with
pyarrow's FileSystem (the one behind pyiceberg's default FileIO: local paths and object stores),
so files an earlier age-based expiry or a killed commit left behind go too. Metadata JSON files
stay: they hold snapshot lists and properties, never rows.

The count of erasures purged is a table property, committed only once the files are deleted, so
a purge that fails at any point (a storage error while listing or deleting, a kill) is pending
again and the next apply repeats it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import duckdb
from pyarrow import fs
from pyiceberg.table import Table
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.update.snapshot import ExpireSnapshots

PURGED_PROPERTY = "feedback.erasures-purged"


@dataclass(frozen=True)
class Purge:
    snapshots_expired: int
    files_deleted: int


def erasures(con: duckdb.DuckDBPyConnection) -> int:
    """How many erasures the working database records (0 before its erasure migration)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pipeline_erasures' AND database_name = current_database()"
    ).fetchone()[0]
    return con.execute("SELECT count(*) FROM pipeline_erasures").fetchone()[0] if exists else 0


def pending(con: duckdb.DuckDBPyConnection, table: Table) -> int | None:
    """The erasure count to purge up to, or None when the table already reflects every erasure."""
    count = erasures(con)
    return count if count > int(table.properties.get(PURGED_PROPERTY, "0")) else None


def purge(table: Table, erasures_purged: int) -> Purge:
    """Expire every unprotected snapshot but the current one, delete the files no remaining
    snapshot references, then record ``erasures_purged`` (see the module docstring). Readers on
    other engines holding an expired snapshot lose its files: that is the point of an erasure."""
    protected = {ref.snapshot_id for ref in table.metadata.refs.values() if ref.snapshot_ref_type in (SnapshotRefType.BRANCH, SnapshotRefType.TAG)}
    old = [s.snapshot_id for s in table.snapshots() if s.snapshot_id not in protected]
    if old:
        with table.transaction() as txn:
            ExpireSnapshots(txn).by_ids(old).commit()
        table = table.refresh()
    deleted = _delete_unreferenced(table)
    with table.transaction() as txn:
        txn.set_properties({PURGED_PROPERTY: str(erasures_purged)})
    return Purge(len(old), deleted)


def _referenced(table: Table) -> tuple[set[str], set[str]]:
    """(data files, manifest and manifest-list files) of the table's remaining snapshots, as
    filesystem paths."""
    data: set[str] = set()
    meta: set[str] = set()
    for snapshot in table.snapshots():
        meta.add(_fs_path(snapshot.manifest_list))
        for manifest in snapshot.manifests(table.io):
            meta.add(_fs_path(manifest.manifest_path))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                data.add(_fs_path(entry.data_file.file_path))
    return data, meta


def _delete_unreferenced(table: Table) -> int:
    data, meta = _referenced(table)
    filesystem, root = fs.FileSystem.from_uri(table.location())
    deleted = 0
    for folder, keep, suffix in (("data", data, ""), ("metadata", meta, ".avro")):
        selector = fs.FileSelector(f"{root.rstrip('/')}/{folder}", recursive=True, allow_not_found=True)
        for info in filesystem.get_file_info(selector):
            if info.type == fs.FileType.File and info.path.endswith(suffix) and _normalized(info.path) not in keep:
                filesystem.delete_file(info.path)
                deleted += 1
    return deleted


def _fs_path(uri: str) -> str:
    """A location as pyarrow's FileSystem names it: a local path, or ``bucket/key``. Split by hand,
    not with ``urlparse``: a ``#`` or ``?`` in a folder name is part of the path here, and read
    as a fragment or query it would cut every referenced path short, so the purge would delete
    the current snapshot's own files."""
    scheme, separator, rest = uri.partition("://")
    if separator and "/" not in scheme:
        return _normalized(rest)  # file:///x -> /x; s3://bucket/key -> bucket/key
    if uri.startswith("file:"):
        return _normalized(uri[len("file:"):])  # file:/x -> /x
    return _normalized(uri)  # a plain path


def _normalized(path: str) -> str:
    return os.path.normpath(path) if path.startswith("/") else path
