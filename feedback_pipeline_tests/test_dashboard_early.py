"""The dashboard's drawing started when the provider step publishes (``dashboard/early.py``): the
page lands only through the dashboard step, and only if it shows the snapshot as it is then."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from feedback_pipeline.dashboard import early
from feedback_pipeline.dashboard.build import build_dashboard_in_child
from feedback_pipeline.warehouse import Warehouse

from .test_views import store

UTC = timezone.utc


def test_a_drawing_started_early_is_moved_into_place_by_the_dashboard_step(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "out" / "dashboard.html"
    assert early.start("run-1", mapbox_snapshot, out)
    pending = early.take("run-1")
    assert pending is not None and early.take("run-1") is None  # taken once
    pending.build.process.wait()
    assert not out.exists()  # the child drew into its own folder, not over the analysts' file

    result = pending.finish(mapbox_snapshot)
    assert result is not None and result.early and result.written and result.path == out
    assert out.exists() and result.bytes == out.stat().st_size and "mapbox" in out.read_text(encoding="utf-8")
    assert not Path(pending.folder.name).exists()
    # the file records the snapshot it shows, like a build in the dashboard step
    assert build_dashboard_in_child(mapbox_snapshot, out).written is False


def test_a_drawing_of_a_snapshot_published_over_since_is_dropped(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    assert early.start("run-2", mapbox_snapshot, out)
    wh = Warehouse(mapbox_snapshot)
    store(wh, "mapbox", [{"id": "2", "status": "received"}])
    assert wh.publish_if_behind() is not None  # another run published in between

    pending = early.take("run-2")
    assert pending.finish(mapbox_snapshot) is None
    assert pending.build.process.returncode is not None and not out.exists()
    assert not Path(pending.folder.name).exists()


def test_a_drawing_of_an_earlier_day_is_dropped(mapbox_snapshot: Path, tmp_path: Path):
    today = datetime.now(UTC)
    assert early.start("run-3", mapbox_snapshot, tmp_path / "dashboard.html", now=today)
    assert early.take("run-3").finish(mapbox_snapshot, now=today + timedelta(days=1)) is None  # ranges moved with the date


def test_a_file_that_already_shows_the_snapshot_starts_nothing(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    assert build_dashboard_in_child(mapbox_snapshot, out).written
    assert early.start("run-4", mapbox_snapshot, out) is False
    assert early.take("run-4") is None


def test_a_failed_drawing_raises_its_exception_in_the_dashboard_step(mapbox_snapshot: Path, tmp_path: Path):
    import duckdb

    con = duckdb.connect(str(mapbox_snapshot))  # the parent's check still works; the child's queries fail
    con.execute("DROP VIEW feedback_status_funnel")
    con.close()
    assert early.start("run-5", mapbox_snapshot, tmp_path / "dashboard.html")
    with pytest.raises(duckdb.CatalogException, match="feedback_status_funnel"):
        early.take("run-5").finish(mapbox_snapshot)
    assert not (tmp_path / "dashboard.html").exists()


def _child_and_folder_of_a_process_that_exits(setup: str) -> tuple[str, str]:
    """Run ``setup`` (which leaves ``early`` holding a child in ``drawing``) in a Python process
    that then exits; the child's pid and the drawing's folder."""
    import subprocess
    import sys

    script = f"from feedback_pipeline.dashboard import early\n{setup}\nprint(drawing.build.process.pid, drawing.folder.name)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    pid, folder = done.stdout.split()
    return pid, folder


def test_a_drawing_nobody_takes_is_stopped_when_the_process_exits(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    pid, folder = _child_and_folder_of_a_process_that_exits(
        f"early.start('run-6', {str(mapbox_snapshot)!r}, {str(out)!r})\ndrawing = early._PENDING['run-6']"
    )
    assert not Path(folder).exists() and not out.exists()
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped


def test_a_warm_child_draws_the_page_once_told_to_go(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    early.prepare("run-w1", mapbox_snapshot, out)
    warm = early._WARM["run-w1"]
    early.prepare("run-w1", mapbox_snapshot, out)  # a second call keeps the first child
    assert early._WARM["run-w1"] is warm and warm.build.key is None
    assert warm.build.process.poll() is None  # loaded (or loading), waiting to be told

    assert early.start("run-w1", mapbox_snapshot, out)
    pending = early.take("run-w1")
    assert pending is warm and "run-w1" not in early._WARM  # the warm child draws: no second process
    result = pending.finish(mapbox_snapshot)
    assert result is not None and result.early and result.written and "mapbox" in out.read_text(encoding="utf-8")
    assert warm.build.process.returncode == 0
    assert build_dashboard_in_child(mapbox_snapshot, out).written is False  # it records the snapshot it shows


def test_a_warm_child_whose_stdin_closes_ends_without_drawing(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    early.prepare("run-w2", mapbox_snapshot, out)
    warm = early._WARM.pop("run-w2")
    warm.build.process.stdin.close()  # what abandoning it does first: no line, so no drawing
    assert warm.build.process.wait(timeout=60) == 0  # it ended by itself, not killed
    assert not warm.page.exists() and not warm.build.answer.exists() and not out.exists()
    warm.cancel()
    assert not Path(warm.folder.name).exists()


def test_an_abandoned_warm_child_is_stopped(mapbox_snapshot: Path, tmp_path: Path):
    early.prepare("run-w3", mapbox_snapshot, tmp_path / "dashboard.html")
    warm = early._WARM["run-w3"]
    early.abandon("run-w3")
    assert "run-w3" not in early._WARM and warm.build.process.returncode is not None
    assert not Path(warm.folder.name).exists() and not (tmp_path / "dashboard.html").exists()
    assert early.start("run-w3", mapbox_snapshot, tmp_path / "dashboard.html")  # a later start draws anew
    assert early.take("run-w3").finish(mapbox_snapshot).written


def test_a_warm_child_is_stopped_when_the_file_already_shows_the_snapshot(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    assert build_dashboard_in_child(mapbox_snapshot, out).written
    early.prepare("run-w4", mapbox_snapshot, out)
    warm = early._WARM["run-w4"]
    assert early.start("run-w4", mapbox_snapshot, out) is False
    assert early.take("run-w4") is None and warm.build.process.returncode is not None


def test_a_warm_child_that_died_is_replaced_by_a_new_drawing(mapbox_snapshot: Path, tmp_path: Path):
    out = tmp_path / "dashboard.html"
    early.prepare("run-w5", mapbox_snapshot, out)
    warm = early._WARM["run-w5"]
    warm.build.process.kill()
    warm.build.process.wait()
    assert early.start("run-w5", mapbox_snapshot, out)
    pending = early.take("run-w5")
    assert pending is not warm and pending.finish(mapbox_snapshot).written


def test_a_warm_child_nobody_told_to_go_is_stopped_when_the_process_exits(mapbox_snapshot: Path, tmp_path: Path):
    pid, folder = _child_and_folder_of_a_process_that_exits(
        f"early.prepare('run-w6', {str(mapbox_snapshot)!r}, {str(tmp_path / 'dashboard.html')!r})\ndrawing = early._WARM['run-w6']"
    )
    assert not Path(folder).exists() and not Path(f"/proc/{pid}").exists()
