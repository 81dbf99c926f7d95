"""``feedback-pipeline``: the sandbox server, the demo, and the web UI wired to the sandbox.

    feedback-pipeline sandbox [--port 8765] [--accounts N]
                                              serve the five emulators (N accounts each), print the variables
    feedback-pipeline demo                    what ``make demo`` runs
    feedback-pipeline ui                      what ``make ui`` runs (sandbox + Dagster webserver, daemon, code server)
    feedback-pipeline reset PROVIDER          forget a provider's rows and cursors (re-sync from scratch)
    feedback-pipeline erase (--user-id ID | --email ADDRESS) [--provider NAME]
                                              erase one person (GDPR art. 17) and keep them out
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sandbox.server import SandboxServer

UTC = timezone.utc
DEFAULT_SANDBOX_PORT = 8765
# Where `feedback-pipeline sandbox --accounts N` (N > 1) writes the FEEDBACK_ACCOUNTS_FILE for accounts 2..N.
DEFAULT_ACCOUNTS_FILE = "data/sandbox-accounts.yaml"


def _sandbox_server(args: argparse.Namespace, port: int) -> SandboxServer:
    from .sandbox.app import Sandbox
    from .sandbox.core import SandboxState
    from .sandbox.server import SandboxServer

    state = SandboxState(
        seed=args.seed,
        days=args.days,
        per_day=args.per_day,
        mintlify_rate_limit=None if args.no_rate_limit else 100,
        accounts=args.accounts,
    )
    return SandboxServer(Sandbox(state), port=port)


def _add_sandbox_options(parser: argparse.ArgumentParser, *, days: int = 30, per_day: int = 20, accounts: int = 1) -> None:
    parser.add_argument("--seed", type=int, default=7, help="data generator seed (default 7)")
    parser.add_argument("--days", type=int, default=days, help=f"days of generated feedback ending today (default {days})")
    parser.add_argument("--per-day", type=int, default=per_day, help=f"records per provider and day (default {per_day})")
    parser.add_argument("--no-rate-limit", action="store_true", help="switch off the emulated Mintlify limit of 100 requests/hour")
    parser.add_argument("--accounts", type=_positive, default=accounts, help=f"accounts per provider (default {accounts}); accounts 2..N go into a FEEDBACK_ACCOUNTS_FILE")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _sandbox_env(server: SandboxServer, accounts_file: str) -> dict[str, str]:
    """The variables that point the pipeline at ``server``: account 1's, plus (when it serves
    more) the accounts file, written to ``accounts_file``, and the secrets it names."""
    env = server.env()
    if server.sandbox.state.accounts > 1:
        env.update(server.write_accounts_file(accounts_file))
    return env


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve the sandbox in the foreground and print the environment that points at it."""
    server = _sandbox_server(args, args.port).start()
    env = _sandbox_env(server, args.accounts_file)
    print(f"Provider sandbox listening on {server.url} (Ctrl-C to stop). Point the pipeline at it with:\n")
    for name, value in sorted(env.items()):
        print(f"export {name}={shlex.quote(value)}")
    if server.sandbox.state.accounts > 1:
        print(f"\n{server.sandbox.state.accounts} accounts per provider: the first from the variables above, the others declared in {env['FEEDBACK_ACCOUNTS_FILE']}")
    print(f"\nControl API: {server.url}/_control/health, /_control/requests, /_control/<provider>/faults ...", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


UI_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def cmd_ui(args: argparse.Namespace) -> int:
    """Sandbox on a fixed port, plus Dagster's code server, webserver and daemon as separate
    processes (``feedback_pipeline.services``) with a persistent DAGSTER_HOME.

    The three services share one process group of their own, so a stop request reaches them
    exactly once: Ctrl-C, SIGTERM or SIGHUP to this process is forwarded as one SIGINT to the
    group (Dagster's graceful shutdown; a second SIGINT would abort it half-way), a second request
    kills the group, and whatever is left of the group shortly after the services exit is killed
    before the sandbox stops. A service that exits on its own stops the others.
    """
    from .services import ServiceGroup, code_server_command, daemon_command, wait_for_code_server, webserver_command, write_grpc_workspace
    from .sandbox.server import free_port

    root = Path.cwd()
    home = root / ".dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(root / "dagster.yaml", home / "dagster.yaml")
    server = _sandbox_server(args, args.sandbox_port).start()
    env = {**os.environ, **_sandbox_env(server, DEFAULT_ACCOUNTS_FILE), "DAGSTER_HOME": str(home)}
    env.setdefault("FEEDBACK_START_DATE", (datetime.now(UTC).date() - timedelta(days=args.days - 1)).isoformat())
    print(f"Sandbox on {server.url}; Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})", flush=True)
    grpc_port = args.code_server_port or free_port()
    services = ServiceGroup(env, cwd=root)
    stops: list[int] = []

    def _stop(signum: int, _frame: object) -> None:
        stops.append(signum)
        if len(stops) > 1:
            services.kill()
        else:
            services.interrupt()

    previous = {signum: signal.signal(signum, _stop) for signum in UI_STOP_SIGNALS}
    code = 0
    try:
        code_server = services.start("code server", code_server_command("127.0.0.1", grpc_port))
        if not stops:
            try:
                wait_for_code_server("127.0.0.1", grpc_port, code_server)
            except (RuntimeError, TimeoutError) as exc:
                if not stops:
                    print(f"Dagster did not start: {exc}", file=sys.stderr, flush=True)
                    code = 1
        if not stops and not code:
            target = write_grpc_workspace(home / "workspace.grpc.yaml", "127.0.0.1", grpc_port)
            services.start("webserver", webserver_command(args.host, args.port, target))
            services.start("daemon", daemon_command(target))
        while not stops and not code:
            exited = services.first_exit()
            if exited is not None:
                print(f"The Dagster {exited[0]} exited with {exited[1]}; stopping the others.", file=sys.stderr, flush=True)
                code = exited[1] or 1
                break
            time.sleep(0.5)
        codes = services.stop()
        if stops:
            print("Dagster services exited: " + ", ".join(f"{n} {c if c is not None else 'killed'}" for n, c in codes.items()), flush=True)
        return 0 if stops else code
    finally:
        services.kill()  # an unexpected error in this process: leave nothing behind
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.stop()
        if stops:
            print("Stopped the Dagster UI and the sandbox.", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    server = _sandbox_server(args, 0).start()
    try:
        return run_demo(server, db_path=args.db, days=args.days)
    finally:
        server.stop()


def cmd_reset(args: argparse.Namespace) -> int:
    """Forget a provider's rows and cursors (see Warehouse.reset)."""
    from .settings import PipelineSettings
    from .warehouse import Warehouse

    path = PipelineSettings.from_env(_environment()).db_path
    removed = Warehouse(path).reset(args.provider, args.account)
    print(f"{path}: removed " + ", ".join(f"{n} from {t}" for t, n in removed.items()))
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase one person from FEEDBACK_DB and keep them out (README "Erasing a person").

    Under the writer lock: one transaction removes the rows and rejects, records the audit and
    the suppression and logs the change; both snapshot files are rebuilt as full copies; the
    Iceberg copy (when configured) commits the removal and drops its older snapshots and their
    files; last, the working file is rewritten compactly. Then the dashboard file, when there is
    one, is drawn again from the new snapshot (its list of latest texts may quote the person), or
    removed if that fails. Prints counts, never the identifier."""
    from .erasure import EMAIL, USER_ID
    from .lake import LakeSettings
    from .settings import PipelineSettings
    from .warehouse import Warehouse

    kind, value = (USER_ID, args.user_id) if args.user_id is not None else (EMAIL, args.email)
    env = _environment()
    path = PipelineSettings.from_env(env).db_path
    lake = LakeSettings.from_env(env, db_path=path)
    purge, lake_error = None, None
    with Warehouse(path).session() as session:
        result = session.erase(kind, value, args.provider)
        if lake is not None:
            try:
                from .lake import LakeMirror

                mirror = LakeMirror(lake)
                session.feed(lambda con, generation: mirror.apply(con, generation, f"erase:{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"))
                purge = mirror.last_purge
            except Exception as exc:  # noqa: BLE001 - the next run's apply finishes it; compact first
                lake_error = exc
        session.compact()
    dashboard = _redraw_dashboard(path, env)
    per_provider = ", ".join(f"{p} {n}" for p, n in sorted(result.rows_by_provider().items())) or "none"
    scope = f"provider {args.provider}" if args.provider else "every provider"
    print(
        f"{path}: erased one person by {'user id' if kind == USER_ID else 'e-mail'} ({scope}): "
        f"{result.rows_removed} feedback row(s) removed ({per_provider}), {result.rejects_removed} reject(s) removed; "
        f"their records are suppressed in later runs; audit row added to pipeline_erasures; "
        f"both snapshot files and the working file rewritten"
        + (f"; Iceberg copy: {purge.snapshots_expired} older snapshot(s) expired, {purge.files_deleted} file(s) deleted" if purge else "")
        + (f"; {dashboard}" if dashboard else "")
        + "."
    )
    if lake_error is not None:
        print(
            f"The Iceberg copy was not updated ({type(lake_error).__name__}); the next run's commit removes the rows "
            "and the older snapshots' files, or run the erase again.",
            file=sys.stderr,
        )
        return 1
    return 0


def _environment() -> dict[str, str]:
    """The process environment with the working directory's ``.env`` over it, as the ``dagster``
    CLI reads its configuration (CONTRACT section 3): ``erase`` and ``reset`` act on the
    warehouse the runs use, also when ``FEEDBACK_DB`` is set only in that file."""
    from dotenv import dotenv_values

    env = dict(os.environ)
    dotenv = Path.cwd() / ".env"
    if dotenv.is_file():
        env.update({key: value for key, value in dotenv_values(dotenv).items() if value is not None})
    return env


def _redraw_dashboard(db_path: str, env: Mapping[str, str]) -> str | None:
    """Draw the dashboard file (``FEEDBACK_DASHBOARD``) again from the snapshot at ``db_path``
    after an erasure; when drawing fails, remove the file rather than keep the person's texts in
    it. What happened, for the command's output; None when there is no dashboard file."""
    from .dashboard.asset import DEFAULT_DASHBOARD
    from .dashboard.build import build_dashboard_in_child

    page = Path(env.get("FEEDBACK_DASHBOARD") or DEFAULT_DASHBOARD)
    if not page.exists():
        return None
    try:
        build_dashboard_in_child(db_path, page)
    except Exception as exc:  # noqa: BLE001 - the page must not outlive the erasure either way
        page.unlink(missing_ok=True)
        return f"the dashboard could not be drawn again ({type(exc).__name__}) and was removed; the next run draws it"
    return f"dashboard {page} drawn again"


def _identifier(text: str) -> str:
    """argparse type: a non-blank identifier (a blank one would match nobody, silently)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the identifier is empty")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="feedback-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sandbox", help="serve the provider sandbox on loopback")
    p.add_argument("--port", type=int, default=DEFAULT_SANDBOX_PORT)
    p.add_argument("--accounts-file", default=DEFAULT_ACCOUNTS_FILE, help=f"where --accounts N > 1 writes the accounts file (default {DEFAULT_ACCOUNTS_FILE})")
    _add_sandbox_options(p)
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("demo", help="sandbox + 30-day backfill + incremental run + summary")
    p.add_argument("--db", default="data/feedback.duckdb", help="where the demo writes (rebuilt on every demo run; FEEDBACK_DB is not used)")
    _add_sandbox_options(p, accounts=2)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", help="sandbox + Dagster webserver, daemon and code server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--code-server-port", type=int, default=0, help="the code server's gRPC port on 127.0.0.1 (default: a free one)")
    p.add_argument("--sandbox-port", type=int, default=DEFAULT_SANDBOX_PORT)
    _add_sandbox_options(p, days=90)
    p.set_defaults(func=cmd_ui)

    from .providers import names

    p = sub.add_parser("reset", help="forget one provider's rows, rejects and cursors in FEEDBACK_DB")
    p.add_argument("provider", choices=names())
    p.add_argument("--account", help="only this account_id (default: every account of the provider)")
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser(
        "erase",
        help="erase one person's rows and rejects from FEEDBACK_DB, publish, and suppress them in later runs",
        description="Erase one person (GDPR article 17): their feedback rows (user_id exact, or user_email "
        "case-insensitive) and the rejects whose payload holds the identifier. Records a salted hash in "
        "pipeline_erasures, never the identifier. Exit 0 when done, 2 on bad arguments.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", type=_identifier, help="the person's user id (exact match)")
    who.add_argument("--email", type=_identifier, help="the person's e-mail address (case-insensitive)")
    p.add_argument("--provider", choices=names(), help="only this provider's rows (default: every provider)")
    p.set_defaults(func=cmd_erase)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
