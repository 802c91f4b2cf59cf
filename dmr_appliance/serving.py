"""Run an app: gunicorn on a unix socket, and the gate (nginx) that is its only door.

The gate terminates TLS on the app's ``bind`` address, verifies every peer's certificate
against the deployment CA and CRL, and passes the peer's certificate to gunicorn; gunicorn
listens only on ``gate.socket`` (mode 0700 through its umask), which nothing but the gate,
running as the same user, can reach. This module is the one place that knows gunicorn's
and the gate's command lines (systemd units, the local stack and the tests use it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dmr_appliance import config, nginx, render

# gunicorn's settings file: JSON logs for gunicorn's own messages, plus per-app hooks.
GUNICORN_CONF = "python:dmr_appliance.gunicorn_conf"
# The socket and every file the app writes are the service user's alone.
UMASK = 0o077


@dataclass(frozen=True)
class AppService:
    """What gunicorn and the gate need to know to serve one of the two apps."""

    kind: str  # home or relay: also the config file's name
    app: str  # module:attribute
    conf: str  # gunicorn settings module (hooks)
    settings: type  # HomeConfig or RelayConfig


APP_SERVICES = {
    "home": AppService("home", "dmr_appliance.home.wsgi:app",
                       "python:dmr_appliance.home.gunicorn_conf", config.HomeConfig),
    "relay": AppService("relay", "dmr_appliance.relay.wsgi:app",
                        "python:dmr_appliance.relay.gunicorn_conf", config.RelayConfig),
}

AppConfig = config.HomeConfig | config.RelayConfig


def service_argv(service: AppService, settings: AppConfig) -> list[str]:
    """gunicorn serving ``service`` on its unix socket."""
    return gunicorn_argv(service.app, socket=settings.gate.socket, workers=settings.workers,
                         threads=settings.threads,
                         name=f"dmr-{service.kind}-{settings.instance}", conf_module=service.conf)


def gunicorn_argv(
    app: str,
    *,
    socket: Path,
    workers: int,
    threads: int,
    name: str,
    conf_module: str = GUNICORN_CONF,
) -> list[str]:
    """The full argv for ``python -m gunicorn`` serving ``app`` (``module:attr``)."""
    return [
        sys.executable, "-m", "gunicorn",
        "--config", conf_module,
        "--name", name,
        "--bind", f"unix:{socket}",
        "--umask", oct(UMASK),
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", str(threads),
        # gthread's timeout watches the worker, not the request: long polls are fine.
        "--timeout", "60",
        "--graceful-timeout", "30",
        # Longer than the gate's idle upstream connections live: the gate closes first.
        "--keep-alive", "75",
        app,
    ]


def exec_gunicorn(argv: list[str], *, config_path: Path | str | None) -> None:
    """Replace this process with gunicorn (systemd then supervises gunicorn itself)."""
    env = dict(os.environ)
    if config_path is not None:
        env["DMR_CONFIG"] = str(Path(config_path).resolve())
    os.execve(argv[0], argv, env)  # noqa: S606  (argv is built above, no shell)


def gate_conf(settings: AppConfig) -> Path:
    """Where the gate's rendered nginx.conf lives: in its prefix, made afresh at each start."""
    return settings.gate.prefix / "nginx.conf"


def prepare_gate(service: AppService, settings: AppConfig) -> Path:
    """Render the gate's nginx.conf and check it with ``nginx -t``."""
    conf = render.write_gate(service.kind, settings, gate_conf(settings))
    nginx.test_config(conf, settings.gate.prefix)
    return conf


def exec_gate(service: AppService, settings: AppConfig) -> None:
    """Render, check, then replace this process with the gate's nginx in the foreground."""
    _clear_stale(settings.gate.prefix)
    conf = prepare_gate(service, settings)
    argv = nginx.argv(conf, settings.gate.prefix, foreground=True)
    os.execv(argv[0], argv)  # noqa: S606  (fixed argv, no shell)


def reload_gate(service: AppService, settings: AppConfig) -> int:
    """Render and check the new config, then SIGHUP the running gate; returns its pid.

    A config nginx refuses raises before the signal: the running gate keeps serving.
    """
    prepare_gate(service, settings)
    return nginx.signal_pid_file(settings.gate.prefix / "nginx.pid", "reload")


def _clear_stale(prefix: Path) -> None:
    """Refuse to start a second gate on one prefix; remove what a killed one left.

    nginx unlinks its unix socket only when it exits cleanly: after a SIGKILL the file
    would make the next bind fail. Under systemd the prefix is a fresh RuntimeDirectory.
    """
    pid_file = prefix / "nginx.pid"
    try:
        pid = int(pid_file.read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        pass
    else:
        if state != "Z":  # a zombie is gone, only not yet reaped by its parent
            raise nginx.NginxError(f"a gate is already running on {prefix} (pid {pid})")
    for stale in (pid_file, prefix / "unavailable.sock"):
        stale.unlink(missing_ok=True)
