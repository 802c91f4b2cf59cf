"""Typed configuration for home, relay and router: TOML files plus ``DMR_*`` overrides.

Pure. Each setting is a dataclass field with its one default; a nested dataclass is a TOML
table. ``DMR_<KEY>`` overrides a top-level key and ``DMR_<TABLE>_<KEY>`` a key of a table
(lists in the environment are comma-separated). Errors name the source, key and rule.
This module is the schema; ``config_files`` reads and writes the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dmr_appliance.config_checks import (
    bind_address,
    certificate_names,
    https_url,
    https_urls,
    instance_name,
    level_name,
    networks,
    optional_bind,
    port,
    positive,
    request_rate,
    socket_path,
    upstreams,
)

# Reading and writing the files (config_files.py), under the names callers know:
# config.load(config.RelayConfig, path).
from dmr_appliance.config_files import (  # noqa: F401
    defaults_toml,
    describe,
    load,
    load_layers,
    to_toml,
)
from dmr_appliance.envelope import DEFAULT_MAX_MESSAGE_BYTES

ETC = Path("/etc/dmr-appliance")
PKI = ETC / "pki"

T = TypeVar("T")
Check = Callable[[Any], str | None]  # returns what is wrong, or None


def setting(
    default: Any, check: Check | None = None, help: str = "", *, one_or_list: bool = False
) -> Any:
    """A dataclass field with a validation rule and a one-line description. A list field
    with ``one_or_list`` also takes one string as a list of one (a key that was a string)."""
    meta = {"check": check, "help": help, "one_or_list": one_or_list}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


LOOPBACK = ["127.0.0.1/32", "::1/128"]


# --- schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path = setting(PKI / "ca.pem", help="deployment CA certificate")
    cert: Path = setting(PKI / "server" / "home.pem", help="this service's certificate")
    key: Path = setting(PKI / "server" / "home.key", help="its private key (0600)")
    crl: Path = setting(PKI / "crl.pem", help="certificate revocation list")


@dataclass(frozen=True)
class Tokens:
    access_ttl: int = setting(900, positive, "lifetime of an access token, seconds")
    access_max_ttl: int = setting(3600, positive, "longest lifetime an admin may ask for")
    card_ttl: int = setting(86400, positive, "lifetime of an address card, seconds")
    leeway: int = setting(
        30,
        lambda v: None if 0 <= v <= 300 else "must be 0-300",
        "clock skew tolerated on exp/nbf, seconds",
    )


@dataclass(frozen=True)
class HomeSync:
    max_wait: int = setting(
        30,
        lambda v: None if 1 <= v <= 60 else "must be 1-60",
        "longest long poll on GET /v1/sync, seconds",
    )
    # Each waiting poll holds a gunicorn thread: capped so other calls always find one.
    max_polls: int = setting(
        48,
        positive,
        "long polls one worker holds at once (beyond: 503), never more than 3/4 of its threads",
    )
    max_polls_per_caller: int = setting(
        32, positive, "long polls one certificate holds at once in one worker (beyond: 429)"
    )


@dataclass(frozen=True)
class Heartbeats:
    stale_after: int = setting(15, positive, "an instance is stale after this many seconds")
    down_after: int = setting(60, positive, "and down after this many")
    forget_after: int = setting(
        86400,
        positive,
        "and forgotten after this many (more than "
        "down_after): no longer listed, counted or alerted on; a relay "
        "that crashed alerts until then, one that stopped cleanly "
        "is listed as left and never alerts",
    )
    max_per_certificate: int = setting(
        32,
        positive,
        "instance names one relay certificate beats as (its CN and CN.<member>, e.g. pods)",
    )


@dataclass(frozen=True)
class BodyLimits:
    max_message_bytes: int = setting(
        DEFAULT_MAX_MESSAGE_BYTES, positive, "largest message body, bytes"
    )
    max_request_bytes: int = setting(
        262_144, positive, "largest JSON body of a home API request, bytes"
    )


@dataclass(frozen=True)
class FailureLimits:
    """Each participant's share of home's failure reports (admins are not capped)."""

    max_open: int = setting(
        1000,
        positive,
        "open failure reports one participant may hold; "
        "beyond it a new report is 429 failure-quota",
    )
    max_envelope_bytes: int = setting(
        196_608,
        positive,
        "largest envelope (as JSON) a "
        "failure report may carry, bytes; beyond it 413 (the "
        "whole report is also within limits.max_request_bytes)",
    )
    max_open_bytes: int = setting(
        67_108_864,
        positive,
        "envelope bytes of one participant's "
        "open failure reports together; beyond it 429 failure-quota",
    )


@dataclass(frozen=True)
class HomeBackup:
    """``dmr home backup`` and its daily timer (dmr-home-backup.timer); home exports the
    newest backup's age from ``dir`` (dmr_home_backup_age_seconds)."""

    dir: Path = setting(
        Path("/var/backups/dmr-home"),
        help="where backups are written, one directory each (DIR/home-<UTC time>)",
    )
    keep: int = setting(
        7, positive, "backups kept in dir: each new one removes the oldest beyond this many"
    )


