"""The Iceberg table ``feedback.feedback``: its schema, partition spec, and the SQL catalog.

Columns and types follow the contract (``schema.FEEDBACK_COLUMNS``): VARCHAR -> string,
TIMESTAMPTZ -> timestamptz (microseconds, UTC), DATE -> date, DOUBLE -> double, JSON -> string;
NOT NULL columns are required fields. Partitioned by ``provider`` and ``collected_date``
(identity: the contract's partition key, so a reader's filter on it prunes files directly).
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DateType, DoubleType, NestedField, PrimitiveType, StringType, TimestamptzType

from ..schema import FEEDBACK_COLUMNS, KEY_COLUMNS
from .settings import CATALOG_NAME, LakeSettings

NAMESPACE = "feedback"
TABLE = (NAMESPACE, "feedback")
TABLE_NAME = "feedback.feedback"
PARTITION_COLUMNS = ("provider", "collected_date")
# Snapshot summary and table properties written by every commit of the mirror.
GENERATION_PROPERTY = "feedback.generation"
RUN_ID_PROPERTY = "feedback.run-id"
# The working database the generation counts in (changes.source_identity): a table mirrored from
# another working database is rebuilt, whatever generation it records.
SOURCE_PROPERTY = "feedback.source-database"

_TYPES: dict[str, PrimitiveType] = {
    "VARCHAR": StringType(),
    "JSON": StringType(),
    "TIMESTAMPTZ": TimestamptzType(),
    "DATE": DateType(),
    "DOUBLE": DoubleType(),
}


def _iceberg_schema() -> Schema:
    fields = []
    for field_id, (name, sqltype, _) in enumerate(FEEDBACK_COLUMNS, start=1):
        base, _, constraint = sqltype.partition(" ")
        fields.append(NestedField(field_id, name, _TYPES[base], required=constraint == "NOT NULL"))
    key_ids = [i for i, (name, _, _) in enumerate(FEEDBACK_COLUMNS, start=1) if name in KEY_COLUMNS]
    # Identifier fields tell engines (Spark MERGE, Flink upserts) what the row key is.
    return Schema(*fields, identifier_field_ids=key_ids)


SCHEMA = _iceberg_schema()
ARROW_SCHEMA: pa.Schema = SCHEMA.as_arrow()
PARTITION_SPEC = PartitionSpec(
    *(
        PartitionField(source_id=SCHEMA.find_field(name).field_id, field_id=1000 + i, transform=IdentityTransform(), name=name)
        for i, name in enumerate(PARTITION_COLUMNS)
    )
)
TABLE_PROPERTIES = {
    "format-version": "2",
    # One file per touched partition is the aim (see rewrite.py); this only caps a huge partition.
    "write.target-file-size-bytes": str(512 * 1024 * 1024),
    "write.parquet.compression-codec": "zstd",
    # One metadata file and one snapshot per run: keep what time travel needs, not every run
    # ever (each commit copies the snapshot list; mirror.py expires snapshots past the age).
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
    "history.expire.max-snapshot-age-ms": str(7 * 24 * 3600 * 1000),
    # Column bounds only where readers filter (and where they prune files): every bound is kept
    # per data file in the manifests, which each commit reads and rewrites for the touched
    # partitions, so bounds of the free-text columns would cost every commit for nothing.
    "write.metadata.metrics.default": "counts",
    **{f"write.metadata.metrics.column.{name}": "truncate(16)" for name in ("provider", "account_id", "feedback_id", "status", "category")},
    **{f"write.metadata.metrics.column.{name}": "full" for name in ("collected_at", "collected_date", "updated_at", "rating", "ingested_at")},
}


def open_catalog(settings: LakeSettings) -> SqlCatalog:
    """The SQL catalog named ``feedback``; creates its tables on first use (pyiceberg does)."""
    return SqlCatalog(CATALOG_NAME, uri=settings.catalog_uri, warehouse=settings.warehouse)


def load_table(catalog: SqlCatalog) -> Table | None:
    try:
        return catalog.load_table(TABLE)
    except NoSuchTableError:
        return None


def ensure_namespace(catalog: SqlCatalog) -> None:
    try:
        catalog.create_namespace(NAMESPACE)
    except NamespaceAlreadyExistsError:
        pass
