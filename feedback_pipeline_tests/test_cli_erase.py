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


def test_an_erasure_draws_the_dashboard_again_without_the_persons_texts(db: Path, tmp_path: Path, monkeypatch, capsys):
    from feedback_pipeline.dashboard.build import build_dashboard

    page = tmp_path / "dashboard.html"
    monkeypatch.setenv("FEEDBACK_DASHBOARD", str(page))
    batch = FeedbackBatch("mapbox", "acct")
    batch.add({"id": "a"}, feedback_id="a", collected_at="2026-03-01T10:00:00Z", user_email=PERSON, body="Grace here, diagnosed with condition X")
    batch.add({"id": "b"}, feedback_id="b", collected_at="2026-03-01T11:00:00Z", user_email="other@example.com", body="nice maps")
    commit_batch(Warehouse(db), batch)
    Warehouse(db).publish_if_behind()
    build_dashboard(db, page)  # what a run's feedback_dashboard step drew
    assert "condition X" in page.read_text(encoding="utf-8")
    assert main(["erase", "--email", PERSON]) == 0
    html = page.read_text(encoding="utf-8")
    assert "condition X" not in html and "nice maps" in html
    assert f"dashboard {page} drawn again" in capsys.readouterr().out


def test_a_dashboard_that_cannot_be_drawn_after_an_erasure_is_removed(db: Path, tmp_path: Path, monkeypatch, capsys):
    import feedback_pipeline.dashboard.build as build

    page = tmp_path / "dashboard.html"
    page.write_text("<p>Grace here, diagnosed with condition X</p>", encoding="utf-8")
    monkeypatch.setenv("FEEDBACK_DASHBOARD", str(page))
    commit_batch(Warehouse(db), FeedbackBatch("mapbox", "acct"))

    def broken(*args, **kwargs):
        raise build.DashboardChildError("drawing the dashboard failed")

    monkeypatch.setattr(build, "build_dashboard_in_child", broken)
    assert main(["erase", "--email", PERSON]) == 0
    assert not page.exists()
    assert "could not be drawn again (DashboardChildError) and was removed" in capsys.readouterr().out


def test_erase_reads_the_warehouse_from_the_working_directorys_env_file(tmp_path: Path, monkeypatch, capsys):
    # FEEDBACK_DB set only in .env, as the dagster CLI reads it: the erasure must act there,
    # not on the default data/feedback.duckdb.
    path = tmp_path / "warehouse" / "feedback.duckdb"
    monkeypatch.delenv("FEEDBACK_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"FEEDBACK_DB={path}\n", encoding="utf-8")
    batch = FeedbackBatch("mapbox", "acct")
    batch.add({"id": "a"}, feedback_id="a", collected_at="2026-03-01T10:00:00Z", user_email=PERSON)
    commit_batch(Warehouse(path), batch)
    assert main(["erase", "--email", PERSON]) == 0
    assert f"{path}: erased one person" in capsys.readouterr().out
    assert work_rows(Warehouse(path)) == []
    assert not (tmp_path / "data").exists()
