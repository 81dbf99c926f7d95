"""``feedback-pipeline erase``: bad arguments exit 2 with a message and touch nothing; a good one
exits 0 and prints counts, never the identifier."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback_pipeline.cli import main
from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.warehouse import Warehouse

from .conftest import commit_batch, work_rows

PERSON = "grace.hopper@example.com"


@pytest.fixture
def db(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "feedback.duckdb"
    monkeypatch.setenv("FEEDBACK_DB", str(path))
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "one of the arguments --user-id --email is required"),
        (["--email", "  "], "the identifier is empty"),
        (["--user-id", "u1", "--email", PERSON], "not allowed with argument"),
        (["--email", PERSON, "--provider", "nosuchprovider"], "invalid choice: 'nosuchprovider'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_touch_nothing(db: Path, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        main(["erase", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not db.parent.joinpath(f"{db.name}.work").exists()


def test_an_erasure_prints_counts_per_provider_and_never_the_identifier(db: Path, capsys):
    batch = FeedbackBatch("mapbox", "acct")
    for fid, email in (("a", PERSON), ("b", "other@example.com"), ("c", PERSON.upper())):
        batch.add({"id": fid}, feedback_id=fid, collected_at="2026-03-01T10:00:00Z", user_email=email)
    commit_batch(Warehouse(db), batch)
    assert main(["erase", "--email", PERSON]) == 0
    out = capsys.readouterr().out
    assert "2 feedback row(s) removed (mapbox 2), 0 reject(s) removed" in out
    assert PERSON not in out.lower()
    assert [r[0] for r in work_rows(Warehouse(db))] == ["b"]
