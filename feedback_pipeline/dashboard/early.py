"""The dashboard's drawing, started as soon as the run's provider step has published the snapshot.

After the provider step publishes, Dagster still writes that step's events (a materialization
per asset and partition, the checks' evaluations) before the run reaches the dashboard step: for
a year's range that is about a second on the instance users run. :func:`start`, which the
provider step calls through ``asset.publish_hook``, starts the drawing child meanwhile; the
dashboard step then :func:`take`s it and keeps its page only if it shows the snapshot as it is
when the step runs (another run may have published in between, or the UTC day changed), else it
draws afresh. The early child writes into a temporary folder and the dashboard step moves the
page into place, so a run that never reaches its dashboard step (the provider step failed after
publishing) leaves the file as it was. Both steps must run in one process: the job's executor
is the in-process one (``definitions.py``); under another, :func:`take` finds nothing and the
dashboard step draws as before.

Loading Altair and starting vl-convert takes the child about a second before it draws. So when
the provider step's first commit changes the warehouse (the run will publish, and the page will
be redrawn), it :func:`prepare`s a warm child (``build.start_warm_child``) that does that while
the providers sync; :func:`start` then only tells it to go. A run that changes nothing starts no
child at all, and a provider step that fails :func:`abandon`s its warm child.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .build import ChildBuild, DashboardResult, current_key, start_build_in_child, start_warm_child, unchanged, write_atomically

UTC = timezone.utc
log = logging.getLogger(__name__)


@dataclass
class EarlyBuild:
    """A drawing started before the dashboard step: the child, where it draws, where the page goes."""

    build: ChildBuild
    folder: tempfile.TemporaryDirectory[str]
    page: Path
    out: Path

    def finish(self, db_path: str | os.PathLike[str], *, now: datetime | None = None) -> DashboardResult | None:
        """The build's result with its page moved to the dashboard file, when it shows the
        snapshot at ``db_path`` as of ``now``; None (the child stopped) when it does not. Raises
        the build's exception like :meth:`ChildBuild.wait`."""
        try:
            key = current_key(db_path, now or datetime.now(UTC))
            if key is None or key != self.build.key:
                return None  # the child is stopped below
            result = self.build.wait()
            size = write_atomically(self.out, self.page.read_bytes())
            return replace(result, path=self.out, bytes=size, early=True)
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop the child if it still runs and remove the folder it drew into."""
        self.build.cancel()
        self.folder.cleanup()


_PENDING: dict[str, EarlyBuild] = {}  # drawing, by run
_WARM: dict[str, EarlyBuild] = {}  # loaded and waiting for start(), by run
_LOCK = threading.Lock()


def prepare(run_id: str, db_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> None:
    """Start a warm child for run ``run_id``'s drawing (module docstring); a second call for the
    same run keeps the first child."""
    with _LOCK:
        if run_id in _WARM:
            return
    folder = tempfile.TemporaryDirectory(prefix="feedback-dashboard-early-")
    page = Path(folder.name) / Path(out_path).name
    try:
        build = start_warm_child(db_path, page)
    except BaseException:
        folder.cleanup()
        raise
    with _LOCK:
        kept = _WARM.setdefault(run_id, EarlyBuild(build, folder, page, Path(out_path)))
    if kept.build is not build:  # another thread prepared one meanwhile
        build.cancel()
        folder.cleanup()


def abandon(run_id: str) -> None:
    """Stop run ``run_id``'s warm child, if any: its provider step failed, so nothing is drawn."""
    with _LOCK:
        warm = _WARM.pop(run_id, None)
    if warm is not None:
        warm.cancel()


def start(run_id: str, db_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, now: datetime | None = None) -> bool:
    """Start drawing the snapshot at ``db_path`` for the dashboard step of run ``run_id``, in its
    warm child when :func:`prepare` started one; False when the file at ``out_path`` already
    shows it today (nothing to draw)."""
    with _LOCK:
        warm = _WARM.pop(run_id, None)
    early: EarlyBuild | None = None
    if warm is not None:
        try:
            told = _go(warm, db_path, now)
        except BaseException:
            warm.cancel()  # it is no longer in _WARM, where the exit handler would find it
            raise
        if told is False:
            return False
        early = told if isinstance(told, EarlyBuild) else None  # None: the child was gone
    if early is None:
        folder = tempfile.TemporaryDirectory(prefix="feedback-dashboard-early-")
        page = Path(folder.name) / Path(out_path).name
        try:
            started = start_build_in_child(db_path, out_path, now=now, write_to=page)
        except BaseException:
            folder.cleanup()
            raise
        if isinstance(started, DashboardResult):
            folder.cleanup()
            return False
        early = EarlyBuild(started, folder, page, Path(out_path))
    with _LOCK:
        previous = _PENDING.pop(run_id, None)
        _PENDING[run_id] = early
    if previous is not None:
        previous.cancel()
    return True


def _go(warm: EarlyBuild, db_path: str | os.PathLike[str], now: datetime | None) -> EarlyBuild | bool | None:
    """Tell a warm child to draw: the build, False when the file already shows the snapshot (the
    child is stopped), None when the child is gone (stopped too: the caller starts a new one)."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    key = current_key(db_path, now)
    if unchanged(warm.out, now, key, started) is not None:
        warm.cancel()
        return False
    try:
        warm.build.go(now, key)
    except OSError as exc:  # it died while loading: a new child does the drawing
        log.info("the dashboard's warm child is gone (%s); starting another", exc)
        warm.cancel()
        return None
    return warm


def take(run_id: str) -> EarlyBuild | None:
    """The drawing started for run ``run_id``, if any (each is taken once)."""
    with _LOCK:
        return _PENDING.pop(run_id, None)


@atexit.register
def _cancel_all() -> None:
    """A process that exits with a drawing nobody took (its run failed) stops the child."""
    with _LOCK:
        pending = [*_PENDING.values(), *_WARM.values()]
        _PENDING.clear()
        _WARM.clear()
    for early in pending:
        early.cancel()
