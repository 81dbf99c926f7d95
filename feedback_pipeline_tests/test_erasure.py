"""Erasure of one person: rows and rejects removed, the audit keeps only a salted digest, and the
suppression filter recognises the person's records in later batches."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import orjson
import pytest

from feedback_pipeline.erasure import DDL, ensure_salt, erase, has_suppressions, suppressed_payload_sql, suppressed_rows_sql
from feedback_pipeline.schema import FEEDBACK_COLUMNS, REJECT_COLUMNS

UTC = timezone.utc
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def ddl(name: str, columns) -> str:
    return f"CREATE TABLE {name} (" + ", ".join(f"{c} {t}" for c, t, _ in columns) + ")"


@pytest.fixture
def con(tmp_path: Path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(ddl("feedback", FEEDBACK_COLUMNS))
    con.execute(ddl("feedback_rejects", REJECT_COLUMNS))
    for statement in DDL:
        con.execute(statement)
    rows = [
        ("mintlify", "docs", "m1", None, "Ada@Example.com"),
        ("mintlify", "docs", "m2", None, "someone@example.com"),
        ("mapbox", "default", "x1", "user-42", None),
        ("feedbackkit", "default", "k1", "user-42", "ada@example.com"),
        ("feedbackkit", "default", "k2", "user-7", None),
    ]
    for provider, account, fid, user_id, email in rows:
        con.execute(
            "INSERT INTO feedback (provider, account_id, feedback_id, collected_at, collected_date, user_id, user_email, ingested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [provider, account, fid, NOW, NOW.date(), user_id, email, NOW],
        )
    rejects = [
        ("mapbox", "default", None, "sha256:1", "missing_id", {"metadata": {"userId": "user-42"}}),
        ("mintlify", "docs", "m9", "m9", "missing_collected_at", {"id": "m9", "contact": "ADA@example.com"}),
        ("mintlify", "docs", "m8", "m8", "missing_collected_at", {"id": "m8", "contact": "bob@example.com"}),
    ]
    for provider, account, fid, key, reason, payload in rejects:
        con.execute("INSERT INTO feedback_rejects VALUES (?, ?, ?, ?, ?, ?, ?)", [provider, account, fid, key, reason, orjson.dumps(payload).decode(), NOW])
    yield con
    con.close()


def ids(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT feedback_id FROM feedback").fetchall()}


def test_erasing_an_email_removes_it_case_insensitively_across_providers_and_rejects(con):
    result = erase(con, kind="email", value="ADA@example.COM", provider=None)
    assert ids(con) == {"m2", "x1", "k2"}
    assert sorted(result.removed_keys) == [("feedbackkit", "default", "k1"), ("mintlify", "docs", "m1")]
    assert result.rows_removed == 2 and result.rejects_removed == 1
    assert result.reject_accounts == [("mintlify", "docs")] and result.rows_by_provider() == {"feedbackkit": 1, "mintlify": 1}
    assert {r[0] for r in con.execute("SELECT record_key FROM feedback_rejects").fetchall()} == {"sha256:1", "m8"}


def test_erasing_a_user_id_for_one_provider_keeps_the_others(con):
    result = erase(con, kind="user_id", value="user-42", provider="mapbox")
    assert ids(con) == {"m1", "m2", "k1", "k2"}
    assert result.rows_removed == 1 and result.rejects_removed == 1


def test_the_audit_row_and_suppression_hold_a_salted_digest_never_the_identifier(con, tmp_path: Path):
    erase(con, kind="email", value="ada@example.com", provider=None)
    audit = con.execute("SELECT provider, kind, identifier_hash, rows_removed FROM pipeline_erasures").fetchall()
    assert len(audit) == 1 and audit[0][0] is None and audit[0][1] == "email" and audit[0][3] == 2
    assert "ada" not in audit[0][2].lower() and len(audit[0][2]) == 64
    assert con.execute("SELECT identifier_hash FROM pipeline_suppressions").fetchone()[0] == audit[0][2]
    # Another warehouse gets another salt: the same person has another digest there.
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute(ddl("feedback", FEEDBACK_COLUMNS))
    other.execute(ddl("feedback_rejects", REJECT_COLUMNS))
    for statement in DDL:
        other.execute(statement)
    assert erase(other, kind="email", value="ada@example.com", provider=None).identifier_hash != audit[0][2]


def test_the_salt_is_created_once(con):
    assert ensure_salt(con) == ensure_salt(con)
    assert con.execute("SELECT count(*) FROM pipeline_salt").fetchone()[0] == 1


def test_the_suppression_filter_recognises_the_persons_records_in_a_new_batch(con):
    assert not has_suppressions(con)
    erase(con, kind="email", value="ada@example.com", provider=None)
    erase(con, kind="user_id", value="user-7", provider="feedbackkit")
    assert has_suppressions(con)
    salt = ensure_salt(con)
    con.execute(
        "CREATE TEMP TABLE batch AS SELECT * FROM (VALUES "
        "('mintlify', 'n1', NULL, 'aDa@example.com'), ('mintlify', 'n2', NULL, 'eve@example.com'), "
        "('feedbackkit', 'n3', 'user-7', NULL), ('mapbox', 'n4', 'user-7', NULL)) t(provider, feedback_id, user_id, user_email)"
    )
    flagged = con.execute(f"SELECT feedback_id FROM batch WHERE {suppressed_rows_sql('batch')} ORDER BY 1", {"salt": salt}).fetchall()
    assert flagged == [("n1",), ("n3",)]  # user-7 is suppressed for feedbackkit only
    con.execute("CREATE TEMP TABLE rej AS SELECT * FROM (VALUES ('r1', '{\"contact\": \"ADA@EXAMPLE.COM\"}'::JSON), ('r2', '{\"contact\": \"x@y.z\"}'::JSON)) t(record_key, payload)")
    flagged = con.execute(f"SELECT record_key FROM rej WHERE {suppressed_payload_sql('rej')}", {"salt": salt, "p": "mintlify"}).fetchall()
    assert flagged == [("r1",)]


def test_a_user_id_a_payload_holds_as_a_json_number_is_erased_and_suppressed(con):
    # Providers often send user ids as numbers: the row stores the text "42", the payload 42.
    con.execute("INSERT INTO feedback_rejects VALUES ('mapbox', 'default', NULL, 'sha256:2', 'missing_id', ?, ?)", [orjson.dumps({"metadata": {"userId": 42}}).decode(), NOW])
    con.execute("INSERT INTO feedback_rejects VALUES ('mapbox', 'default', NULL, 'sha256:3', 'missing_id', ?, ?)", [orjson.dumps({"votes": 42.5, "flag": True}).decode(), NOW])
    result = erase(con, kind="user_id", value="42", provider=None)
    assert result.rejects_removed == 1
    assert {r[0] for r in con.execute("SELECT record_key FROM feedback_rejects").fetchall()} == {"sha256:1", "sha256:3", "m9", "m8"}
    con.execute("CREATE TEMP TABLE rej AS SELECT * FROM (VALUES ('r1', '{\"user\": {\"id\": 42}}'::JSON), ('r2', '{\"user\": {\"id\": 421}}'::JSON), ('r3', '{\"e\": 42}'::JSON)) t(record_key, payload)")
    flagged = con.execute(f"SELECT record_key FROM rej WHERE {suppressed_payload_sql('rej')} ORDER BY 1", {"salt": ensure_salt(con), "p": "mapbox"}).fetchall()
    assert flagged == [("r1",), ("r3",)]  # the number 42 anywhere in a later reject's payload


@pytest.mark.parametrize("stored", ["ΟΔΥΣΣΕΑΣ@example.gr", "İLKER@example.com"])
def test_an_address_is_lowercased_the_same_way_when_typed_and_when_stored(con, stored):
    # Python's str.lower and DuckDB's lower differ on Greek final sigma and Turkish dotted I.
    con.execute(
        "INSERT INTO feedback (provider, account_id, feedback_id, collected_at, collected_date, user_email, ingested_at) VALUES ('mintlify', 'docs', 'u1', ?, ?, ?, ?)",
        [NOW, NOW.date(), stored, NOW],
    )
    assert erase(con, kind="email", value=stored, provider=None).rows_removed == 1
    con.execute("CREATE TEMP TABLE batch AS SELECT 'mintlify' AS provider, 'n1' AS feedback_id, NULL::VARCHAR AS user_id, ? AS user_email", [stored])
    flagged = con.execute(f"SELECT feedback_id FROM batch WHERE {suppressed_rows_sql('batch')}", {"salt": ensure_salt(con)}).fetchall()
    assert flagged == [("n1",)]
