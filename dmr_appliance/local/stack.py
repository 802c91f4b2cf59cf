"""The local stack behind ``dmr up`` and ``dmr demo``: home, N relays, the router, a recipient.

Everything lives in one state directory (default ``./.dmr``)::

    pki/                 the deployment CA and every certificate (dmr pki layout)
    config/              home.toml, relay-N.toml, router.toml, nginx.conf
    home/ relay-N/       each app's state (SQLite, keys, last sync document), its gunicorn
                         socket and gate/ (the nginx in front of it: TLS, CRL, identity)
    router/              nginx's prefix: pid file, temp files
    recipient/           deliveries.jsonl: what the demo recipient received
    logs/<name>.log      each process's stdout (JSON lines), stderr too
    env.sh               DMR_HOME_URL, DMR_CLIENT_CERT, ... for the admin CLI
    stack.json           the running processes (to clean up after a crash)

Each service is a child process in its own process group (gunicorn's workers and nginx's
with it), started in dependency order and waited for: home and its gate (``/readyz``
through the gate), the router (its pid file), the relays and their gates (``/readyz``:
they hold a sync document fetched from home through the router), the recipient. ``stop``
ends every group, in reverse order, and checks that none is left. The PKI is kept
between runs; ports are chosen afresh. While the stack runs, a new ``pki/crl.pem``
(``dmr pki revoke``) is noticed within half a second and the router and every gate
reload it, as the CRL path unit does on a VM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from dmr_appliance import config, crl_reload, pki, render
from dmr_appliance.errors import DmrError
from dmr_appliance.local.processes import HOST, NginxProcess, ProcessGroup, free_port
from dmr_appliance.wire import mtls
from dmr_appliance.wire.home import HomeClient

LOCAL_SANS: dict[str, Any] = {"dns": ("localhost",), "ips": ("127.0.0.1",)}
PARTICIPANTS = ("alice", "bob")
ADMIN = "admin"
RECIPIENT = "recipient"
# Debian's Prometheus nginx exporter (prometheus-nginx-exporter): started when installed.
EXPORTER = shutil.which("prometheus-nginx-exporter")


class StackError(DmrError):
    code = "stack-error"
    status = 500
    title = "Local stack failed"


class Stack:
    """``with Stack(state_dir, relays=2, port=0) as stack: ...`` (port 0: any free port)."""

    def __init__(self, state_dir: Path | str = ".dmr", relays: int = 2, port: int = 0, *,
                 python: str = sys.executable, log: Callable[[str], None] | None = None) -> None:
        if relays < 1:
            raise StackError("the stack needs at least one relay (--relays 1 or more)")
        self.state_dir = Path(state_dir).resolve()
        self.relay_count = relays
        self.requested_port = port
        self.python = python
        self.log = log or (lambda message: None)
        self.services: dict[str, ProcessGroup] = {}
        self.router: NginxProcess | None = None
        self._crl_watch: crl_reload.Watcher | None = None
        self._router_log: Any = None
        self.ports: dict[str, int] = {}

    # --- paths and addresses --------------------------------------------------------------

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def ca(self) -> Path:
        return pki.paths(self.pki_dir).ca

    def cert(self, kind: str, name: str) -> tuple[Path, Path]:
        """(certificate, key) of ``kind``/``name`` in the stack's PKI."""
        p = pki.paths(self.pki_dir)
        return p.cert(kind, name), p.key(kind, name)

    @property
    def relay_names(self) -> list[str]:
        return [f"relay-{i}" for i in range(1, self.relay_count + 1)]

    @property
    def router_url(self) -> str:
        return f"https://{HOST}:{self.ports['router']}"

    @property
    def home_url(self) -> str:
        """Home's API base through the router (what HomeClient and the CLI take)."""
        return f"{self.router_url}/v1/home"

    @property
    def status_url(self) -> str:
        return f"{self.router_url}/home/"

    @property
    def messages_url(self) -> str:
        return f"{self.router_url}/v1/messages"

    @property
    def recipient_log(self) -> Path:
        return self.state_dir / "recipient" / "deliveries.jsonl"

    def endpoint(self, participant: str) -> str:
        """The demo recipient's URL for ``participant`` (what its address card names)."""
        return f"https://localhost:{self.ports['recipient']}/inbox/{participant}"

    def relay_url(self, name: str) -> str:
        return f"https://{HOST}:{self.ports[name]}"

    def admin_client(self) -> HomeClient:
        cert, key = self.cert("admin", ADMIN)
        return HomeClient(self.home_url, cert=cert, key=key, ca=self.ca,
                          session=mtls.session(self.ca, cert, key))

    def session(self, kind: str = "admin", name: str = ADMIN) -> requests.Session:
        """A requests session with ``kind``/``name``'s certificate, trusting only the CA."""
        return mtls.session(self.ca, *self.cert(kind, name))

    # --- set-up ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """PKI (kept between runs), ports, config files. Safe to call again."""
        for sub in ("config", "logs", "home", "router", "recipient", *self.relay_names):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # keys and the admin's certificate live here
        self._make_pki()
        self._choose_ports()
        self._write_configs()

    def _make_pki(self) -> None:
        if pki.init_ca(self.pki_dir, common_name="dmr local stack CA"):
            self.log(f"created a deployment CA in {self.pki_dir}")
        wanted: list[tuple[str, str, dict[str, Any]]] = [
            ("router", "router", LOCAL_SANS), ("server", "home", LOCAL_SANS),
            ("server", RECIPIENT, LOCAL_SANS), ("admin", ADMIN, {}),
            *(("relay", name, LOCAL_SANS) for name in self.relay_names),
            *(("participant", name, {}) for name in PARTICIPANTS),
        ]
        for kind, name, sans in wanted:
            cert, key = self.cert(kind, name)
            if not (cert.exists() and key.exists()):
                pki.issue(self.pki_dir, kind, name, **sans, force=cert.exists() or key.exists())

    def _choose_ports(self) -> None:
        names = ["home", "recipient", "stub_status", "exporter", *self.relay_names]
        self.ports = {name: free_port() for name in names}
        self.ports["router"] = self.requested_port or free_port()
        if len(set(self.ports.values())) != len(self.ports):
            self._choose_ports()  # two picks collided: pick again

    def _tls(self, cls: type, kind: str, name: str) -> Any:
        cert, key = self.cert(kind, name)
        return cls(ca=self.ca, cert=cert, key=key, crl=pki.paths(self.pki_dir).crl)

    def _gate(self, cls: type, name: str) -> Any:
        state = self.state_dir / name
        return cls(socket=state / "gunicorn.sock", prefix=state / "gate", access_log="stdout",
                   error_log=str(self.logs_dir / f"{name}-gate-error.log"))

    def home_config(self) -> config.HomeConfig:
        return dataclasses.replace(
            config.HomeConfig(),
            bind=f"{HOST}:{self.ports['home']}", workers=1, threads=32,
            database=self.state_dir / "home" / "home.db", keys_dir=self.state_dir / "home" / "keys",
            tls=self._tls(config.Tls, "server", "home"), gate=self._gate(config.Gate, "home"),
        )

    def relay_config(self, name: str) -> config.RelayConfig:
        return dataclasses.replace(
            config.RelayConfig(),
            instance=name, bind=f"{HOST}:{self.ports[name]}", workers=1, threads=16,
            home_url=self.home_url, state_dir=self.state_dir / name,
            tls=self._tls(config.RelayTls, "relay", name),
            gate=self._gate(config.RelayGate, name),
        )

    def router_config(self) -> config.RouterConfig:
        prefix = self.state_dir / "router"
        return dataclasses.replace(
            config.RouterConfig(),
            listen=self.ports["router"], listen_address=HOST,
            relays=[f"{HOST}:{self.ports[name]}" for name in self.relay_names],
            home=f"{HOST}:{self.ports['home']}", prefix=prefix, pid_file=prefix / "nginx.pid",
            access_log="stdout", error_log=str(self.logs_dir / "router-error.log"),
            worker_processes="1", log_level="warning",
            stub_status_bind=f"{HOST}:{self.ports['stub_status']}",
            tls=self._tls(config.RouterTls, "router", "router"),
        )

    def _write_configs(self) -> None:
        (self.config_dir / "home.toml").write_text(config.to_toml(self.home_config()))
        for name in self.relay_names:
            (self.config_dir / f"{name}.toml").write_text(config.to_toml(self.relay_config(name)))
        router = self.router_config()
        (self.config_dir / "router.toml").write_text(config.to_toml(router))
        render.write(router, self.config_dir / "nginx.conf")
        cert, key = self.cert("admin", ADMIN)
        (self.state_dir / "env.sh").write_text(
            "# Point the dmr CLI at this local stack:  . " + str(self.state_dir / "env.sh") + "\n"
            f"export DMR_HOME_URL={self.home_url}\n"
            f"export DMR_CLIENT_CERT={cert}\nexport DMR_CLIENT_KEY={key}\nexport DMR_CA={self.ca}\n"
        )

    # --- running --------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Stack:
        """Start every service and wait until each is ready; on failure stop what started.

        An ``OSError`` (a state directory it cannot write, a command it cannot run) is
        raised as a ``StackError``, which the CLI prints as one line.
        """
        try:
            self._reap_leftovers()
            self.prepare()
            self._start_services(timeout)
            self._save_pids()
        except OSError as exc:
            raise StackError(f"could not start the stack: {exc}") from exc
        return self

    def _start_services(self, timeout: float) -> None:
        try:
            self._start_home(timeout)
            self._start_router()
            for name in self.relay_names:
                self.start_relay(name, wait=False)
            for name in self.relay_names:
                self.wait_relay(name, timeout)
            self._start_recipient(timeout)
            self._start_exporter(timeout)
            self._crl_watch = crl_reload.Watcher(pki.paths(self.pki_dir).crl, self.reload_crl)
        except BaseException:
            self.stop()
            raise

    def _dmr(self, *args: str) -> list[str]:
        return [self.python, "-m", "dmr_appliance", *args]

    def _service(self, name: str, argv: list[str], stop_signal: int) -> ProcessGroup:
        service = ProcessGroup(name, argv, log_path=self.logs_dir / f"{name}.log",
                               stop_signal=stop_signal)
        self.services[name] = service
        service.start()
        return service

    def _start_app(self, kind: str, name: str) -> ProcessGroup:
        """gunicorn on its unix socket, and the gate in front of it (once: it outlives a
        crash of gunicorn, answering 503 meanwhile so that the router tries elsewhere)."""
        conf = str(self.config_dir / f"{name}.toml")
        # gunicorn: SIGINT is its quick shutdown (SIGTERM would wait for long polls).
        service = self._service(name, self._dmr(kind, "serve", "--config", conf), signal.SIGINT)
        gate = f"{name}-gate"
        if gate not in self.services or not self.services[gate].running():
            self._service(gate, self._dmr(kind, "gate", "--config", conf), signal.SIGTERM)
        return service

    def gates(self) -> list[ProcessGroup]:
        return [s for name, s in self.services.items() if name.endswith("-gate")]

    def _start_home(self, timeout: float) -> None:
        self.log(f"starting home on {HOST}:{self.ports['home']} (behind its gate)")
        service = self._start_app("home", "home")
        url = f"https://{HOST}:{self.ports['home']}/readyz"
        with self.session() as session:
            self._wait([service, self.services["home-gate"]],
                       lambda: session.get(url, timeout=2).ok, timeout)

    def _start_router(self) -> None:
        self.log(f"starting the router (nginx) on {self.router_url}")
        cfg = self.router_config()
        self._router_log = (self.logs_dir / "router.log").open("ab")
        self.router = NginxProcess(self.config_dir / "nginx.conf", prefix=cfg.prefix,
                                   pid_file=cfg.pid_file, output=self._router_log, name="router")
        self.router.start()

    def start_relay(self, name: str, *, wait: bool = True, timeout: float = 60.0) -> None:
        """(Re)start relay ``name``; with ``wait``, until it is ready."""
        self.log(f"starting {name} on {HOST}:{self.ports[name]} (behind its gate)")
        self._start_app("relay", name)
        if wait:
            self.wait_relay(name, timeout)

    def wait_relay(self, name: str, timeout: float = 60.0) -> None:
        url = self.relay_url(name) + "/readyz"
        with self.session() as session:
            self._wait([self.services[name], self.services[f"{name}-gate"]],
                       lambda: session.get(url, timeout=2).ok, timeout)

    def kill_relay(self, name: str) -> None:
        """SIGKILL a relay's gunicorn (master and workers): the crash the router must fail
        over. Its gate stays and answers 503 (nothing attempted) until it is back."""
        self.services[name].kill()

    def reload_crl(self) -> None:
        """Make the router and every gate re-read the CRL (nginx reads it at each reload)."""
        if self.router is not None and self.router.running():
            self.router.reload()
        for gate in self.gates():
            if gate.running() and gate.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(gate.pid, signal.SIGHUP)  # the master only: it renews its workers
        self.log("CRL changed: router and gates reloaded")

    def stop_service(self, name: str) -> None:
        """Stop one service (home, relay-N, recipient); ``start_service`` restarts it."""
        self.services[name].stop()

    def start_service(self, name: str, timeout: float = 60.0) -> None:
        """(Re)start one service on its port and wait until it is ready."""
        if name == "home":
            self._start_home(timeout)
        elif name == RECIPIENT:
            self._start_recipient(timeout)
        else:
            self.start_relay(name, timeout=timeout)

    def _start_recipient(self, timeout: float) -> None:
        port = self.ports["recipient"]
        self.log(f"starting the demo recipient on {HOST}:{port}")
        cert, key = self.cert("server", RECIPIENT)
        service = self._service("recipient", self._dmr(
            "recipient", "--bind", f"{HOST}:{port}", "--cert", str(cert), "--key", str(key),
            "--ca", str(self.ca), "--log", str(self.recipient_log),
            "--seen", str(self.state_dir / "recipient" / "seen.sqlite")), signal.SIGTERM)
        self._wait(service, lambda: _accepts(HOST, port), timeout)

    @property
    def exporter_url(self) -> str | None:
        """The router's figures for Prometheus, when Debian's nginx exporter is installed."""
        return f"http://{HOST}:{self.ports['exporter']}/metrics" if EXPORTER else None

    def _start_exporter(self, timeout: float) -> None:
        if not EXPORTER:
            return
        port = self.ports["exporter"]
        self.log(f"starting the router's Prometheus exporter on {HOST}:{port}")
        # The query (ignored by nginx) names the state dir in the exporter's command line,
        # which is how a later start knows a leftover exporter as this stack's.
        scrape = f"http://{HOST}:{self.ports['stub_status']}/stub_status?stack={self.state_dir}"
        service = self._service("nginx-exporter", [
            EXPORTER, "-nginx.scrape-uri", scrape, "-web.listen-address", f"{HOST}:{port}"],
            signal.SIGTERM)
        self._wait(service, lambda: _accepts(HOST, port), timeout)

    def _wait(self, service: ProcessGroup | list[ProcessGroup], ready: Callable[[], bool],
              timeout: float) -> None:
        """Until ``ready()``; a StackError with its log if one of ``service`` exits first."""
        services = service if isinstance(service, list) else [service]

        def all_up() -> bool:
            for each in services[1:]:
                each.wait_ready(lambda: True, timeout)  # raises at once if it has exited
            return ready()

        try:
            services[0].wait_ready(all_up, timeout, retry_on=(requests.RequestException, OSError))
        except (RuntimeError, TimeoutError) as exc:
            raise StackError(str(exc)) from None

    def dead(self) -> list[str]:
        """Names of services that should run but have exited."""
        found = [name for name, s in self.services.items() if s.process and not s.running()]
        if self.router is not None and not self.router.running():
            found.append("router")
        return found

    def stop(self) -> None:
        """Stop everything, newest first; afterwards no process of the stack is left."""
        if self._crl_watch is not None:
            self._crl_watch.stop()
            self._crl_watch = None
        relays = [n for r in reversed(self.relay_names) for n in (r, f"{r}-gate")]
        for name in ("nginx-exporter", "recipient", *relays):
            if name in self.services:
                self.services[name].stop()
        if self.router is not None:
            self.router.stop(graceful=False)
        if self._router_log is not None:
            self._router_log.close()
            self._router_log = None
        for name in ("home", "home-gate"):
            if name in self.services:
                self.services[name].stop()
        with contextlib.suppress(OSError):  # none written (or no state dir): nothing to do
            (self.state_dir / "stack.json").unlink()

    def process_groups(self) -> list[int]:
        """Process group ids of every service started (for checks that none is left)."""
        groups = [s.pid for s in self.services.values() if s.pid]
        if self.router is not None and self.router.pid:
            groups.append(self.router.pid)
        return [g for g in groups if g]

    def _save_pids(self) -> None:
        pids = {name: s.pid for name, s in self.services.items()}
        pids["router"] = self.router.pid if self.router else None
        (self.state_dir / "stack.json").write_text(json.dumps(pids) + "\n")

    def _reap_leftovers(self) -> None:
        """End process groups a previous run in this state dir left (it was SIGKILLed)."""
        record = self.state_dir / "stack.json"
        try:
            pids = json.loads(record.read_text())
        except (FileNotFoundError, ValueError):
            return
        for name, pid in pids.items():
            if not pid:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if str(self.state_dir).encode() in cmdline:  # still ours, not a reused pid
                self.log(f"stopping {name} (pid {pid}) left by an earlier run")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        record.unlink()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True