def store_url(value: str) -> str | None:
    """Empty (SQLite at ``database``), ``sqlite:///PATH`` or ``postgresql://`` without a
    password: the password comes from ``[store] password_file`` or DMR_STORE_PASSWORD."""
    if not value:
        return None
    if value.startswith("sqlite:///"):
        return None if len(value) > len("sqlite:///") else "sqlite:/// needs a path"
    if not value.startswith(("postgresql://", "postgres://")):
        return "must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    userinfo = value.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    if ":" in userinfo or "password=" in value:
        return "must not hold a password: use password_file or DMR_STORE_PASSWORD"
    return None


@dataclass(frozen=True)
class HomeStore:
    """Where home keeps its state (docs/home.md, *Store*)."""

    url: str = setting(
        "",
        store_url,
        "sqlite:///PATH, or postgresql://USER@HOST:PORT/DB?sslmode=verify-full for several "
        "home instances on one database; empty: SQLite at database",
    )
    password_file: str = setting(
        "", help="file holding the PostgreSQL password (else DMR_STORE_PASSWORD, or none)"
    )
    key_file: str = setting(
        "",
        help="key-encryption key (32 random bytes, 0600) sealing the signing keys in the "
        "store; required with PostgreSQL; empty with SQLite: key files in keys_dir",
    )
    pool_size: int = setting(
        8,
        positive,
        "PostgreSQL connections each gunicorn worker keeps, lent per transaction "
        "(workers x pool_size x instances + 1 listener each, within max_connections)",
    )


@dataclass(frozen=True)
class Gate:
    """The nginx in front of an app: it terminates TLS (client certificate and CRL checked)
    on ``bind`` and passes requests to gunicorn on a unix socket only it can reach."""

    socket: Path = setting(
        Path("/run/dmr-home/gunicorn.sock"),
        socket_path,
        "unix socket gunicorn listens on (only the gate connects)",
    )
    prefix: Path = setting(
        Path("/run/dmr-home-gate"),
        help="the gate's nginx prefix: pid file, temp files, rendered nginx.conf",
    )
    access_log: str = setting(
        "journal",
        help="JSON access log: 'journal' (journald's syslog socket), 'stdout', a path, or 'off'",
    )
    error_log: str = setting("stderr", help="error log path, or 'stderr'")
    worker_processes: str = setting("1", help="nginx workers (auto: one per core)")
    worker_connections: int = setting(1024, positive, "connections per worker")
    health_bind: str = setting(
        "",
        optional_bind,
        "HOST:PORT serving only /healthz and "
        "/readyz over plain HTTP (Kubernetes probes); empty: none",
    )


@dataclass(frozen=True)
class RelayGate(Gate):
    socket: Path = setting(
        Path("/run/dmr-relay/gunicorn.sock"),
        socket_path,
        "unix socket gunicorn listens on (only the gate connects)",
    )
    prefix: Path = setting(
        Path("/run/dmr-relay-gate"),
        help="the gate's nginx prefix: pid file, temp files, rendered nginx.conf",
    )


