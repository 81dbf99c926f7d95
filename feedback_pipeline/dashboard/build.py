"""Build the dashboard file from the snapshot: query, draw, write atomically; skip when unchanged.

The file is replaced with ``os.replace`` from a temporary file in the same folder, so a browser
(or a colleague's file share) never sees half a page. It records what it was built from (the
snapshot's identity and the UTC day) in a meta tag; a build over the same snapshot on the same
day leaves the file as it is: a run that changed nothing publishes nothing, and so redraws nothing.
The day is part of it because ranges ("last 90 days", "partitions behind") move with the date.

:func:`build_dashboard_in_child` is what the asset runs: the same build, but the querying and
drawing happen in a short-lived child process (``python -m feedback_pipeline.dashboard``), so
Altair, vl-convert and the queries' DuckDB memory (together 150-230 MB) never land in the run's
process, whose resident size the sync has already raised and the C heap rarely gives back. The
child gets the snapshot's and the file's paths and no secret (its environment is
:func:`child_environment`); it does not import Dagster.

A child can also be started *warm* (:func:`start_warm_child`): it imports Altair and starts
vl-convert's JavaScript engine (together about a second), then waits on its stdin until
:meth:`ChildBuild.go` hands it the time to draw for; closing its stdin instead ends it without
drawing. The provider step starts one when its first commit changes the warehouse
(``early.py``), so that second passes while the providers sync.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from . import queries
from .page import KEY_META, render_page
from .queries import DashboardData

if TYPE_CHECKING:
    import duckdb

UTC = timezone.utc
log = logging.getLogger(__name__)
KEY_PATTERN = re.compile(rf'<meta name="{KEY_META}" content="([^"]*)">')


@dataclass(frozen=True)
class DashboardResult:
    """What a build did: the file, whether it was (re)written, and what it showed."""

    path: Path
    built_at: datetime
    written: bool
    key: str | None
    seconds: float
    bytes: int
    data: DashboardData | None  # None when the build was skipped
    query_seconds: float = 0.0
    draw_seconds: float = 0.0
    early: bool = False  # drawn by a child the provider step started (early.py)


# Times a build draws again when the snapshot changed while it drew (see build_dashboard).
REDRAWS = 3


def build_dashboard(db_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, force: bool = False, now: datetime | None = None) -> DashboardResult:
    """Write the dashboard of the snapshot at ``db_path`` to ``out_path``, unless the file already
    shows this snapshot as of today (``force`` rebuilds anyway).

    A page is written only if the snapshot is still the one it was drawn from: one published
    meanwhile, an erasure's above all, is drawn instead (up to ``REDRAWS`` times), so a build
    that was drawing while ``feedback-pipeline erase`` ran cannot put the erased person's texts
    back after the erase redrew the page."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    out = Path(out_path)
    for _ in range(REDRAWS):
        con = queries.connect(db_path)
        try:
            key = build_key(con, now)
            if not force and (skipped := unchanged(out, now, key, started)):
                return skipped
            data = queries.load(con, now.date())
        finally:
            con.close()
        queried = time.perf_counter()
        html = render_page(data, draw(data), built_at=now, key=key or "", source=Path(db_path).name)
        drawn = time.perf_counter()
        if key is None or current_key(db_path, now) == key:
            break
        force = True  # the page on disk is not this snapshot's either: draw the new one
    size = write_atomically(out, html.encode("utf-8"))
    return DashboardResult(out, now, True, key, time.perf_counter() - started, size, data, queried - started, drawn - queried)


def current_key(db_path: str | os.PathLike[str], now: datetime) -> str | None:
    """:func:`build_key` of the snapshot ``db_path`` names now."""
    con = queries.connect(db_path)
    try:
        return build_key(con, now)
    finally:
        con.close()


def unchanged(out: Path, now: datetime, key: str | None, started: float) -> DashboardResult | None:
    """The skipped build's result when the file at ``out`` already shows ``key`` (this snapshot,
    today); None when it must be drawn."""
    if key is None or existing_key(out) != key:
        return None
    return DashboardResult(out, now, False, key, time.perf_counter() - started, out.stat().st_size, None)


class DashboardChildError(RuntimeError):
    """The child process drawing the dashboard ended without a result (killed, or it could not
    start); the message quotes the end of its stderr."""


