"""What a backfill's commits cost, stage by stage: ``python -m bench.commits --records 200000``.

Serves ``--records`` records (365 days, the five providers) from the sandbox in its own process
(``bench.sandbox_proc``, as ``bench.run`` does), then, in THIS process and without Dagster,
syncs the five providers one after the other into a fresh warehouse over the whole range (the
initial backfill) with ``sync.sync`` on one session's cursor, then runs each provider's checks'
query and closes the session. Each stage of ``warehouse.writes.commit`` is wrapped with a timer:

* ``stage``, ``suppress``, ``classify``, ``delete``, ``insert`` (or ``replace`` when writes.py
  has no separate delete and insert), ``rejects`` (clearing and writing), ``cursor`` (cursor,
  sweep, finishing the query), ``log`` (generation and change log), ``COMMIT`` (the statement:
  DuckDB's automatic checkpoints run inside it), ``other`` (the rest of ``commit``);
* outside the commits: ``checks`` (``check_stats`` per provider) and ``close`` (the session's
  end: its final checkpoint, if any).

Times are CPU seconds of this process (DuckDB's threads included) and wall seconds. So that a
stage's CPU time is its own, no other Python thread runs meanwhile: pages are fetched in the
syncing thread, between the stages, not by ``sync``'s prefetch thread (which works
``PREFETCH_PAGES`` pages ahead while a commit runs, so its parsing would count in whichever stage
is timing; ``--prefetch`` keeps it), and each provider's window is read as one query (a run reads
a long window of Mintlify or Usersnap as concurrent day ranges; ``--ranges`` keeps them). Prints a
markdown table and the working file's size; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from feedback_pipeline.normalize import FeedbackBatch
from feedback_pipeline.providers import provider_from_env
from feedback_pipeline.providers.base import Window
import feedback_pipeline.sync as sync_module
from feedback_pipeline.sync import sync
from feedback_pipeline.warehouse import Warehouse, state, writes
from feedback_pipeline.warehouse.files import WarehouseFiles

from . import common as C
from . import insert_floor

SLOW_COMMIT = 0.05
STAGES = ("stage", "suppress", "classify", "delete", "insert", "replace", "rejects", "cursor", "log", "COMMIT", "other")


class Timers:
    """CPU and wall seconds per stage, and how often each ran."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.commits: list[float] = []  # CPU seconds of each COMMIT statement, in order

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.time(name):
                return fn(*args, **kwargs)

        return timed


@contextmanager
def instrumented(timers: Timers) -> Iterator[None]:
    """Patch the stages of ``writes.commit`` (and the statements of its transaction) with timers."""
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, stage_name: str) -> None:
        if hasattr(owner, attr):
            saved.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, timers.wrap(stage_name, getattr(owner, attr)))

    for attr, stage_name in (
        ("stage", "stage"), ("suppress", "suppress"), ("classify", "classify"),
        ("delete_updated", "delete"), ("insert_rows", "insert"), ("replace", "replace"),
        ("clear_stored_rejects", "rejects"), ("write_rejects", "rejects"), ("sweep", "cursor"), ("log", "log"),
    ):  # fmt: skip
        patch(writes, attr, stage_name)
    patch(state, "write_cursor", "cursor")
    patch(state, "finish_query", "cursor")
    patch(writes, "commit", "commit")
    patch(FeedbackBatch, "rows", "arrow")  # building a batch's Arrow tables: part of normalizing
    patch(FeedbackBatch, "rejects", "arrow")

    original_transaction = writes.transaction

    @contextmanager
    def timed_transaction(con: Any) -> Iterator[Any]:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        cpu = time.process_time()
        with timers.time("COMMIT"):
            con.execute("COMMIT")
        timers.commits.append(time.process_time() - cpu)

    writes.transaction = timed_transaction  # type: ignore[assignment]
    try:
        yield
    finally:
        writes.transaction = original_transaction  # type: ignore[assignment]
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


