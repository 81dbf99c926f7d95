"""Dagster as separate processes: one gRPC code server, the webserver and the daemon.

This is the layout of a deployment (see the README's "Dagster on PostgreSQL") and what
``make ui`` runs on one machine. Compared with ``dagster dev`` it prints no deprecation notice
(``dagster dev`` is superseded by ``dg dev``) and no warning about a ``dagster.yaml`` in the
working directory (``dagster dev`` checks for one; the webserver and the daemon read only
``$DAGSTER_HOME/dagster.yaml``), and each process can be stopped or restarted on its own.

The code server loads ``feedback_pipeline.definitions`` once; the webserver and the daemon reach it
over gRPC (a workspace file with a ``grpc_server`` entry) instead of each importing the pipeline,
and runs are launched from it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .dagster_env import with_event_settings

LOCATION = "feedback_pipeline"
MODULE = "feedback_pipeline.definitions"
BIN = Path(sys.executable).parent  # the console scripts of this environment


def code_server_command(host: str, port: int) -> list[str]:
    """``dagster code-server start``: a proxy that loads the definitions in a child process and can
    reload them (the UI's *Reload* button) without a restart."""
    return [str(BIN / "dagster"), "code-server", "start", "-m", MODULE, "--location-name", LOCATION, "-h", host, "-p", str(port)]


def write_grpc_workspace(path: Path, host: str, port: int) -> list[str]:
    """Write a workspace file whose one ``grpc_server`` entry is the running code server, and
    return the arguments that point the webserver or the daemon at it. (A file rather than
    ``--grpc-host/--grpc-port``: only a file can name the location, which then reads
    ``feedback_pipeline`` in the UI instead of ``host:port``.)"""
    path.write_text(f"load_from:\n  - grpc_server:\n      host: {host}\n      port: {port}\n      location_name: {LOCATION}\n")
    return ["-w", str(path)]


def webserver_command(host: str, port: int, target: Sequence[str]) -> list[str]:
    return [str(BIN / "dagster-webserver"), "-h", host, "-p", str(port), *target]


def daemon_command(target: Sequence[str]) -> list[str]:
    return [str(BIN / "dagster-daemon"), "run", *target]


def wait_for_code_server(host: str, port: int, process: subprocess.Popen, timeout: float = 180.0) -> None:
    """Return once the code server answers a gRPC ping. The proxy starts serving only after the
    definitions loaded, so a webserver or daemon started afterwards never sees the location as
    unreachable. (``DagsterGrpcClient`` is what Dagster's own CLI uses for this.)"""
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(port=port, host=host)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the code server exited with {process.returncode} before it served")
        try:
            client.ping("")
            return
        except Exception:  # noqa: BLE001 - any gRPC error means "not yet"
            if time.monotonic() > deadline:
                raise TimeoutError(f"the code server on {host}:{port} did not answer within {timeout:.0f}s") from None
            time.sleep(0.3)


class ServiceGroup:
    """Processes sharing one process group of their own, so that a stop reaches all of them at
    once and never comes from the terminal directly (a terminal's Ctrl-C goes to its foreground
    group only; :meth:`stop` forwards exactly one SIGINT, Dagster's graceful shutdown)."""

    def __init__(self, env: Mapping[str, str], *, cwd: Path | None = None, output: IO[bytes] | None = None):
        # The webserver and the daemon create runs (UI launches, the schedule, backfills) without
        # importing the definitions: they get Dagster's event-log settings here (dagster_env).
        self.env = with_event_settings(env)
        self.cwd = cwd
        self.output = output
        self.pgid: int | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.interrupted = False

    def start(self, name: str, command: Sequence[str]) -> subprocess.Popen:
        """Start ``command`` in the group (the first one creates it)."""
        process = subprocess.Popen(
            list(command),
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            process_group=0 if self.pgid is None else self.pgid,
        )
        if self.pgid is None:
            self.pgid = process.pid
        self.processes[name] = process
        return process

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the whole group (children such as run workers included); False when
        the group is gone."""
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, signum)
            return True
        except ProcessLookupError:
            return False

    def interrupt(self) -> None:
        """Dagster's graceful shutdown, sent once: a second SIGINT aborts it half-way."""
        if not self.interrupted:
            self.interrupted = True
            self.signal(signal.SIGINT)

    def first_exit(self) -> tuple[str, int] | None:
        """(name, exit code) of a service that has exited, if any."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop(self, grace: float = 60.0, stragglers: float = 15.0) -> dict[str, int | None]:
        """One SIGINT to the group, then wait up to ``grace`` seconds for every service and up to
        ``stragglers`` more for the rest of the group (run workers marking their runs); whatever
        is left then is killed. Exit codes by name (None: it had to be killed)."""
        self.interrupt()
        deadline = time.monotonic() + grace
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[name] = None
        deadline = time.monotonic() + stragglers
        while self.signal(0) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill()
        return codes

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
