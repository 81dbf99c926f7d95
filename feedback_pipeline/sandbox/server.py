"""Serve a :class:`~feedback_pipeline.sandbox.app.Sandbox` with uvicorn on loopback.

Used by ``feedback-pipeline sandbox``, ``make demo``/``make ui``, the tests and the benchmark.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from .app import Sandbox


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SandboxServer:
    """Run the sandbox in a background thread; ``with SandboxServer() as server: server.url``."""

    def __init__(self, sandbox: Sandbox | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.sandbox = sandbox or Sandbox()
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            self.sandbox.app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="sandbox", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return self.sandbox.env(self.url)

    def write_accounts_file(self, path: str | Path) -> dict[str, str]:
        """Write the accounts file for accounts 2..N of this server (:meth:`Sandbox.accounts_file`)
        to ``path``; return the variables that add those accounts to :meth:`env`'s: the secrets
        the file names and ``FEEDBACK_ACCOUNTS_FILE`` (absolute, so any working directory works)."""
        from ..accounts import ACCOUNTS_FILE_VAR

        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.sandbox.accounts_file(self.url), encoding="utf-8")
        return {**self.sandbox.accounts_env(), ACCOUNTS_FILE_VAR: str(target)}

    def reset(self, **overrides: object) -> "SandboxServer":
        """:meth:`Sandbox.reset`, returning the server (for fixtures)."""
        self.sandbox.reset(**overrides)
        return self

    def start(self) -> "SandboxServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("sandbox did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