@dataclass(frozen=True)
class HomeConfig:
    instance: str = setting("home", instance_name, "name in logs and metrics")
    bind: str = setting(
        "127.0.0.1:8700",
        bind_address,
        "HOST:PORT the gate listens on (TLS, client certificate required)",
    )
    workers: int = setting(2, positive, "gunicorn worker processes")
    threads: int = setting(64, positive, "threads per worker (each long poll holds one)")
    issuer: str = setting("dmr-home", help="iss of every token and card")
    database: Path = setting(
        Path("/var/lib/dmr-home/home.db"), help="SQLite store, when [store] url is empty"
    )
    keys_dir: Path = setting(Path("/var/lib/dmr-home/keys"), help="Ed25519 signing keys")
    log_level: str = setting("info", level_name)
    tls: Tls = field(default_factory=Tls)
    gate: Gate = field(default_factory=Gate)
    tokens: Tokens = field(default_factory=Tokens)
    sync: HomeSync = field(default_factory=HomeSync)
    heartbeats: Heartbeats = field(default_factory=Heartbeats)
    limits: BodyLimits = field(default_factory=BodyLimits)
    failures: FailureLimits = field(default_factory=FailureLimits)
    backup: HomeBackup = field(default_factory=HomeBackup)
    store: HomeStore = field(default_factory=HomeStore)


@dataclass(frozen=True)
class RelayTls(Tls):
    cert: Path = setting(
        PKI / "relay" / "relay-1.pem",
        help="relay certificate: served to the router, shown to recipients",
    )
    key: Path = setting(PKI / "relay" / "relay-1.key", help="its private key (0600)")


@dataclass(frozen=True)
class Delivery:
    connect_timeout: float = setting(3.0, positive, "seconds to connect to a recipient")
    read_timeout: float = setting(10.0, positive, "seconds to wait for its answer")
    pool_size: int = setting(
        64, positive, "deliveries in flight per worker before 503 overloaded: 4 x this"
    )
    # At least the deliveries to one host at once: above it, each one re-handshakes (a
    # message to 50 recipients of one host takes 50 at once; 32 kept opened 18 per message).
    per_host_connections: int = setting(64, positive, "kept-alive connections per recipient")


@dataclass(frozen=True)
class RelaySync:
    poll_wait: int = setting(
        25,
        lambda v: None if 1 <= v <= 60 else "must be 1-60",
        "long-poll wait asked of home, seconds",
    )
    heartbeat_interval: int = setting(5, positive, "seconds between heartbeats")


@dataclass(frozen=True)
class RelayConfig:
    instance: str = setting("relay-1", instance_name, "this relay's instance id")
    bind: str = setting(
        "127.0.0.1:8801",
        bind_address,
        "HOST:PORT the gate listens on (TLS, client certificate required)",
    )
    advertise: str = setting("", help="address reported in heartbeats (default: bind)")
    workers: int = setting(2, positive, "gunicorn worker processes")
    threads: int = setting(16, positive, "threads per worker")
    home_url: str = setting(
        "https://127.0.0.1:8443/v1/home", https_url, "home API base URL, through the router"
    )
    home_failover: list[str] = setting(
        [],
        https_urls,
        "more home API URLs (other routers), tried in turn when the one in use cannot be reached",
    )
    home_names: list[str] = setting(
        ["home"],
        certificate_names,
        "names (CN) of kind-server certificates the sync agent "
        "takes as home's own gate; routers are always accepted",
    )
    issuer: str = setting("dmr-home", help="expected iss of tokens and cards")
    state_dir: Path = setting(Path("/var/lib/dmr-relay"), help="last good sync document")
    log_level: str = setting("info", level_name)
    tls: RelayTls = field(default_factory=RelayTls)
    gate: RelayGate = field(default_factory=RelayGate)
    tokens: Tokens = field(default_factory=Tokens)
    delivery: Delivery = field(default_factory=Delivery)
    sync: RelaySync = field(default_factory=RelaySync)
    limits: BodyLimits = field(default_factory=BodyLimits)


