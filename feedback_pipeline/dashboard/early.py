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
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .build import ChildBuild, DashboardResult, current_key, start_build_in_child, write_atomically

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


_PENDING: dict[str, EarlyBuild] = {}
_LOCK = threading.Lock()


def start(run_id: str, db_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, now: datetime | None = None) -> bool:
    """Start drawing the snapshot at ``db_path`` for the dashboard step of run ``run_id``; False
    when the file at ``out_path`` already shows it today (nothing to draw)."""
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
    with _LOCK:
        previous = _PENDING.pop(run_id, None)
        _PENDING[run_id] = EarlyBuild(started, folder, page, Path(out_path))
    if previous is not None:
        previous.cancel()
    return True


def take(run_id: str) -> EarlyBuild | None:
    """The drawing started for run ``run_id``, if any (each is taken once)."""
    with _LOCK:
        return _PENDING.pop(run_id, None)


@atexit.register
def _cancel_all() -> None:
    """A process that exits with a drawing nobody took (its run failed) stops the child."""
    with _LOCK:
        pending = list(_PENDING.values())
        _PENDING.clear()
    for early in pending:
        early.cancel()
