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
import os
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .build import ChildBuild, DashboardResult, current_key, start_build_in_child, start_warm_child, write_atomically

UTC = timezone.utc


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
    folder, page = _drawing_folder(out_path)
    try:
        warm = EarlyBuild(start_warm_child(db_path, page), folder, page, Path(out_path))
    except BaseException:
        folder.cleanup()
        raise
    with _LOCK:
        kept = _WARM.setdefault(run_id, warm)
    if kept is not warm:  # another thread prepared one meanwhile
        warm.cancel()


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
    folder, page = (warm.folder, warm.page) if warm is not None else _drawing_folder(out_path)
    drop = warm.cancel if warm is not None else folder.cleanup  # when nothing is drawn after all
    try:
        started = start_build_in_child(db_path, out_path, now=now, write_to=page, warm=warm.build if warm is not None else None)
    except BaseException:
        drop()
        raise
    if isinstance(started, DashboardResult):
        drop()
        return False
    with _LOCK:
        previous = _PENDING.pop(run_id, None)
        _PENDING[run_id] = warm if warm is not None and started is warm.build else EarlyBuild(started, folder, page, Path(out_path))
    if previous is not None:
        previous.cancel()
    return True


def _drawing_folder(out_path: str | os.PathLike[str]) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    """A temporary folder for an early drawing, and the page's path in it."""
    folder = tempfile.TemporaryDirectory(prefix="feedback-dashboard-early-")
    return folder, Path(folder.name) / Path(out_path).name


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