# Variables the child inherits: where programs, temporary files, fonts and the locale are. Nothing
# else (no API key or token of the run's environment reaches it).
CHILD_VARIABLES = (
    "PATH", "HOME", "TMPDIR", "TEMP", "TMP", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "SYSTEMROOT", "WINDIR", "XDG_CACHE_HOME", "XDG_DATA_DIRS", "FONTCONFIG_FILE", "FONTCONFIG_PATH",
)


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: :data:`CHILD_VARIABLES` of ``environ`` (default ``os.environ``),
    and ``PYTHONPATH`` led by the folder this package is imported from (so the child imports the
    same code, installed or not)."""
    environ = os.environ if environ is None else environ
    env = {name: environ[name] for name in CHILD_VARIABLES if name in environ}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else [])])
    return env


def build_dashboard_in_child(db_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, now: datetime | None = None) -> DashboardResult:
    """:func:`build_dashboard`, with the querying and drawing in a child process (see the module
    docstring). Whether the file already shows this snapshot is read here (one small query), so a
    run that changed nothing starts no process. A build that fails in the child raises its
    exception here (same type and message); a child that ends without a result raises
    :class:`DashboardChildError`."""
    started = start_build_in_child(db_path, out_path, now=now)
    return started if isinstance(started, DashboardResult) else started.wait()


def start_build_in_child(
    db_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    write_to: str | os.PathLike[str] | None = None,
    warm: "ChildBuild | None" = None,
) -> DashboardResult | ChildBuild:
    """Start :func:`build_dashboard_in_child`'s child and return at once: the skipped build's
    result when ``out_path`` already shows this snapshot today, else the running
    :class:`ChildBuild`. The child writes the page to ``write_to`` (default ``out_path``). A
    ``warm`` child (:func:`start_warm_child`, started with the same ``write_to``) is told to go
    instead of starting one, unless it has died meanwhile; when nothing is drawn it is left to
    the caller to stop."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    out = Path(out_path)
    key = current_key(db_path, now)
    if skipped := unchanged(out, now, key, started):
        return skipped
    if warm is not None:
        try:
            warm.go(now, key)
            return warm
        except OSError as exc:  # it died while loading: a new child does the drawing
            log.info("the dashboard's warm child is gone (%s); starting another", exc)
            warm.cancel()
    return _spawn(db_path, write_to or out_path, now, key, started)


def start_warm_child(db_path: str | os.PathLike[str], write_to: str | os.PathLike[str]) -> "ChildBuild":
    """Start a child that loads the drawing's libraries and then waits for :meth:`ChildBuild.go`
    before it draws the snapshot at ``db_path`` into ``write_to`` (module docstring)."""
    return _spawn(db_path, write_to, None, None, time.perf_counter())


