"""The unified feedback schema: column names, DuckDB and Arrow types, unified statuses.

Everything here is fixed by the public contract (``CONTRACT.md`` section 4); analysts, dashboards
and checks depend on these names. Each provider's status table is in its spec (``providers/``).
"""

from __future__ import annotations

import pyarrow as pa

from .memory import keep_pandas_unloaded

# Every module that builds Arrow data imports this one first: pyarrow is told here, once per
# process, that it need not load pandas (memory.keep_pandas_unloaded).
keep_pandas_unloaded()

# (column, DuckDB type, Arrow type) in table order. ``ingested_at`` is set by the warehouse.
FEEDBACK_COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("provider", "VARCHAR NOT NULL", pa.string()),
    ("account_id", "VARCHAR NOT NULL", pa.string()),
    ("feedback_id", "VARCHAR NOT NULL", pa.string()),
    ("collected_at", "TIMESTAMPTZ NOT NULL", pa.timestamp("us", tz="UTC")),
    ("collected_date", "DATE NOT NULL", pa.date32()),
    ("updated_at", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("status", "VARCHAR", pa.string()),
    ("provider_status", "VARCHAR", pa.string()),
    ("category", "VARCHAR", pa.string()),
    ("title", "VARCHAR", pa.string()),
    ("body", "VARCHAR", pa.string()),
    ("rating", "DOUBLE", pa.float64()),
    ("user_id", "VARCHAR", pa.string()),
    ("user_email", "VARCHAR", pa.string()),
    ("page_url", "VARCHAR", pa.string()),
    ("attributes", "JSON", pa.string()),
    ("ingested_at", "TIMESTAMPTZ NOT NULL", pa.timestamp("us", tz="UTC")),
)

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "provider": "mintlify, usersnap, formbricks, mapbox or feedbackkit",
    "account_id": "Mintlify project, Usersnap project, Formbricks tenant, MAPBOX_ACCOUNT or FEEDBACKKIT_PROJECT",
    "feedback_id": "the provider's id of the record",
    "collected_at": "when the end user gave the feedback (UTC)",
    "collected_date": "UTC date of collected_at: the partition key",
    "updated_at": "the provider's last-update time, where it has one",
    "status": "unified status: open, in_progress, resolved, dismissed, or NULL",
    "provider_status": "the provider's own status value, unchanged",
    "category": "Mintlify source, Usersnap first label, Formbricks field_type, Mapbox/FeedbackKit category",
    "title": "FeedbackKit title, Formbricks field_label",
    "body": "the free text of the feedback",
    "rating": "numeric score where the provider has one (Usersnap rating, Formbricks value_number)",
    "user_id": "the end user's id where given",
    "user_email": "the end user's email where given",
    "page_url": "Mintlify path, Usersnap client.url",
    "attributes": "JSON: every other field of the record",
    "ingested_at": "when the pipeline last changed the row's content",
}

KEY_COLUMNS: tuple[str, ...] = ("provider", "account_id", "feedback_id")

# Columns a normalizer produces (everything but ingested_at), as an Arrow schema.
ROW_COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in FEEDBACK_COLUMNS if name != "ingested_at")
ROW_SCHEMA = pa.schema([(name, typ) for name, _, typ in FEEDBACK_COLUMNS if name != "ingested_at"])

# Columns whose change means the record changed (everything except the keys and ingested_at).
CONTENT_COLUMNS: tuple[str, ...] = tuple(c for c in ROW_COLUMNS if c not in KEY_COLUMNS)

_FEEDBACK = {column[0]: column for column in FEEDBACK_COLUMNS}
REJECT_COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    _FEEDBACK["provider"],
    _FEEDBACK["account_id"],
    ("feedback_id", "VARCHAR", pa.string()),  # NULL when the record has none
    # feedback_id, or "sha256:<hash of payload>" for a record without an id: the reject's identity.
    ("record_key", "VARCHAR NOT NULL", pa.string()),
    ("reason", "VARCHAR NOT NULL", pa.string()),
    ("payload", "JSON", pa.string()),
    ("rejected_at", *_FEEDBACK["ingested_at"][1:]),
)
REJECT_SCHEMA = pa.schema([(name, typ) for name, _, typ in REJECT_COLUMNS if name != "rejected_at"])

# The values of the ``status`` column; each provider's spec maps its own values onto these.
UNIFIED_STATUSES: frozenset[str] = frozenset({"open", "in_progress", "resolved", "dismissed"})


class RejectReason:
    """Reasons written to ``feedback_rejects.reason``: short, stable, greppable."""

    NOT_AN_OBJECT = "record_not_an_object"
    MISSING_ID = "missing_id"
    MISSING_COLLECTED_AT = "missing_collected_at"
    UNPARSEABLE_COLLECTED_AT = "unparseable_collected_at"
    COLLECTED_AT_OUT_OF_RANGE = "collected_at_out_of_range"
    FOREIGN_TENANT = "foreign_tenant"
