"""An app as it is deployed, for integration tests: gunicorn on its unix socket
(`dmr KIND serve`) and the gate in front of it (`dmr KIND gate`), both real processes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmr_appliance import config
from tests.support.processes import Process


def gate_settings(cls: type, state: Path, **overrides: Any) -> Any:
    """Gate settings keeping the socket, nginx prefix and error log under ``state``."""
    return cls(
        **{
            "socket": state / "gunicorn.sock",
            "prefix": state / "gate",
            "access_log": str(state / "gate-access.log"),
            "error_log": str(state / "gate-error.log"),
            **overrides,
        }
    )


def home_gate(state: Path, **overrides: Any) -> config.Gate:
    return gate_settings(config.Gate, state, **overrides)


def relay_gate(state: Path, **overrides: Any) -> config.RelayGate:
    return gate_settings(config.RelayGate, state, **overrides)


class App:
    """gunicorn and its gate for one ``kind`` (home or relay) and one config file.

    ``kill`` and ``logs`` are gunicorn's (the app); the gate is started once and stopped
    with the app, as systemd's BindsTo does.
    """

    def __init__(
        self,
        kind: str,
        config_path: Path,
        log_dir: Path,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        name = name or kind
        argv = [sys.executable, "-m", "dmr_appliance", kind]
        self.server = Process(
            [*argv, "serve", "--config", str(config_path)],
            env=env,
            log_path=log_dir / f"{name}.log",
        )
        self.gate = Process(
            [*argv, "gate", "--config", str(config_path)],
            env=env,
            log_path=log_dir / f"{name}-gate.log",
        )

    def start(self) -> App:
        self.server.start()
        if not self.gate.running():
            self.gate.start()
        return self

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> App:
        self.server.wait_ready(probe, timeout)
        return self

    def kill(self) -> None:
        self.server.kill()

    def stop(self, timeout: float = 15.0) -> str:
        logs = self.server.stop(timeout)
        self.gate.stop(timeout)
        return logs

    def logs(self) -> str:
        return self.server.logs() + self.gate.logs()
