"""Copy-on-write of whole partitions: the data files one Iceberg snapshot removes and adds.

A touched partition ``(provider, collected_date)`` is rewritten as one new file: its stored rows
minus the changed keys, plus the changed keys' current rows. Partitions are processed in chunks
of about ``CHUNK_ROWS`` rows, so memory follows the chunk, not the change or the table.

pyiceberg 0.12 writes no delete files (its ``delete`` falls back to copy-on-write), and its
``overwrite``/``upsert`` commit a DELETE, an OVERWRITE and an APPEND snapshot in one transaction;
so the files are written here with the helper those methods use (``_dataframe_to_data_files``,
pinned with pyiceberg < 0.13) and handed to ONE overwrite producer by the caller.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, In
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.metadata import TableMetadata

from .table import ARROW_SCHEMA

CHUNK_ROWS = 200_000
EPOCH = date(1970, 1, 1)
Partition = tuple[str, date]
_ORDER = "provider, collected_date, account_id, feedback_id"


@dataclass
class Rewrite:
    """What a commit replaces: files out, files in, and the rows now in the new files."""

    removed: list[DataFile] = field(default_factory=list)
    added: list[DataFile] = field(default_factory=list)
    rows_written: int = 0
    partitions: int = 0


def partition_files(table: Table | None, parts: set[Partition] | None) -> dict[Partition, list[FileScanTask]]:
    """The current data files of ``parts`` (all partitions when ``parts`` is None), by partition.

    The scan's filter only prunes manifests and files by partition values and column bounds; the
    exact partition of each file is then read from its manifest entry."""
    if table is None or table.current_snapshot() is None:
        return {}
    row_filter: BooleanExpression = AlwaysTrue()
    if parts is not None:
        if not parts:
            return {}
        row_filter = And(In("provider", {p for p, _ in parts}), In("collected_date", {d for _, d in parts}))
    found: dict[Partition, list[FileScanTask]] = {}
    for task in table.scan(row_filter=row_filter).plan_files():
        provider, days = task.file.partition[0], task.file.partition[1]
        key = (provider, EPOCH + timedelta(days=days))  # identity(date) partition values are days since epoch
        if parts is None or key in parts:
            found.setdefault(key, []).append(task)
    return found


def chunks(sizes: dict[Partition, int]) -> Iterator[list[Partition]]:
    """Partitions in order, grouped so each group holds about ``CHUNK_ROWS`` rows."""
    group: list[Partition] = []
    rows = 0
    for part in sorted(sizes):
        if group and rows + sizes[part] > CHUNK_ROWS:
            yield group
            group, rows = [], 0
        group.append(part)
        rows += sizes[part]
    if group:
        yield group


def rewrite(
    metadata: TableMetadata,
    io: FileIO,
    old_files: dict[Partition, list[FileScanTask]],
    new_sizes: dict[Partition, int],
    fetch_new: Callable[[list[Partition]], pa.Table],
    changed_keys: pa.Table | None,
) -> Rewrite:
    """Write the new files of every partition in ``old_files`` or ``new_sizes``.

    ``changed_keys`` None means a full rebuild: old files are dropped unread. Otherwise each old
    file is read (it is in a touched partition) and keeps its rows whose key did not change."""
    result = Rewrite()
    sizes = dict(new_sizes)
    for part, tasks in old_files.items():
        sizes[part] = sizes.get(part, 0) + (sum(t.file.record_count for t in tasks) if changed_keys is not None else 0)
    result.partitions = len(sizes)
    write_uuid, counter = uuid.uuid4(), itertools.count(0)
    with duckdb.connect() as scratch:
        if changed_keys is not None:
            scratch.register("changed", changed_keys)
        for group in chunks(sizes):
            tasks = [t for part in group for t in old_files.get(part, [])]
            result.removed.extend(t.file for t in tasks)
            new = fetch_new(group).cast(ARROW_SCHEMA)
            if changed_keys is not None and tasks:
                old = ArrowScan(metadata, io, metadata.schema(), AlwaysTrue()).to_table(tasks).cast(ARROW_SCHEMA)
                scratch.register("old", old)
                scratch.register("new", new)
                rows = scratch.sql(
                    f"""SELECT * FROM old ANTI JOIN changed USING (provider, account_id, feedback_id)
                    UNION ALL SELECT * FROM new ORDER BY {_ORDER}"""
                ).to_arrow_table().cast(ARROW_SCHEMA)
                scratch.unregister("old")
                scratch.unregister("new")
            else:
                rows = new
            for part_rows in _by_partition(rows):
                result.added.extend(_dataframe_to_data_files(table_metadata=metadata, df=part_rows, io=io, write_uuid=write_uuid, counter=counter))
                result.rows_written += part_rows.num_rows
    return result


def _by_partition(rows: pa.Table) -> Iterator[pa.Table]:
    """Zero-copy slices of ``rows`` (sorted by provider and collected_date), one per partition.

    Handing pyiceberg one partition at a time matters: its ``_determine_partitions`` filters the
    whole table once per distinct partition, quadratic for a chunk spanning hundreds of days."""
    if not rows.num_rows:
        return
    counts = rows.group_by(["provider", "collected_date"], use_threads=False).aggregate([([], "count_all")])
    offset = 0
    for length in counts.column("count_all").to_pylist():  # groups in order of first appearance
        yield rows.slice(offset, length)
        offset += length