def sync_in_turn(env: dict[str, str], db: Path, first: date, last: date, timers: Timers, *, paced: bool = False) -> dict[str, Any]:
    """The five providers synced in turn over ``first..last`` on one session of the warehouse at
    ``db``, each stage timed: a fresh warehouse's backfill (with each provider's checks' query
    timed too), or with ``paced`` the hourly schedule's run (paced re-reads) after the benchmark's
    1% touch. The providers' sync reports by name."""
    window = Window.for_days(first, last)
    reports: dict[str, Any] = {}
    opened = Warehouse(db).session()
    session = opened.__enter__()
    try:
        with instrumented(timers):
            for name in C.PROVIDERS:
                provider = provider_from_env(name, env)
                provider.normalize = timers.wrap("normalize", provider.normalize)  # type: ignore[method-assign]
                with session.cursor() as cursor:
                    reports[name] = sync(provider, cursor, window, paced=paced)
                    if not paced:
                        with timers.time("checks"):
                            cursor.check_stats(name, provider.account_id, first, last)
    finally:
        with timers.time("close"):
            opened.__exit__(*sys.exc_info())
    return reports


def _pages_inline(pages: Iterator[Any]) -> Iterator[tuple[Any, float]]:
    """``sync._prefetch`` without its thread: each page is fetched when the sync asks for it."""
    while True:
        started = time.monotonic()
        try:
            page = next(pages)
        except StopIteration:
            return
        yield page, time.monotonic() - started


