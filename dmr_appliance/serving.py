"""Run an app: gunicorn on a unix socket, and the gate (nginx) that is its only door.

The gate terminates TLS on the app's ``bind`` address, verifies every peer's certificate
against the deployment CA and CRL, and passes the peer's certificate to gunicorn; gunicorn
listens only on ``gate.socket`` (mode 0700 through its umask), which nothing but the gate,
running as the same user, can reach. This module is the one place that knows gunicorn's
and the gate's command lines (systemd units, the local stack and the tests use it).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dmr_appliance import config, crl_reload, render
from dmr_appliance.errors import DmrError

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
    "home": AppService(
        "home",
        "dmr_appliance.home.wsgi:app",
        "python:dmr_appliance.home.gunicorn_conf",
        config.HomeConfig,
    ),
    "relay": AppService(
        "relay",
        "dmr_appliance.relay.wsgi:app",
        "python:dmr_appliance.relay.gunicorn_conf",
        config.RelayConfig,
    ),
}

AppConfig = config.HomeConfig | config.RelayConfig


def service_argv(service: AppService, settings: AppConfig) -> list[str]:
    """gunicorn serving ``service`` on its unix socket."""
    return gunicorn_argv(
        service.app,
        socket=settings.gate.socket,
        workers=settings.workers,
        threads=settings.threads,
        name=f"dmr-{service.kind}-{settings.instance}",
        conf_module=service.conf,
    )


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
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        conf_module,
        "--name",
        name,
        "--bind",
        f"unix:{socket}",
        "--umask",
        oct(UMASK),
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        # gthread's timeout watches the worker, not the request: long polls are fine.
        "--timeout",
        "60",
        "--graceful-timeout",
        "30",
        # Longer than the gate's idle upstream connections live: the gate closes first.
        "--keep-alive",
        "75",
        app,
    ]


def exec_gunicorn(
    argv: list[str], *, config_path: Path | str | None, env: dict[str, str] | None = None
) -> None:
    """Replace this process with gunicorn (systemd then supervises gunicorn itself);
    ``env`` adds to the environment."""
    env = {**os.environ, **(env or {})}
    if config_path is not None:
        env["DMR_CONFIG"] = str(Path(config_path).resolve())
    os.execve(argv[0], argv, env)  # noqa: S606  (argv is built above, no shell)


def gate_conf(settings: AppConfig) -> Path:
    """Where the gate's rendered nginx.conf lives: in its prefix, made afresh at each start."""
    return settings.gate.prefix / "nginx.conf"


def prepare_gate(service: AppService, settings: AppConfig) -> Path:
    """Render the gate's nginx.conf and check it with ``nginx -t``."""
    conf = render.write_gate(service.kind, settings, gate_conf(settings))
    test_config(conf, settings.gate.prefix)
    return conf


def exec_gate(service: AppService, settings: AppConfig) -> None:
    """Render, check, then replace this process with the gate's nginx in the foreground."""
    _clear_stale(settings.gate.prefix)
    conf = prepare_gate(service, settings)
    argv = nginx_argv(conf, settings.gate.prefix, foreground=True)
    os.execv(argv[0], argv)  # noqa: S606  (fixed argv, no shell)


def supervise_gate(
    service: AppService, settings: AppConfig, interval: float = crl_reload.INTERVAL
) -> int:
    """Like ``exec_gate``, but nginx runs as a child that is reloaded when the CRL's content
    changes (a container: nothing else would reload it); returns nginx's exit status."""
    _clear_stale(settings.gate.prefix)
    conf = prepare_gate(service, settings)
    return crl_reload.supervise(
        nginx_argv(conf, settings.gate.prefix, foreground=True), Path(settings.tls.crl), interval
    )


def reload_gate(service: AppService, settings: AppConfig) -> int:
    """Render and check the new config, then SIGHUP the running gate; returns its pid.

    A config nginx refuses raises before the signal: the running gate keeps serving.
    """
    prepare_gate(service, settings)
    return signal_pid_file(settings.gate.prefix / "nginx.pid", "reload")


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
            raise NginxError(f"a gate is already running on {prefix} (pid {pid})")
    for stale in (pid_file, prefix / "unavailable.sock"):
        stale.unlink(missing_ok=True)


# --- nginx's command line (the gates, the router; the local stack runs it too) -------

NGINX = "/usr/sbin/nginx"


class NginxError(DmrError):
    code = "nginx-error"
    status = 500
    title = "nginx failed"


def binary() -> str:
    """Debian's nginx, or the one on PATH; NginxError with the fix if there is none."""
    if os.access(NGINX, os.X_OK):
        return NGINX
    found = shutil.which("nginx")
    if found:
        return found
    raise NginxError(
        "nginx is not installed; install it with 'apt-get install nginx-light' "
        "(or nginx) and try again"
    )


def _globals() -> str:
    # As root without a `user` directive, workers would become "nobody", which cannot
    # reach a private (0700) state directory for temp files: keep root's identity then.
    # As an ordinary user, nginx simply runs as that user (the `user` directive is ignored).
    return "user root root;" if os.geteuid() == 0 else ""


def nginx_argv(conf: Path, prefix: Path, *extra: str, foreground: bool = False) -> list[str]:
    """nginx's command line for ``conf`` with its own prefix and errors on stderr."""
    directives = _globals() + (" daemon off;" if foreground else "")
    cmd = [binary(), "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]
    if directives.strip():
        cmd += ["-g", directives.strip()]
    return [*cmd, *extra]


def prepare_prefix(prefix: Path) -> None:
    """Create the prefix and its logs/ directory (nginx creates its temp paths itself)."""
    (Path(prefix) / "logs").mkdir(parents=True, exist_ok=True)


def test_config(conf: Path | str, prefix: Path | str | None = None) -> str:
    """``nginx -t`` on ``conf``; returns nginx's report, raises NginxError if it fails."""
    conf = Path(conf).resolve()
    prefix = Path(prefix).resolve() if prefix is not None else conf.parent
    prepare_prefix(prefix)
    result = subprocess.run(
        nginx_argv(conf, prefix, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise NginxError(f"nginx -t failed for {conf}:\n{result.stderr.strip()}")
    return result.stderr


SIGNALS = {"reload": signal.SIGHUP, "stop": signal.SIGQUIT, "reopen": signal.SIGUSR1}


def signal_pid_file(pid_file: Path | str, action: str) -> int:
    """Send ``action`` (reload, stop, reopen) to the master named in ``pid_file``."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        raise NginxError(f"no running nginx: {pid_file} names no process; start it first") from None
    try:
        os.kill(pid, SIGNALS[action])
    except ProcessLookupError:
        raise NginxError(f"no running nginx: pid {pid} from {pid_file} is gone") from None
    return pid


# --- gunicorn itself, over its socket (probes, tests) ---------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path | str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def unix_get(sock: Path | str, path: str, timeout: float = 10.0) -> tuple[int, str]:
    """GET ``path`` from gunicorn itself on its socket, bypassing the gate, on a new
    connection each time (so the kernel hands it to any worker); OSError if unreachable."""
    conn = _UnixConnection(sock, timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
