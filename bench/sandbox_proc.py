"""The sandbox in its own process (so it has its own core): ``python -m bench.sandbox_proc``.

Generates ``--days`` x ``--per-day`` records per provider (seed ``--seed``; ``--providers`` serves
only the named emulators), with the Mintlify rate
limit switched off, serves them with uvicorn on a free loopback port and prints ONE JSON line
``{"url", "env", "pid", "records", "generate_seconds"}`` once it accepts connections. It stops
when its standard input closes (the parent exited) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.sandbox_proc")
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--per-day", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--providers", default="", help="comma-separated emulators to serve (default: all five)")
    args = parser.parse_args(argv)

    from feedback_pipeline.sandbox.app import Sandbox
    from feedback_pipeline.sandbox.core import SandboxState
    from feedback_pipeline.sandbox.server import SandboxServer

    t0 = time.monotonic()
    providers = tuple(p for p in args.providers.split(",") if p) or None
    sandbox = Sandbox(SandboxState(seed=args.seed, days=args.days, per_day=args.per_day, mintlify_rate_limit=None), providers=providers)
    generated = time.monotonic() - t0
    # The generated records are millions of Python objects that live as long as the process, and
    # every full collection of the interpreter's cycle collector walks them all: 0.3-0.5 s each at
    # five years of four providers (1M records; measured while generating), during which this
    # process answers nothing. A real API's pauses do not grow with our history, so the records
    # are frozen (gc.freeze): no collection walks them, and none of those pauses can land in a
    # measured run.
    gc.collect()
    gc.freeze()
    server = SandboxServer(sandbox, port=args.port).start()

    def _stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    import os

    print(
        json.dumps(
            {
                "url": server.url,
                "env": server.env(),
                "pid": os.getpid(),
                "records": {name: len(e.store.records) for name, e in sandbox.emulators.items()},
                "generate_seconds": round(generated, 3),
            }
        ),
        flush=True,
    )
    try:
        sys.stdin.buffer.read()  # until the parent closes the pipe (or exits)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
