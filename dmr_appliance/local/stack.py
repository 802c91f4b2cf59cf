"""The local stack behind ``dmr up`` and ``dmr demo``: home, N relays, the router, a recipient.

Everything lives in one state directory (default ``./.dmr``)::

    pki/                 the deployment CA and every certificate (dmr pki layout)
    config/              home.toml, relay-N.toml, router.toml, nginx.conf
    home/ relay-N/       each app's state (SQLite, keys, last sync document), its gunicorn
                         socket and gate/ (the nginx in front of it: TLS, CRL, identity)
    home-N/              with --home-instances N --store postgresql, each further home
                         instance; all share a PostgreSQL (/tmp/dmr-pg-<hash of the state
                         dir>, kept between runs) and home/kek, the key-encryption key
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
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from dmr_appliance import crl_reload, pki
from dmr_appliance.home import sealing
from dmr_appliance.local.layout import RECIPIENT, Layout, StackError
from dmr_appliance.local.postgres import LocalPostgres, PostgresMissing
from dmr_appliance.local.processes import HOST, NginxProcess, ProcessGroup

# Debian's Prometheus nginx exporter (prometheus-nginx-exporter): started when installed.
EXPORTER = shutil.which("prometheus-nginx-exporter")


class Stack(Layout):
    """``with Stack(state_dir, relays=2, port=0) as stack: ...`` (port 0: any free port)."""

    def __init__(
        self,
        state_dir: Path | str = ".dmr",
        relays: int = 2,
        port: int = 0,
        *,
        python: str = sys.executable,
        homes: int = 1,
        store: str = "sqlite",
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(state_dir, relays, port, homes=homes, log=log)
        if homes > 1 and store != "postgresql":
            raise StackError("several home instances need a shared store: --store postgresql")
        self.store = store
        self.postgres: LocalPostgres | None = None
        self.python = python
        self.services: dict[str, ProcessGroup] = {}
        self.router: NginxProcess | None = None
        self._crl_watch: crl_reload.Watcher | None = None
        self._router_log: Any = None

    # --- running --------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Stack:
        """Start every service and wait until each is ready; on failure stop what started.

        An ``OSError`` (a state directory it cannot write, a command it cannot run) is
        raised as a ``StackError``, which the CLI prints as one line.
        """
        try:
            self._reap_leftovers()
            self._start_store()
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
        service = ProcessGroup(
            name, argv, log_path=self.logs_dir / f"{name}.log", stop_signal=stop_signal
        )
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

    def _start_store(self) -> None:
        """On PostgreSQL: its server (kept between runs under /tmp, named after the state
        directory), the database and the key-encryption key every home instance shares."""
        if self.store != "postgresql":
            return
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        base = Path(tempfile.gettempdir()) / f"dmr-pg-{digest}"
        self.log(f"starting PostgreSQL in {base} (unix socket only)")
        try:
            self.postgres = LocalPostgres(base).start()
        except PostgresMissing as exc:
            raise StackError(str(exc)) from None
        self.store_url = self.postgres.database("dmr-home")
        kek = self.state_dir / "home" / "kek"
        kek.parent.mkdir(parents=True, exist_ok=True)
        if not kek.exists():
            sealing.new_key_file(kek)

    def _start_home(self, timeout: float) -> None:
        for name in self.home_names:
            self.start_home(name, timeout)

    def start_home(self, name: str = "home", timeout: float = 60.0) -> None:
        """(Re)start home instance ``name`` and wait until it is ready."""
        self.log(f"starting {name} on {HOST}:{self.ports[name]} (behind its gate)")
        service = self._start_app("home", name)
        url = f"https://{HOST}:{self.ports[name]}/readyz"
        with self.session() as session:
            self._wait(
                [service, self.services[f"{name}-gate"]],
                lambda: session.get(url, timeout=2).ok,
                timeout,
            )

    def _start_router(self) -> None:
        self.log(f"starting the router (nginx) on {self.router_url}")
        cfg = self.router_config()
        self._router_log = (self.logs_dir / "router.log").open("ab")
        self.router = NginxProcess(
            self.config_dir / "nginx.conf",
            prefix=cfg.prefix,
            pid_file=cfg.pid_file,
            output=self._router_log,
            name="router",
        )
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
            self._wait(
                [self.services[name], self.services[f"{name}-gate"]],
                lambda: session.get(url, timeout=2).ok,
                timeout,
            )

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
        if name in self.home_names:
            self.start_home(name, timeout)
        elif name == RECIPIENT:
            self._start_recipient(timeout)
        else:
            self.start_relay(name, timeout=timeout)

    def _start_recipient(self, timeout: float) -> None:
        port = self.ports["recipient"]
        self.log(f"starting the demo recipient on {HOST}:{port}")
        cert, key = self.cert("server", RECIPIENT)
        service = self._service(
            "recipient",
            self._dmr(
                "recipient",
                "--bind",
                f"{HOST}:{port}",
                "--cert",
                str(cert),
                "--key",
                str(key),
                "--ca",
                str(self.ca),
                # Signed deliveries are verified (a revoked sender's refused) and answered
                # with receipts; unsigned ones are still taken, as other tests send them.
                "--crl",
                str(pki.paths(self.pki_dir).crl),
                "--log",
                str(self.recipient_log),
                "--seen",
                str(self.state_dir / "recipient" / "seen.sqlite"),
            ),
            signal.SIGTERM,
        )
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
        service = self._service(
            "nginx-exporter",
            [EXPORTER, "-nginx.scrape-uri", scrape, "-web.listen-address", f"{HOST}:{port}"],
            signal.SIGTERM,
        )
        self._wait(service, lambda: _accepts(HOST, port), timeout)

    def _wait(
        self, service: ProcessGroup | list[ProcessGroup], ready: Callable[[], bool], timeout: float
    ) -> None:
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
        for name in (n for home in reversed(self.home_names) for n in (home, f"{home}-gate")):
            if name in self.services:
                self.services[name].stop()
        if self.postgres is not None:
            self.postgres.stop(remove=False)  # kept for the next run, as SQLite's file is
            self.postgres = None
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
