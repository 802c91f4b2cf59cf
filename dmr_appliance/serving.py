"""Run a Falcon app under gunicorn: the one place that knows gunicorn's command line.

Both services listen on TLS and require a client certificate from the deployment CA at
the handshake (only the router, holding one, can connect), which is what makes
trusting its client-certificate header safe even on a shared host.
"""

from __future__ import annotations

import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

from dmr_appliance import config
from dmr_appliance.config import Tls

# gunicorn's settings file: JSON logs for gunicorn's own messages, plus per-app hooks.
GUNICORN_CONF = "python:dmr_appliance.gunicorn_conf"


@dataclass(frozen=True)
class Service:
    """What gunicorn needs to know to serve one of the two apps."""

    kind: str  # home or relay: also the config file's name
    app: str  # module:attribute
    conf: str  # gunicorn settings module (hooks)
    settings: type  # HomeConfig or RelayConfig


SERVICES = {
    "home": Service("home", "dmr_appliance.home.wsgi:app",
                    "python:dmr_appliance.home.gunicorn_conf", config.HomeConfig),
    "relay": Service("relay", "dmr_appliance.relay.wsgi:app",
                     "python:dmr_appliance.relay.gunicorn_conf", config.RelayConfig),
}


def service_argv(service: Service, settings: config.HomeConfig | config.RelayConfig) -> list[str]:
    return gunicorn_argv(service.app, bind=settings.bind, workers=settings.workers,
                         threads=settings.threads, tls=settings.tls,
                         name=f"dmr-{service.kind}-{settings.instance}", conf_module=service.conf)


def gunicorn_argv(
    app: str,
    *,
    bind: str,
    workers: int,
    threads: int,
    tls: Tls,
    name: str,
    conf_module: str = GUNICORN_CONF,
) -> list[str]:
    """The full argv for ``python -m gunicorn`` serving ``app`` (``module:attr``)."""
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", conf_module,
        "--name", name,
        "--bind", bind,
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", str(threads),
        # gthread's timeout watches the worker, not the request: long polls are fine.
        "--timeout", "60",
        "--graceful-timeout", "30",
        "--keep-alive", "75",
        "--certfile", str(tls.cert),
        "--keyfile", str(tls.key),
        "--ca-certs", str(tls.ca),
        "--cert-reqs", str(int(ssl.CERT_REQUIRED)),
    ]
    return [*argv, app]


def exec_gunicorn(argv: list[str], *, config_path: Path | str | None) -> None:
    """Replace this process with gunicorn (systemd then supervises gunicorn itself)."""
    env = dict(os.environ)
    if config_path is not None:
        env["DMR_CONFIG"] = str(Path(config_path).resolve())
    os.execve(argv[0], argv, env)  # noqa: S606  (argv is built above, no shell)
