"""Where a local stack lives and how it is configured: the state directory's layout, its
PKI, ports and addresses, and the config files of home, relays and router (``Stack``
runs them). Everything is derived from the state directory and the chosen ports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from dmr_appliance import config, pki, render
from dmr_appliance.errors import DmrError
from dmr_appliance.local.processes import HOST, free_port
from dmr_appliance.wire import mtls
from dmr_appliance.wire.home import HomeClient

LOCAL_SANS: dict[str, Any] = {"dns": ("localhost",), "ips": ("127.0.0.1",)}
PARTICIPANTS = ("alice", "bob")
ADMIN = "admin"
RECIPIENT = "recipient"


class StackError(DmrError):
    code = "stack-error"
    status = 500
    title = "Local stack failed"


class Layout:
    """The stack's files and addresses; ``prepare()`` makes them."""

    def __init__(
        self,
        state_dir: Path | str,
        relays: int,
        port: int,
        *,
        homes: int = 1,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if relays < 1:
            raise StackError("the stack needs at least one relay (--relays 1 or more)")
        self.state_dir = Path(state_dir).resolve()
        self.relay_count = relays
        self.home_count = homes
        self.store_url = ""  # "": SQLite in home/; else the PostgreSQL every home shares
        self.requested_port = port
        self.log = log or (lambda message: None)
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
    def home_names(self) -> list[str]:
        """home, then home-2, home-3, ... (several only on PostgreSQL: --store)."""
        return ["home", *(f"home-{n}" for n in range(2, self.home_count + 1))]

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
        return HomeClient(
            self.home_url, cert=cert, key=key, ca=self.ca, session=mtls.session(self.ca, cert, key)
        )

    def session(self, kind: str = "admin", name: str = ADMIN) -> requests.Session:
        """A requests session with ``kind``/``name``'s certificate, trusting only the CA."""
        return mtls.session(self.ca, *self.cert(kind, name))

    # --- set-up ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """PKI (kept between runs), ports, config files. Safe to call again."""
        for sub in ("config", "logs", *self.home_names, "router", "recipient", *self.relay_names):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # keys and the admin's certificate live here
        self._make_pki()
        self._choose_ports()
        self._write_configs()

    def _make_pki(self) -> None:
        if pki.init_ca(self.pki_dir, common_name="dmr local stack CA"):
            self.log(f"created a deployment CA in {self.pki_dir}")
        wanted: list[tuple[str, str, dict[str, Any]]] = [
            ("router", "router", LOCAL_SANS),
            ("server", "home", LOCAL_SANS),
            ("server", RECIPIENT, LOCAL_SANS),
            ("admin", ADMIN, {}),
            *(("relay", name, LOCAL_SANS) for name in self.relay_names),
            *(("participant", name, {}) for name in PARTICIPANTS),
        ]
        for kind, name, sans in wanted:
            cert, key = self.cert(kind, name)
            if not (cert.exists() and key.exists()):
                pki.issue(self.pki_dir, kind, name, **sans, force=cert.exists() or key.exists())

    def _choose_ports(self) -> None:
        names = [*self.home_names, "recipient", "stub_status", "exporter", *self.relay_names]
        self.ports = {name: free_port() for name in names}
        self.ports["router"] = self.requested_port or free_port()
        if len(set(self.ports.values())) != len(self.ports):
            self._choose_ports()  # two picks collided: pick again

    def _tls(self, cls: type, kind: str, name: str) -> Any:
        cert, key = self.cert(kind, name)
        return cls(ca=self.ca, cert=cert, key=key, crl=pki.paths(self.pki_dir).crl)

    def _gate(self, cls: type, name: str) -> Any:
        state = self.state_dir / name
        return cls(
            socket=state / "gunicorn.sock",
            prefix=state / "gate",
            access_log="stdout",
            error_log=str(self.logs_dir / f"{name}-gate-error.log"),
        )

    def home_config(self, name: str = "home") -> config.HomeConfig:
        """Home instance ``name``: all of them present the one home certificate and, on
        PostgreSQL, share the database and the key-encryption key ``home/kek``."""
        store = config.HomeStore()
        if self.store_url:
            store = config.HomeStore(self.store_url, key_file=str(self.state_dir / "home" / "kek"))
        return dataclasses.replace(
            config.HomeConfig(),
            instance=name,
            bind=f"{HOST}:{self.ports[name]}",
            workers=1,
            threads=32,
            database=self.state_dir / name / "home.db",
            keys_dir=self.state_dir / name / "keys",
            tls=self._tls(config.Tls, "server", "home"),
            gate=self._gate(config.Gate, name),
            store=store,
        )

    def relay_config(self, name: str) -> config.RelayConfig:
        return dataclasses.replace(
            config.RelayConfig(),
            instance=name,
            bind=f"{HOST}:{self.ports[name]}",
            workers=1,
            threads=16,
            home_url=self.home_url,
            state_dir=self.state_dir / name,
            tls=self._tls(config.RelayTls, "relay", name),
            gate=self._gate(config.RelayGate, name),
        )

    def router_config(self) -> config.RouterConfig:
        prefix = self.state_dir / "router"
        return dataclasses.replace(
            config.RouterConfig(),
            listen=self.ports["router"],
            listen_address=HOST,
            relays=[f"{HOST}:{self.ports[name]}" for name in self.relay_names],
            home=[f"{HOST}:{self.ports[name]}" for name in self.home_names],
            prefix=prefix,
            pid_file=prefix / "nginx.pid",
            access_log="stdout",
            error_log=str(self.logs_dir / "router-error.log"),
            worker_processes="1",
            log_level="warning",
            stub_status_bind=f"{HOST}:{self.ports['stub_status']}",
            tls=self._tls(config.RouterTls, "router", "router"),
        )

    def _write_configs(self) -> None:
        for name in self.home_names:
            (self.config_dir / f"{name}.toml").write_text(config.to_toml(self.home_config(name)))
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