def _table(timers: Timers) -> list[str]:
    """The stage table's lines (fills in ``other``: the commits' time outside the named stages)."""
    timers.cpu["other"] = timers.cpu.get("commit", 0.0) - sum(timers.cpu.get(s, 0.0) for s in STAGES if s != "other")
    timers.wall["other"] = timers.wall.get("commit", 0.0) - sum(timers.wall.get(s, 0.0) for s in STAGES if s != "other")
    lines = ["| stage | CPU s | wall s | calls |", "|---|---|---|---|"]
    for name in (*STAGES, "commit", "normalize", "arrow", "checks", "close"):
        if name in timers.cpu:
            lines.append(f"| {name} | {timers.cpu[name]:.3f} | {timers.wall[name]:.3f} | {timers.calls.get(name, '')} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commits", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="total records over the 5 providers and 365 days (default 200000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--commit-rows", type=int, default=None, help=f"rows per commit (default sync.COMMIT_ROWS, {sync_module.COMMIT_ROWS})")
    parser.add_argument("--hourly", action="store_true", help="then touch 1%% of each provider's records and time an hourly run's commits (the growth curve's incremental run)")
    parser.add_argument("--ranges", action="store_true", help="read long windows as concurrent day ranges, as runs do (stage CPU then includes the other ranges' threads)")
    parser.add_argument("--floor", action="store_true", help="then time DuckDB alone storing the same rows (bench.insert_floor)")
    parser.add_argument("--prefetch", action="store_true", help="fetch pages in sync's prefetch thread, as runs do (stage CPU then includes its parsing)")
    args = parser.parse_args(argv)
    if not args.prefetch:
        sync_module._prefetch = _pages_inline
    if args.commit_rows:
        sync_module.COMMIT_ROWS = args.commit_rows
    if not args.ranges:
        sync_module.MIN_SUBWINDOW_DAYS = 10 * C.DAYS  # no window is long enough to be split

    from .run import SandboxProcess, log  # the sandbox child and its helpers, as bench.run uses them

    days, per_day = C.DAYS, C.per_day_for(args.records)
    today = datetime.now(timezone.utc).date()  # the pipeline's day is UTC's
    first = today - timedelta(days=days - 1)
    workdir = Path(tempfile.mkdtemp(prefix="feedback-bench-commits-"))
    sandbox = SandboxProcess(days, per_day, workdir)
    try:
        log(f"sandbox: {sum(sandbox.records.values()):,} records; backfill {first}..{today} in this process")
        db = workdir / "feedback.duckdb"
        timers = Timers()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        reports = sync_in_turn(sandbox.env, db, first, today, timers)
        providers = {n: {"records": r.records, "inserted": r.counts.inserted, "seconds": r.seconds, "duration": r.duration} for n, r in reports.items()}
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        hourly_timers, hourly_providers = Timers(), None
        if args.hourly:
            for name in C.PROVIDERS:
                sandbox.control("POST", f"/_control/{name}/touch", {"fraction": C.TOUCH_FRACTION, "seed": 1000, "changes": C.TOUCH_CHANGES.get(name, {})})
            hourly_reports = sync_in_turn(sandbox.env, db, max(first, today - timedelta(days=C.LOOKBACK_DAYS)), today, hourly_timers, paced=True)
            hourly_providers = {n: {"records": r.records, "updated": r.counts.updated, "duration": r.duration} for n, r in hourly_reports.items()}
    finally:
        sandbox.stop()
    files = {p.name: p.stat().st_size for p in workdir.glob("feedback.duckdb*") if p.is_file()}
    commit_cpu = timers.cpu.get("commit", 0.0)
    table = _table(timers)
    normalize = sum(p["seconds"]["normalize"] for p in providers.values())
    normalize_cpu = timers.cpu.get("normalize", 0.0) + timers.cpu.get("arrow", 0.0)
    result = {
        "records": sum(p["records"] for p in providers.values()),
        "commits": timers.calls.get("commit", 0),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "normalize_wall_seconds": normalize,
        "normalize_cpu_seconds": normalize_cpu,
        "commit_cpu_seconds": commit_cpu,
        "commit_wall_seconds": timers.wall.get("commit", 0.0),
        "stages_cpu_seconds": {k: round(v, 3) for k, v in timers.cpu.items()},
        "stages_wall_seconds": {k: round(v, 3) for k, v in timers.wall.items()},
        "calls": timers.calls,
        "commit_statement_cpu_seconds": [round(c, 3) for c in timers.commits],
        "files_mb": {k: round(C.mb(v) or 0.0, 1) for k, v in files.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "providers": providers,
    }
    lines = [
        f"## Commits of a backfill: {result['records']:,} records, {result['commits']} commits of up to {sync_module.COMMIT_ROWS:,} rows",
        "",
        f"Whole backfill in this process: {wall:.2f} s wall, {cpu:.2f} s CPU; normalizing {normalize:.2f} s wall, "
        f"{normalize_cpu:.2f} s CPU (records {timers.cpu.get('normalize', 0.0):.2f}, Arrow {timers.cpu.get('arrow', 0.0):.2f}); "
        f"commits {commit_cpu:.2f} s CPU ({result['commit_wall_seconds']:.2f} s wall); peak RSS {result['peak_rss_mb']:.0f} MB; "
        f"files: {', '.join(f'{k} {v} MB' for k, v in result['files_mb'].items())}",
        f"COMMIT statements over {SLOW_COMMIT} s CPU (DuckDB's automatic checkpoints): "
        + (", ".join(f"#{i + 1} {c:.2f}" for i, c in enumerate(timers.commits) if c > SLOW_COMMIT) or "none"),
        "",
        *table,
    ]
    if hourly_providers is not None:
        result["hourly"] = {
            "providers": hourly_providers,
            "stages_cpu_seconds": {k: round(v, 4) for k, v in hourly_timers.cpu.items()},
            "stages_wall_seconds": {k: round(v, 4) for k, v in hourly_timers.wall.items()},
        }
        lines += [
            "",
            f"## Hourly run after {C.TOUCH_FRACTION:.0%} of the records changed (paced, the last {C.LOOKBACK_DAYS} days and today)",
            "",
            "Per provider (s, updated rows): " + ", ".join(f"{n} {p['duration']:.3f} ({p['updated']})" for n, p in hourly_providers.items()),
            "",
            *_table(hourly_timers),
        ]
    if args.floor:
        floors = insert_floor.measure_variants(WarehouseFiles(db).work)
        result["floor_cpu_seconds"] = dict(floors)
        lines += [
            "",
            f"## DuckDB alone storing the same rows (bench.insert_floor: a bare INSERT and COMMIT per {sync_module.COMMIT_ROWS:,} rows), CPU s",
            "",
            "| variant | insert | COMMIT | closing checkpoint | total | normalizing |",
            "|---|---|---|---|---|---|",
            *(f"| {name} | {f['insert']:.2f} | {f['commit']:.2f} | {f['checkpoint']:.2f} | {f['total']:.2f} | {normalize_cpu:.2f} |" for name, f in floors),
        ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
