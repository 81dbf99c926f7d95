"""Issue 18's growth target side by side: 1%-changed hourly runs at two stored sizes, interleaved.

    python -m bench.growth                                   200,000 over a year vs 1,000,000 over five years
    python -m bench.growth --sizes 200000:365 1000000:365 --rounds 8
    python -m bench.growth --quick                           tiny sizes: the smoke test
    python -m bench.growth --without-feedbackkit             the paged providers alone

``bench.run`` measures one stored size per invocation, so its growth curve pairs runs made minutes
or hours apart, and on a shared machine wall times drift by a third within minutes (README,
"Performance"): as much as the effect measured. Here every size (``records:days``) gets its own
sandbox process and warehouse, each is backfilled and given one hourly run with no change, and
then the rounds alternate between the sizes: touch 1% of every provider's records (as
``bench.run`` does), run the hourly job over the schedule's range with its tags. So every size
sees the machine in the same minutes, and the medians over the rounds compare like with like.

The default pair holds the same 110 records a day for one and for five years: only the history
grows, so a run's work is the same at both sizes and its cost should be too. Over one year the
larger size also holds 5x the records a day, so the same 1% touches 5x the rows of a run's days.

Per size and round: the slowest paged provider plus the publish (the issue's measure: FeedbackKit
aside, its API has no filter and its one array grows with the history whatever changed), the
publish alone, FeedbackKit's step and the sync step. Graded: the slowest paged provider plus the
publish at the largest size within 1.2x of the smallest. Writes ``bench/results/growth.json``.

``--without-feedbackkit`` leaves the one-array providers' accounts out of the runs, to tell the
paged providers' own growth from what FeedbackKit's array costs beside them: its emulator shares
the bench's two cores, and at five years it spends one of them building a five times larger
body while the paged providers commit (README, "Performance").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import common as C
from .run import HOURLY_TAGS, SandboxProcess, run_job, summarize_run

TARGET_RATIO = 1.2
TOUCH_SEED = 3000
DEFAULT_SIZES = ("200000:365", "1000000:1825")
QUICK_SIZES = ("4000:20", "20000:100")
MEASURES = ("paged_plus_publish_seconds", "publish_seconds", "feedbackkit_seconds", "sync_step_seconds")


def log(message: str) -> None:
    print(f"[bench.growth {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    """``records:days`` (``days`` defaults to a year)."""
    records, _, days = text.partition(":")
    return int(records), int(days or C.DAYS)


class Site:
    """One stored size: its sandbox, its warehouse and the environment its runs get."""

    def __init__(self, records: int, days: int, workdir: Path, *, feedbackkit: bool = True):
        self.records, self.days = records, days
        self.label = f"{records:,} over {days} days"
        self.workdir = workdir
        self.per_day = C.per_day_for(records, days)
        self.sandbox = SandboxProcess(days, self.per_day, workdir)
        self.today = datetime.now(timezone.utc).date()
        self.first = self.today - timedelta(days=days - 1)
        self.env = {
            **self.sandbox.env,
            "FEEDBACK_START_DATE": self.first.isoformat(),
            "FEEDBACK_LOOKBACK_DAYS": str(C.LOOKBACK_DAYS),
            **{f"FEEDBACK_{name.upper()}_BUDGET_LIMIT": "1000000000" for name in C.PROVIDERS},
            "FEEDBACK_DB": str(workdir / "feedback.duckdb"),
            "FEEDBACK_DASHBOARD": str(workdir / "dashboard.html"),
        }
        if not feedbackkit:
            for key in one_array_settings():
                self.env.pop(key, None)
        self.providers = [name for name in C.PROVIDERS if feedbackkit or name not in C.ONE_ARRAY]
        self.runs = 0

    def run(self, label: str, *, hourly: bool) -> dict[str, Any]:
        """One run in a child process (``bench.run.run_job``); its summary."""
        self.runs += 1
        first = self.today - timedelta(days=C.LOOKBACK_DAYS) if hourly else self.first
        report = run_job(self.env, first.isoformat(), self.today.isoformat(), self.workdir, f"{self.runs:02d}-{label}", self.sandbox, tags=HOURLY_TAGS if hourly else None)
        return summarize_run(report)

    def touch(self, seed: int) -> int:
        """Mark 1% of every provider's records as updated now; how many."""
        touched = 0
        for name in self.providers:
            answer = self.sandbox.control("POST", f"/_control/{name}/touch", {"fraction": C.TOUCH_FRACTION, "seed": seed, "changes": C.TOUCH_CHANGES.get(name, {})})
            touched += answer["touched"]
        return touched

    def stop(self) -> None:
        self.sandbox.stop()


def one_array_settings() -> list[str]:
    """The environment variables of the providers answering with one array (FeedbackKit): without
    them no account of those providers is configured, so a run leaves them out."""
    from feedback_pipeline.providers import get_spec

    return [setting.var for name in C.PROVIDERS if name in C.ONE_ARRAY for setting in get_spec(name).settings]


