"""Erasure of one person (GDPR article 17) and the suppression list that keeps them erased.

Why this shape: an erasure request names a person by user id or e-mail. Their rows must leave
``feedback`` and every reject whose payload holds the identifier, in one transaction; the fact of
the erasure must be auditable without keeping the identifier; and the next run, which still sees
the person's records at the provider, must not store them again. So the working database keeps a
random salt (created once), ``pipeline_erasures`` keeps a salted SHA-256 of the identifier, and
``pipeline_suppressions`` lists those digests; writes drop matching records before they are stored
(counted as ``rows_suppressed``, never written to rejects).

Digests are computed by DuckDB's ``sha256`` over ``salt || kind || ':' || value`` (e-mail lowercased
by DuckDB's ``lower``, on the typed address and the stored ones alike: Python's ``str.lower``
differs for a few letters, Greek final sigma and Turkish dotted I among them), so the same
formula filters whole batches inside SQL.

A user id reaches ``feedback.user_id`` as text, but a payload keeps it as the provider sent it,
often a JSON number (``"userId": 42``): payload values are matched by their text whether they are
strings or numbers; e-mail addresses only as strings.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

UTC = timezone.utc
USER_ID = "user_id"
EMAIL = "email"
KINDS = (USER_ID, EMAIL)

# The erasure tables: a warehouse migration (warehouse/migrations.py) runs these statements.
DDL = (
    "CREATE TABLE pipeline_salt (salt VARCHAR NOT NULL)",
    """CREATE TABLE pipeline_erasures (
        erased_at TIMESTAMPTZ NOT NULL, provider VARCHAR, kind VARCHAR NOT NULL,
        identifier_hash VARCHAR NOT NULL, rows_removed BIGINT NOT NULL, rejects_removed BIGINT NOT NULL)""",
    """CREATE TABLE pipeline_suppressions (
        kind VARCHAR NOT NULL, identifier_hash VARCHAR NOT NULL, provider VARCHAR, created_at TIMESTAMPTZ NOT NULL)""",
)

# The digest of a value of kind $kind, as SQL over an expression `{value}`.
_DIGEST = "sha256($salt || $kind || ':' || {value})"
# json_tree types of the payload values an identifier of each kind is compared with (as text).
_LEAF_TYPES = {USER_ID: "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')", EMAIL: "('VARCHAR')"}


@dataclass(frozen=True)
class ErasureResult:
    """What one erasure removed (the keys are for the change log that publishing reads)."""

    kind: str
    provider: str | None
    identifier_hash: str
    rows_removed: int
    rejects_removed: int
    removed_keys: list[tuple[str, str, str]]
    # The (provider, account_id) whose rejects lost rows: the change log marks their rejects.
    reject_accounts: list[tuple[str, str]]

    def rows_by_provider(self) -> dict[str, int]:
        """Rows removed per provider (what the command prints: counts, never the identifier)."""
        out: dict[str, int] = {}
        for provider, _, _ in self.removed_keys:
            out[provider] = out.get(provider, 0) + 1
        return out


def ensure_salt(con: duckdb.DuckDBPyConnection) -> str:
    """The warehouse's salt, created on first use (random, 256 bits); call inside the caller's
    transaction, so the salt and the first erasure commit together. The tables come from the
    warehouse migrations (``DDL``)."""
    row = next(iter(con.execute("SELECT salt FROM pipeline_salt LIMIT 1").fetchall()), None)
    if row is not None:
        return row[0]
    salt = secrets.token_hex(32)
    con.execute("INSERT INTO pipeline_salt VALUES (?)", [salt])
    return salt


def erase(con: duckdb.DuckDBPyConnection, *, kind: str, value: str, provider: str | None) -> ErasureResult:
    """Remove one person's rows and rejects and suppress them, in the caller's open transaction.

    ``feedback`` rows match on ``user_id`` (exact) or ``user_email`` (case-insensitive); rejects
    match when any string in their payload equals the identifier the same way.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    salt = ensure_salt(con)
    typed = "$value" if kind == USER_ID else "lower($value)"
    digest = con.execute(f"SELECT {_DIGEST.format(value=typed)}", {"salt": salt, "kind": kind, "value": value}).fetchall()[0][0]
    column = "user_id" if kind == USER_ID else "lower(user_email)"
    scope = "($provider IS NULL OR provider = $provider)"
    keys = con.execute(
        f"DELETE FROM feedback WHERE {column} = {typed} AND {scope} RETURNING provider, account_id, feedback_id",
        {"value": value, "provider": provider},
    ).fetchall()
    leaf = "t.value ->> '$'" if kind == USER_ID else "lower(t.value ->> '$')"
    rejected = con.execute(
        f"""DELETE FROM feedback_rejects r WHERE {scope} AND r.payload IS NOT NULL AND EXISTS (
            SELECT 1 FROM json_tree(r.payload) t WHERE t.type IN {_LEAF_TYPES[kind]} AND {leaf} = {typed})
        RETURNING provider, account_id""",
        {"value": value, "provider": provider},
    ).fetchall()
    rejects = len(rejected)
    now = datetime.now(UTC)
    con.execute(
        "INSERT INTO pipeline_erasures VALUES (?, ?, ?, ?, ?, ?)",
        [now, provider, kind, digest, len(keys), rejects],
    )
    con.execute("INSERT INTO pipeline_suppressions VALUES (?, ?, ?, ?)", [kind, digest, provider, now])
    accounts = sorted({(p, a) for p, a in rejected})
    return ErasureResult(kind, provider, digest, len(keys), rejects, [tuple(k) for k in keys], accounts)


