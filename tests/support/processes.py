"""Run a real ``python -m gunicorn`` app for a test: start, wait ready, stop, read logs.

Generic on purpose (home, relay, anything served through ``serving.gunicorn_argv``):
the caller passes the argv and environment; readiness is an HTTP(S) GET answering 2xx.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (the usual small race is acceptable in tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Process:
    """A server process whose stdout+stderr go to ``log_path``."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 log_path: Path, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        # Own process group: stop() and kill() reach gunicorn's workers too.
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> Process:
        """Poll ``probe`` until it returns True; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if probe():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.logs()}")

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group (arbiter and workers) at once: a crash, not a shutdown."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> str:
        """Graceful stop (SIGTERM), SIGKILL after ``timeout``; returns the log."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.logs()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def http_ok(session: requests.Session, url: str) -> Callable[[], bool]:
    """A readiness probe: GET ``url`` answers 2xx."""
    return lambda: session.get(url, timeout=2).ok
