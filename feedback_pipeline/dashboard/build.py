"""Build the dashboard file from the snapshot: query, draw, write atomically; skip when unchanged.

The file is replaced with ``os.replace`` from a temporary file in the same folder, so a browser
(or a colleague's file share) never sees half a page. It records what it was built from (the
snapshot's identity and the UTC day) in a meta tag; a build over the same snapshot on the same
day leaves the file as it is: a run that changed nothing publishes nothing, and so redraws nothing.
The day is part of it because ranges ("last 90 days", "partitions behind") move with the date.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import queries
from .page import KEY_META, render_page
from .queries import DashboardData

UTC = timezone.utc
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


def build_dashboard(db_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *, force: bool = False, now: datetime | None = None) -> DashboardResult:
    """Write the dashboard of the snapshot at ``db_path`` to ``out_path``, unless the file already
    shows this snapshot as of today (``force`` rebuilds anyway)."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    out = Path(out_path)
    con = queries.connect(db_path)
    try:
        snapshot = queries.snapshot_key(con)
        key = f"{snapshot}|{now.date().isoformat()}" if snapshot else None
        if not force and key is not None and existing_key(out) == key:
            return DashboardResult(out, now, False, key, time.perf_counter() - started, out.stat().st_size, None)
        data = queries.load(con, now.date())
    finally:
        con.close()
    queried = time.perf_counter()
    html = render_page(data, draw(data), built_at=now, key=key or "", source=Path(db_path).name)
    drawn = time.perf_counter()
    size = write_atomically(out, html.encode("utf-8"))
    return DashboardResult(out, now, True, key, time.perf_counter() - started, size, data, queried - started, drawn - queried)


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