def suppression_salt(con: duckdb.DuckDBPyConnection) -> str | None:
    """The salt when any erasure is in force, else None: writes skip the suppression filter
    entirely then, so a warehouse without erasures pays one tiny query per commit."""
    rows = con.execute("SELECT (SELECT salt FROM pipeline_salt LIMIT 1) WHERE EXISTS (SELECT 1 FROM pipeline_suppressions)").fetchall()
    return rows[0][0] if rows else None


def has_suppressions(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether any erasure is in force."""
    return suppression_salt(con) is not None


def suppressed_rows_sql(relation: str) -> str:
    """A boolean SQL expression over ``relation`` (a staged batch with the feedback columns):
    true for a row whose user id or e-mail is suppressed for its provider. Needs ``$salt``."""
    return f"""EXISTS (SELECT 1 FROM pipeline_suppressions s
        WHERE (s.provider IS NULL OR s.provider = {relation}.provider)
          AND ((s.kind = '{USER_ID}' AND {relation}.user_id IS NOT NULL
                AND s.identifier_hash = sha256($salt || '{USER_ID}:' || {relation}.user_id))
            OR (s.kind = '{EMAIL}' AND {relation}.user_email IS NOT NULL
                AND s.identifier_hash = sha256($salt || '{EMAIL}:' || lower({relation}.user_email)))))"""


def suppressed_payload_sql(relation: str, provider_param: str = "$p") -> str:
    """A boolean SQL expression over ``relation`` (staged rejects): true for a reject whose payload
    holds a suppressed identifier anywhere. Needs ``$salt`` and the provider parameter."""
    return f"""({relation}.payload IS NOT NULL AND EXISTS (
        SELECT 1 FROM json_tree({relation}.payload) t, pipeline_suppressions s
        WHERE t.type IN {_LEAF_TYPES[USER_ID]} AND (s.provider IS NULL OR s.provider = {provider_param})
          AND ((s.kind = '{USER_ID}' AND s.identifier_hash = sha256($salt || '{USER_ID}:' || (t.value ->> '$')))
            OR (s.kind = '{EMAIL}' AND t.type IN {_LEAF_TYPES[EMAIL]}
                AND s.identifier_hash = sha256($salt || '{EMAIL}:' || lower(t.value ->> '$'))))))"""