def _spawn(db_path: str | os.PathLike[str], write_to: str | os.PathLike[str], now: datetime | None, key: str | None, started: float) -> "ChildBuild":
    """The drawing child of the snapshot at ``db_path``, writing to ``write_to``: told ``now`` on
    its command line, or, when ``now`` is None, a warm child that reads it from its stdin."""
    folder = tempfile.TemporaryDirectory(prefix="feedback-dashboard-")
    answer, said = Path(folder.name) / "result.pickle", Path(folder.name) / "stderr"
    command = [
        sys.executable, "-m", "feedback_pipeline.dashboard",
        "--snapshot", os.fspath(db_path), "--output", os.fspath(write_to), "--result", str(answer),
        *(["--now", now.isoformat()] if now is not None else ["--warm"]),
    ]
    try:
        # stderr goes to a file, not a pipe: a child started early may write more than a pipe
        # holds long before anyone reads it.
        with open(said, "wb") as stderr:
            process = subprocess.Popen(
                command, env=child_environment(), stdin=subprocess.PIPE if now is None else subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
    except BaseException:
        folder.cleanup()
        raise
    return ChildBuild(process, folder, answer, said, key, started)


@dataclass
class ChildBuild:
    """A dashboard build running in its child process (:func:`start_build_in_child`)."""

    process: subprocess.Popen[bytes]
    folder: tempfile.TemporaryDirectory[str]
    answer: Path
    stderr: Path
    key: str | None  # what the page will record: the snapshot's identity and the UTC day
    started: float

    def go(self, now: datetime, key: str | None) -> None:
        """Let a warm child (:func:`start_warm_child`) draw the snapshot as of ``now``, which shows
        ``key``; its ``seconds`` count from here. Raises ``OSError`` when the child is gone."""
        assert self.process.stdin is not None, "not a warm child"
        self.key, self.started = key, time.perf_counter()
        self.process.stdin.write(json.dumps({"now": now.isoformat()}).encode() + b"\n")
        self.process.stdin.close()

    def wait(self) -> DashboardResult:
        """The child's result (its ``seconds`` counted from the start); raises the build's
        exception, or :class:`DashboardChildError` when the child left no result."""
        try:
            self.process.wait()
            said = self.stderr.read_bytes().decode("utf-8", "replace")
            if said:
                sys.stderr.write(said)
            try:
                outcome = pickle.loads(self.answer.read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
                tail = said.strip()[-2000:] or "nothing on stderr"
                raise DashboardChildError(f"drawing the dashboard failed: its process exited with {self.process.returncode} and no result: {tail}") from exc
        finally:
            self.folder.cleanup()
        if isinstance(outcome, BaseException):
            raise outcome
        return replace(outcome, seconds=time.perf_counter() - self.started)

    def cancel(self) -> None:
        """Stop the child (if it still runs) and remove what it wrote to its temporary folder."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()  # a warm child that has not been told to go ends by itself
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.folder.cleanup()


def child_main(db_path: str, out_path: str, now: datetime, result_path: str) -> int:
    """The child's side of :func:`build_dashboard_in_child`: build, then pickle the result (or the
    exception, or a RuntimeError with its type and message when it cannot be pickled) to
    ``result_path``. 0 on success, 1 when the build failed."""
    try:
        outcome: object = build_dashboard(db_path, out_path, now=now)
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        traceback.print_exc()  # the parent passes the child's stderr on
        outcome = exc
    try:
        payload = pickle.dumps(outcome)
        pickle.loads(payload)  # an exception whose arguments do not rebuild it fails here
    except Exception:  # noqa: BLE001
        payload = pickle.dumps(RuntimeError(f"{type(outcome).__name__}: {outcome}"))
    Path(result_path).write_bytes(payload)
    return 1 if isinstance(outcome, BaseException) else 0


def warm_child_main(db_path: str, out_path: str, result_path: str) -> int:
    """A warm child's side (:func:`start_warm_child`): load Altair and start vl-convert, then wait
    for the time to draw for on stdin and run :func:`child_main`. Its stdin closed without a line:
    the drawing is not wanted, and it ends at once (0, no result)."""
    from . import charts

    charts.warm()
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    return child_main(db_path, out_path, datetime.fromisoformat(json.loads(line)["now"]), result_path)


def build_key(con: duckdb.DuckDBPyConnection, now: datetime) -> str | None:
    """What a file drawn now from the snapshot on ``con`` records: the snapshot's identity and
    the UTC day (None when the snapshot has no identity: always redrawn)."""
    snapshot = queries.snapshot_key(con)
    return f"{snapshot}|{now.date().isoformat()}" if snapshot else None


def draw(data: DashboardData) -> dict[str, str | None]:
    """Every chart as SVG (None where its range has no data)."""
    from . import charts  # Altair and vl-convert load only when a page is drawn, not with the definitions

    return {
        "volume": charts.daily_volume(data.daily_volume, data.volume_first, data.today, data.providers, width=charts.WIDE_WIDTH),
        "volume_narrow": charts.daily_volume(data.daily_volume, data.volume_first, data.today, data.providers),
        "funnel": charts.status_funnel(data.status_funnel, data.providers),
        "nps": charts.nps_weekly(data.nps_weekly, data.nps_first, data.today),
        "pages": charts.least_helpful(data.least_helpful),
        "requests": charts.top_requests(data.top_requests),
        "rejects": charts.rejects(data.rejects, data.providers),
    }


def existing_key(path: Path) -> str | None:
    """The key recorded in an existing dashboard file (its head), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    match = KEY_PATTERN.search(head)
    return match.group(1) if match and match.group(1) else None


def write_atomically(path: Path, content: bytes) -> int:
    """Replace ``path`` with ``content`` in one step (temporary file, fsync, ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(content)