def measures(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers a round reports, from a run's summary."""
    providers = summary["providers"]
    slowest = max((name for name in providers if name not in C.ONE_ARRAY), key=lambda name: providers[name]["duration_seconds"] or 0.0)
    paged = providers[slowest]["duration_seconds"] or 0.0
    return {
        "paged_plus_publish_seconds": paged + summary["publish_seconds"],
        # Where the slowest paged provider's time went: waiting for its pages, or committing
        # (its commits queue on the one writer behind the other providers').
        "slowest_paged_provider": slowest,
        "slowest_waiting_for_pages_seconds": providers[slowest]["seconds_waiting_for_pages"] or 0.0,
        "slowest_committing_seconds": providers[slowest]["seconds_committing"] or 0.0,
        "publish_seconds": summary["publish_seconds"],
        "feedbackkit_seconds": max((p["duration_seconds"] or 0.0) for name, p in providers.items() if name in C.ONE_ARRAY),
        "sync_step_seconds": summary["sync_step_seconds"] or 0.0,
        "rows_updated": sum((p["rows_updated"] or 0) for p in providers.values()),
    }


def measure(sizes: list[tuple[int, int]], rounds: int, workdir: Path, *, feedbackkit: bool = True) -> dict[str, Any]:
    sites: list[Site] = []
    try:
        for records, days in sizes:
            site_dir = workdir / f"records-{records}-days-{days}"
            site_dir.mkdir()
            sites.append(Site(records, days, site_dir, feedbackkit=feedbackkit))
            log(f"{sites[-1].label}: sandbox serving {sum(sites[-1].sandbox.records.values()):,} records")
        for site in sites:
            backfill = site.run("backfill", hourly=False)
            log(f"{site.label}: backfill {backfill['wall_seconds']:.1f} s")
            site.run("no-change", hourly=True)
        per_site: dict[str, list[dict[str, float]]] = {site.label: [] for site in sites}
        for index in range(rounds):
            for site in sites:
                # The same records every round. Rounds are seconds apart, not an hour, so a change
                # query's look-back (sync.CHANGE_OVERLAP, 10 minutes) reaches every earlier round:
                # with a new 1% each round, round k's change queries made the emulators walk k% of
                # their records (in Python, on their one event loop: at five years Formbricks'
                # first page took 35 ms in round 1 and 230 ms in round 6, and Mintlify's waited
                # behind it), which no hourly run an hour after the last one meets.
                touched = site.touch(seed=TOUCH_SEED)
                point = {**measures(site.run("changed", hourly=True)), "touched": touched}
                per_site[site.label].append(point)
                log(
                    f"round {index + 1}/{rounds}, {site.label}: paged + publish {point['paged_plus_publish_seconds']:.3f} s "
                    f"(publish {point['publish_seconds']:.3f} s; {point['slowest_paged_provider']}: pages {point['slowest_waiting_for_pages_seconds']:.3f} s, "
                    f"commits {point['slowest_committing_seconds']:.3f} s), FeedbackKit {point['feedbackkit_seconds']:.3f} s, sync step {point['sync_step_seconds']:.3f} s"
                )
    finally:
        for site in sites:
            site.stop()
    points = [
        {
            "records": site.records,
            "days": site.days,
            "per_day": site.per_day,
            "rounds": per_site[site.label],
            "median": {key: statistics.median(r[key] for r in per_site[site.label]) for key in (*MEASURES, "rows_updated")},
        }
        for site in sites
    ]
    low, high = points[0]["median"]["paged_plus_publish_seconds"], points[-1]["median"]["paged_plus_publish_seconds"]
    ratio = high / low if low else None
    return {"sizes": points, "rounds": rounds, "feedbackkit": feedbackkit, "ratio": ratio, "target_ratio": TARGET_RATIO, "pass": ratio is not None and ratio <= TARGET_RATIO}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"## Growth, interleaved: 1%-changed hourly runs{'' if result['feedbackkit'] else ' without FeedbackKit'}, medians of {result['rounds']} rounds per size",
        "",
        "| stored records | days | per day | slowest paged provider + publish | publish | FeedbackKit | sync step | rows updated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["sizes"]:
        m = p["median"]
        feedbackkit = f"{m['feedbackkit_seconds']:.3f} s" if result["feedbackkit"] else "not run"
        lines.append(
            f"| {p['records']:,} | {p['days']} | {p['per_day']} | {m['paged_plus_publish_seconds']:.3f} s | {m['publish_seconds']:.3f} s | "
            f"{feedbackkit} | {m['sync_step_seconds']:.3f} s | {m['rows_updated']:.0f} |"
        )
    verdict = "met" if result["pass"] else "MISSED"
    lines += ["", f"largest / smallest (slowest paged provider + publish): {result['ratio']:.2f}x; target <= {TARGET_RATIO}x: {verdict}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=None, help=f"records:days per stored size, smallest first (default {' '.join(DEFAULT_SIZES)})")
    parser.add_argument("--rounds", type=int, default=6, help="touched hourly runs per size (default 6)")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes ({' '.join(QUICK_SIZES)}), 2 rounds: a smoke test")
    parser.add_argument("--without-feedbackkit", action="store_true", help="leave the one-array providers (FeedbackKit) out of every run")
    parser.add_argument("--output", type=Path, default=C.RESULTS / "growth.json", help="where the JSON goes (default bench/results/growth.json)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))]
    if len(sizes) < 2:
        parser.error("give at least two sizes")
    rounds = 2 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        result = measure(sizes, rounds, Path(tmp), feedbackkit=not args.without_feedbackkit)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
