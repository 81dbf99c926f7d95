"""``python -m feedback_pipeline.dashboard [--force]``: draw the dashboard now, outside a run.

For after a run whose provider step failed (Dagster then skips the dashboard step) or after
``feedback-pipeline reset``; reads ``FEEDBACK_DB`` and ``FEEDBACK_DASHBOARD`` like the asset.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime

from .build import build_dashboard, child_main, warm_child_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback_pipeline.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="redraw even if the file already shows this snapshot today")
    # The feedback_dashboard asset's child process (build.build_dashboard_in_child): paths given,
    # nothing read from the environment, the result pickled to --result.
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--now", type=datetime.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    # A warm child (build.start_warm_child): the time to draw for comes on stdin.
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.result and args.warm:
        return warm_child_main(args.snapshot, args.output, args.result)
    if args.result:
        return child_main(args.snapshot, args.output, args.now, args.result)
    from ..settings import DEFAULT_DB  # Dagster: not for the asset's child process
    from .asset import DEFAULT_DASHBOARD

    db = os.environ.get("FEEDBACK_DB") or DEFAULT_DB
    if not os.path.exists(db):
        print(f"No snapshot at {db} (FEEDBACK_DB): run the pipeline first.", file=sys.stderr)
        return 2
    result = build_dashboard(db, os.environ.get("FEEDBACK_DASHBOARD") or DEFAULT_DASHBOARD, force=args.force)
    print(f"{'Wrote' if result.written else 'Unchanged:'} {result.path.resolve()} ({result.bytes / 1024:,.0f} KiB, {result.seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
