"""``python -m bench.memory``: where a run's memory goes, phase by phase, children included.

    python -m bench.memory --records 200000
    python -m bench.memory --records 1000000 --timeline

Runs the benchmark's three runs (backfill over the whole range, an incremental run with no
changes, one after 1% of the records changed) on the sandbox, each in its own process
(``bench.job_proc``, in-process executor) as ``bench.run`` does, and samples from outside every
50 ms the run process's RSS and that of each of its descendants (the dashboard's child process).
Prints per run: the run process's RSS before the run, its peak in the sync step and in the
dashboard step (from the steps' start and end in the event log), its VmHWM, the largest child's
peak RSS and the largest sum over the tree; ``--timeline`` adds the run process's RSS per second.
``bench.run`` reports only the run process's VmHWM; this is the measure for the run's children.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil

from . import common as C
from .run import SandboxProcess, log

UTC = timezone.utc
MB = 1 << 20


class TreeSampler:
    """RSS of one process and of each of its descendants, every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int, dict[int, int]]] = []  # (time, own RSS, descendants' RSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                own = self.proc.memory_info().rss
                kids = {}
                for child in self.proc.children(recursive=True):
                    try:
                        kids[child.pid] = child.memory_info().rss
                    except psutil.Error:
                        continue
                self.samples.append((time.time(), own, kids))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(env: dict[str, str], first: str, last: str, workdir: Path, label: str) -> dict[str, Any]:
    """One ``feedback_ingest`` run in ``bench.job_proc``, sampled from outside."""
    result_path = workdir / f"{label}.json"
    home = workdir / f"{label}-dagster"
    home.mkdir(exist_ok=True)
    config = {"env": env, "first": first, "last": last, "result": str(result_path), "profile": None, "executor": "in_process", "dagster_home": str(home), "instance": "ephemeral"}
    with open(workdir / f"{label}.stderr", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bench.job_proc"], cwd=C.ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
        sampler = TreeSampler(proc.pid).start()
        proc.stdin.write(json.dumps(config).encode())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=4 * 3600)
        sampler.stop()
    report = json.loads(result_path.read_text())
    if not report["success"]:
        raise RuntimeError(f"{label}: the run failed: {report['failures']}")
    return summarize(report, sampler)


def summarize(report: dict[str, Any], sampler: TreeSampler) -> dict[str, Any]:
    """Peaks per phase (MB) from the run's report and the outside samples."""
    start = report["wall_start"]

    def peak(first: float, last: float) -> float | None:
        values = [own for t, own, _ in sampler.samples if first <= t - start <= last]
        return round(max(values) / MB, 1) if values else None

    steps = report["steps"]
    sync, dash = steps.get("feedback_sync", {}), steps.get("feedback_dashboard", {})
    children = [max(kids.values()) for _, _, kids in sampler.samples if kids]
    timeline: dict[int, int] = {}
    for t, own, _ in sampler.samples:
        second = int(t - start)
        timeline[second] = max(timeline.get(second, 0), own)
    return {
        "wall_seconds": round(report["wall_seconds"], 2),
        "rss_before_run_mb": round(report["rss_before_run_bytes"] / MB, 1),
        "sync_step_peak_mb": peak(sync.get("start_offset", 0), sync.get("end_offset", -1)),
        "sync_step_seconds": sync.get("seconds"),
        "dashboard_step_peak_mb": peak(dash.get("start_offset", 0), dash.get("end_offset", -1)),
        "dashboard_step_seconds": dash.get("seconds"),
        "run_process_vmhwm_mb": round(report["peak_rss_bytes"] / MB, 1),
        "largest_child_peak_mb": round(max(children) / MB, 1) if children else None,
        "tree_peak_mb": round(max(own + sum(kids.values()) for _, own, kids in sampler.samples) / MB, 1) if sampler.samples else None,
        "cpu_seconds": round(report["cpu_user_seconds"] + report["cpu_system_seconds"], 2),
        "timeline_mb": {s: round(v / MB) for s, v in sorted(timeline.items()) if s >= 0},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--timeline", action="store_true", help="also print the run process's RSS per second")
    parser.add_argument("--output", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)

    per_day = C.per_day_for(args.records)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=C.DAYS - 1)
    inc_first = max(first, today - timedelta(days=C.LOOKBACK_DAYS))
    workdir = Path(tempfile.mkdtemp(prefix="feedback-memory-"))
    log(f"load average {os.getloadavg()[0]:.1f}; {C.DAYS * per_day * len(C.PROVIDERS):,} records; work dir {workdir}")
    sandbox = SandboxProcess(C.DAYS, per_day, workdir)
    results: dict[str, Any] = {}
    try:
        env = {
            **sandbox.env,
            "FEEDBACK_START_DATE": first.isoformat(),
            "FEEDBACK_LOOKBACK_DAYS": str(C.LOOKBACK_DAYS),
            **{f"FEEDBACK_{name.upper()}_BUDGET_LIMIT": "1000000000" for name in C.PROVIDERS},
            "FEEDBACK_DB": str(workdir / "feedback.duckdb"),
            "FEEDBACK_DASHBOARD": str(workdir / "dashboard.html"),
        }
        log("backfill")
        results["backfill"] = run_measured(env, first.isoformat(), today.isoformat(), workdir, "backfill")
        log("incremental run, no changes")
        results["no_change"] = run_measured(env, inc_first.isoformat(), today.isoformat(), workdir, "no-change")
        for name in C.PROVIDERS:
            sandbox.control("POST", f"/_control/{name}/touch", {"fraction": C.TOUCH_FRACTION, "seed": 1000, "changes": C.TOUCH_CHANGES.get(name, {})})
        log(f"incremental run, {C.TOUCH_FRACTION:.0%} changed")
        results["changed"] = run_measured(env, inc_first.isoformat(), today.isoformat(), workdir, "changed")
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    columns = [k for k in next(iter(results.values())) if k != "timeline_mb"]
    print("| run | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for kind, row in results.items():
        print(f"| {kind} | " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |")
    if args.timeline:
        for kind, row in results.items():
            print(f"{kind}: " + " ".join(f"{s}s:{v}" for s, v in row["timeline_mb"].items()))
    if args.output:
        args.output.write_text(json.dumps({"load_average_end": os.getloadavg(), **results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