@dataclass(frozen=True)
class RouterTls(Tls):
    cert: Path = setting(
        PKI / "router" / "router.pem",
        help="router certificate (kind router): served to clients, and the "
        "mark relays and home require before believing its header",
    )
    key: Path = setting(PKI / "router" / "router.key", help="its private key (0600)")


@dataclass(frozen=True)
class RateLimit:
    rate: str = setting("50r/s", request_rate, "messages per client certificate")
    burst: int = setting(100, positive, "requests queued above the rate before 429")
    home_rate: str = setting("20r/s", request_rate, "home API requests per client certificate")
    home_burst: int = setting(40, positive)


@dataclass(frozen=True)
class Upstreams:
    """How the router talks to relays and home (HTTPS, router certificate as client cert)."""

    relay_tls_name: str = setting(
        "localhost",
        help="name every relay certificate carries (proxy_ssl_name; nginx checks DNS names only)",
    )
    home_tls_name: str = setting("localhost", help="name home's certificate carries")
    connect_timeout: int = setting(3, positive, "seconds to connect to a relay or home")
    message_timeout: int = setting(
        60,
        positive,
        "seconds to wait for a relay's answer (longer than its delivery timeouts; never retried)",
    )
    home_timeout: int = setting(30, positive, "seconds to wait for home's answer")
    sync_timeout: int = setting(
        75,
        lambda v: None if v > 60 else "must exceed 60 (longest long poll)",
        "seconds to wait on GET /v1/home/sync",
    )
    keepalive: int = setting(
        32, positive, "idle kept-alive connections to each relay, per nginx worker"
    )
    max_fails: int = setting(
        3,
        lambda v: None if v >= 0 else "must be 0 or more",
        "failed attempts before a relay is taken out (0: never, for "
        "a Kubernetes Service, whose endpoints are the ready pods)",
    )
    fail_timeout: int = setting(10, positive, "seconds it stays out (and the window counted)")


@dataclass(frozen=True)
class RouterConfig:
    listen: int = setting(8443, port, "HTTPS port of the router")
    listen_address: str = setting("127.0.0.1", help="address to listen on ('*' for all)")
    server_name: str = setting("localhost", help="TLS server name")
    relays: list[str] = setting(
        ["127.0.0.1:8801", "127.0.0.1:8802"], upstreams, "relay upstream pool, HOST:PORT each"
    )
    home: list[str] = setting(
        ["127.0.0.1:8700"],
        upstreams,
        "home upstream HOST:PORT, one per home instance (a single string is one)",
        one_or_list=True,
    )
    allow: list[str] = setting(LOOPBACK, networks, "who may send messages")
    home_allow: list[str] = setting(LOOPBACK, networks, "who may reach the home API")
    status_allow: list[str] = setting(LOOPBACK, networks, "who may see the status page")
    prefix: Path = setting(Path("/var/lib/dmr-router"), help="nginx prefix (temp files)")
    access_log: str = setting(
        "/var/log/nginx/dmr-access.log",
        help="JSON access log: a path, 'journal', 'stdout' or 'off'",
    )
    error_log: str = setting("/var/log/nginx/dmr-error.log", help="error log path")
    pid_file: Path = setting(Path("/run/nginx-dmr.pid"))
    health_bind: str = setting(
        "",
        optional_bind,
        "HOST:PORT answering only GET /healthz over plain HTTP (Kubernetes probes); empty: none",
    )
    stub_status_bind: str = setting(
        "",
        optional_bind,
        "HOST:PORT (loopback) serving nginx's "
        "stub_status for the Prometheus nginx exporter; empty: none",
    )
    worker_processes: str = setting("auto")
    worker_connections: int = setting(4096, positive, "connections per nginx worker (2 fds each)")
    log_level: str = setting("info", level_name)
    tls: RouterTls = field(default_factory=RouterTls)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    limits: BodyLimits = field(default_factory=BodyLimits)
    upstream: Upstreams = field(default_factory=Upstreams)


KINDS: dict[str, type] = {"home": HomeConfig, "relay": RelayConfig, "router": RouterConfig}
