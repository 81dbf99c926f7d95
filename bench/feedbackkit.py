"""FeedbackKit's one-array API: memory and time of its sync against the raw download.

    python -m bench.feedbackkit                          40,000 and 200,000 records, 3 repeats
    python -m bench.feedbackkit --records 40000 200000 400000 --repeat 1
    python -m bench.feedbackkit --records 200000 --link-mbit 1000     through a 1 Gbit/s link

FeedbackKit answers every run with the project's whole history in one JSON array, so what its
runs cost must not follow the size of that array: memory flat in the record count, and an
hourly run within 1.5x of the bare download of the array (the API has no filter: downloading it
is the floor). For each size the sandbox serves only FeedbackKit (365 days, in its own process)
and, with medians over the repeats, this measures

* the raw download: the array with bare httpx, streamed and dropped (the floor);
* a backfill of the whole year (every record built and stored) in a child process;
* two hourly runs (today and the 7 days before, nothing changed), each in a child process of
  its own: the first after the backfill rewrites the window's rows side by side once (the
  backfill stored them in the API's vote order: ``writes.relocate``), the second is what every
  later hour costs, and is the one graded;

each child reporting the sync's wall time and its peak RSS (``ru_maxrss``), with Dagster and the
definitions imported first, as in a run process. Writes ``bench/results/feedbackkit.json``.

Over loopback the sandbox's body lands in one burst once built, so the run's scan of it cannot
overlap its arrival, as it does when a real API's body comes over a network. ``--link-mbit``
sends every body (the bare download's too) through the sandbox's ``link`` fault at that many
Mbit/s, which shows what a run costs beyond the download when the bytes arrive over time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import common as C

UTC = timezone.utc
TARGET_PEAK_MB = 400.0
TARGET_HOURLY_RATIO = 1.5
# Peak RSS counts as flat when the largest size costs at most this much more than the smallest.
FLAT_SLACK_MB = 50.0


def log(message: str) -> None:
    print(f"[bench.feedbackkit {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the child: one sync ---------------------------------------------------------------------


def child() -> int:
    """One sync of FeedbackKit (config as JSON on stdin); prints one JSON line."""
    config = json.loads(sys.stdin.read())
    for var in list(os.environ):
        if var.split("_")[0] in {"MINTLIFY", "USERSNAP", "FORMBRICKS", "MAPBOX", "FEEDBACKKIT"} or var.startswith("FEEDBACK_"):
            del os.environ[var]
    os.environ.update(config["env"])
    import dagster  # noqa: F401 - a run process holds Dagster and the definitions

    import feedback_pipeline.definitions  # noqa: F401
    from feedback_pipeline.providers.base import Window
    from feedback_pipeline.providers import provider_from_env
    from feedback_pipeline.sync import sync
    from feedback_pipeline.warehouse import Warehouse

    rss_before = _rss_bytes()
    provider = provider_from_env("feedbackkit", os.environ)
    window = Window.for_days(date.fromisoformat(config["first"]), date.fromisoformat(config["last"]))
    t0 = time.perf_counter()
    with Warehouse(config["db"]).session() as session, session.cursor() as cursor:
        report = sync(provider, cursor, window)
    seconds = time.perf_counter() - t0
    out = {
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_bytes": rss_before,
        "pages": report.pages,
        "records": report.records,
        "requests": report.requests,
        "inserted": report.counts.inserted,
        "updated": report.counts.updated,
        "deleted": report.counts.deleted,
        "rejected": report.counts.rejected,
        "engine_seconds": report.seconds,
    }
    print(json.dumps(out), flush=True)
    return 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the parent --------------------------------------------------------------------------------


class Sandbox:
    """``bench.sandbox_proc`` serving FeedbackKit only; stops when its stdin closes."""

    def __init__(self, per_day: int, workdir: Path, link_mbit: float | None = None):
        self._stderr = open(workdir / "sandbox.stderr", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_proc", "--days", str(C.DAYS), "--per-day", str(per_day), "--seed", str(C.SEED), "--providers", "feedbackkit"],
            cwd=C.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {(workdir / 'sandbox.stderr').read_text(errors='replace')[-2000:]}")
        info = json.loads(line)
        self.env: dict[str, str] = info["env"]
        self.records: int = info["records"]["feedbackkit"]
        if link_mbit:
            import httpx

            fault = {"kind": "link", "count": None, "rate": link_mbit * 1e6 / 8}
            httpx.post(f"{info['url']}/_control/feedbackkit/faults", json=fault, timeout=30).raise_for_status()

    def stop(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.terminate()
            self.proc.wait(timeout=10)
        finally:
            self._stderr.close()


def download(env: dict[str, str]) -> dict[str, Any]:
    """The array with bare httpx, streamed and dropped: the floor of any FeedbackKit run."""
    import httpx

    url = env["FEEDBACKKIT_BASE_URL"].rstrip("/") + "/api/v1/feedbacks"
    with httpx.Client(headers={"X-API-Key": env["FEEDBACKKIT_API_KEY"]}, timeout=600) as client:
        t0 = time.perf_counter()
        size = 0
        with client.stream("GET", url, params={"includeMerged": "true"}) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
        return {"seconds": time.perf_counter() - t0, "bytes": size}


def run_child(env: dict[str, str], db: Path, first: date, last: date) -> dict[str, Any]:
    config = {"env": env, "db": str(db), "first": first.isoformat(), "last": last.isoformat()}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.feedbackkit", "--child"],
        cwd=C.ROOT, input=json.dumps(config).encode(), capture_output=True, timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the sync child failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-3000:]}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def measure(records: int, repeat: int, workdir: Path, link_mbit: float | None = None) -> dict[str, Any]:
    per_day = max(1, math.ceil(records / C.DAYS))
    today = datetime.now(UTC).date()
    first = today - timedelta(days=C.DAYS - 1)
    hourly_first = today - timedelta(days=C.LOOKBACK_DAYS)
    sandbox = Sandbox(per_day, workdir, link_mbit)
    log(f"{sandbox.records:,} FeedbackKit records served" + (f" through a {link_mbit:g} Mbit/s link" if link_mbit else " over loopback"))
    runs: list[dict[str, Any]] = []
    try:
        download(sandbox.env)  # warm-up: the sandbox builds its vote index on the first request
        for index in range(repeat):
            db = workdir / f"feedbackkit-{records}-{index}.duckdb"
            raw = download(sandbox.env)
            backfill = run_child(sandbox.env, db, first, today)
            raw_again = download(sandbox.env)
            first_hourly = run_child(sandbox.env, db, hourly_first, today)
            hourly = run_child(sandbox.env, db, hourly_first, today)
            run = {
                "download_seconds": min(raw["seconds"], raw_again["seconds"]),
                "body_bytes": raw["bytes"],
                "backfill": backfill,
                "first_hourly": first_hourly,
                "hourly": hourly,
                "hourly_ratio_to_download": hourly["seconds"] / min(raw["seconds"], raw_again["seconds"]),
            }
            log(
                f"{records:,}: download {run['download_seconds']:.2f}s; backfill {backfill['seconds']:.2f}s, peak RSS "
                f"{backfill['peak_rss_bytes'] / 2**20:.0f} MB; first hourly {first_hourly['seconds']:.2f}s, hourly {hourly['seconds']:.2f}s "
                f"({run['hourly_ratio_to_download']:.2f}x the download), peak RSS {hourly['peak_rss_bytes'] / 2**20:.0f} MB"
            )
            runs.append(run)
            for path in workdir.glob(f"feedbackkit-{records}-{index}*"):
                path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
    finally:
        sandbox.stop()
    return {
        "records": sandbox.records,
        "link_mbit": link_mbit,
        "body_mb": C.mb(runs[0]["body_bytes"]),
        "download_seconds": C.median(r["download_seconds"] for r in runs),
        "backfill_seconds": C.median(r["backfill"]["seconds"] for r in runs),
        "backfill_peak_rss_mb": C.mb(max(r["backfill"]["peak_rss_bytes"] for r in runs)),
        "first_hourly_seconds": C.median(r["first_hourly"]["seconds"] for r in runs),
        "hourly_seconds": C.median(r["hourly"]["seconds"] for r in runs),
        "hourly_peak_rss_mb": C.mb(max(max(r["hourly"]["peak_rss_bytes"], r["first_hourly"]["peak_rss_bytes"]) for r in runs)),
        "hourly_ratio_to_download": C.median(r["hourly_ratio_to_download"] for r in runs),
        # The part of the hourly run that is FeedbackKit's own: waiting for its pages (request,
        # stream, window filter); the rest is the engine's opens, commit and checks.
        "hourly_fetch_seconds": C.median(r["hourly"]["engine_seconds"]["fetch_wait"] for r in runs),
        "hourly_commit_seconds": C.median(r["hourly"]["engine_seconds"]["commit"] for r in runs),
        "rss_before_sync_mb": C.mb(C.median(r["backfill"]["rss_before_bytes"] for r in runs)),
        "runs": runs,
    }


def render(sizes: list[dict[str, Any]]) -> str:
    links = {s.get("link_mbit") for s in sizes}
    lines = [
        "bodies " + ", ".join(f"through a {link:g} Mbit/s link" if link else "over loopback (in one burst once built)" for link in links),
        "",
        "| FeedbackKit records | body | download | first hourly run after the backfill | hourly run (8 days) | hourly / download | of it: pages (fetch) / download | of it: commit | backfill | peak RSS backfill | peak RSS hourly | RSS before the sync |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        lines.append(
            f"| {s['records']:,} | {s['body_mb']:.0f} MB | {s['download_seconds']:.2f} s | {s['first_hourly_seconds']:.2f} s | {s['hourly_seconds']:.2f} s | "
            f"{s['hourly_ratio_to_download']:.2f}x | {s['hourly_fetch_seconds'] / s['download_seconds']:.2f}x | {s['hourly_commit_seconds']:.2f} s | {s['backfill_seconds']:.2f} s | {s['backfill_peak_rss_mb']:.0f} MB | "
            f"{s['hourly_peak_rss_mb']:.0f} MB | {s['rss_before_sync_mb']:.0f} MB |"
        )
    peaks = [max(s["backfill_peak_rss_mb"], s["hourly_peak_rss_mb"]) for s in sizes]
    flat = max(peaks) - min(peaks) <= FLAT_SLACK_MB
    lines.append("")
    lines.append(
        f"peak RSS <= {TARGET_PEAK_MB:.0f} MB: {'met' if max(peaks) <= TARGET_PEAK_MB else 'MISSED'} (largest {max(peaks):.0f} MB); "
        f"flat in the record count (within {FLAT_SLACK_MB:.0f} MB): {'yes' if flat else 'NO'} ({min(peaks):.0f}-{max(peaks):.0f} MB); "
        f"hourly run <= {TARGET_HOURLY_RATIO}x the download: "
        + ", ".join(f"{s['records']:,}: {'met' if s['hourly_ratio_to_download'] <= TARGET_HOURLY_RATIO else 'MISSED'}" for s in sizes)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feedbackkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[40_000, 200_000], help="FeedbackKit records over 365 days, one size per value (default 40000 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per size; medians (default 3)")
    parser.add_argument("--link-mbit", type=float, default=None, help="send the bodies at this many Mbit/s (the sandbox's link fault) instead of in one burst over loopback")
    parser.add_argument("--output", type=Path, default=C.RESULTS / "feedbackkit.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child()
    if os.getloadavg()[0] > 1.0:
        log(f"WARNING: load average {os.getloadavg()[0]:.1f}: something else is running; timings will be noisy")
    workdir = Path(tempfile.mkdtemp(prefix="feedbackkit-bench-"))
    try:
        sizes = [measure(n, args.repeat, workdir, args.link_mbit) for n in args.records]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = render(sizes)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"load_average": os.getloadavg(), "sizes": sizes, "table": table}, indent=1, default=str))
    print(table, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
