"""A server process for a test: ``dmr_appliance.local.processes.ProcessGroup`` (the one
supervisor) with the tests' defaults: readiness is a probe such as an HTTP(S) GET
answering 2xx, and ``stop`` returns the log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from dmr_appliance.local.processes import ProcessGroup, free_port

__all__ = ["Process", "free_port", "http_ok"]


class Process(ProcessGroup):
    """A server process whose stdout+stderr go to ``log_path``, in its own group (stop()
    and kill() reach gunicorn's workers too)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        super().__init__(log_path.stem, argv, log_path=log_path, env=env, cwd=cwd)

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> Process:
        """Poll ``probe`` until it returns True; fail with the log if the process dies."""
        super().wait_ready(probe, timeout, retry_on=(requests.RequestException,))
        return self

    def stop(self, timeout: float = 15.0) -> str:
        """Graceful stop (SIGTERM), SIGKILL after ``timeout``; returns the log."""
        super().stop(timeout)
        return self.logs()


def http_ok(session: requests.Session, url: str) -> Callable[[], bool]:
    """A readiness probe: GET ``url`` answers 2xx."""
    return lambda: session.get(url, timeout=2).ok
