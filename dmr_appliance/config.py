"""Typed configuration for home, relay and router: TOML files plus ``DMR_*`` overrides.

Pure. Each setting is a dataclass field with its one default; a nested dataclass is a TOML
table. ``DMR_<KEY>`` overrides a top-level key and ``DMR_<TABLE>_<KEY>`` a key of a table
(lists in the environment are comma-separated). Errors name the source, key and rule.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
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
from dmr_appliance.envelope import DEFAULT_MAX_MESSAGE_BYTES
from dmr_appliance.errors import ConfigError

ETC = Path("/etc/dmr-appliance")
PKI = ETC / "pki"

T = TypeVar("T")
Check = Callable[[Any], str | None]  # returns what is wrong, or None


def setting(default: Any, check: Check | None = None, help: str = "") -> Any:
    """A dataclass field with a validation rule and a one-line description."""
    meta = {"check": check, "help": help}
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
    leeway: int = setting(30, lambda v: None if 0 <= v <= 300 else "must be 0-300",
                          "clock skew tolerated on exp/nbf, seconds")


@dataclass(frozen=True)
class HomeSync:
    max_wait: int = setting(30, lambda v: None if 1 <= v <= 60 else "must be 1-60",
                            "longest long poll on GET /v1/sync, seconds")
    # Each waiting poll holds a gunicorn thread: capped so other calls always find one.
    max_polls: int = setting(48, positive, "long polls one worker holds at once (beyond: "
                             "503), never more than 3/4 of its threads")
    max_polls_per_caller: int = setting(32, positive, "long polls one certificate holds at "
                                        "once in one worker (beyond: 429)")


@dataclass(frozen=True)
class Heartbeats:
    stale_after: int = setting(15, positive, "an instance is stale after this many seconds")
    down_after: int = setting(60, positive, "and down after this many")
    forget_after: int = setting(86400, positive, "and forgotten after this many (more than "
                                "down_after): no longer listed, counted or alerted on; a relay "
                                "that crashed alerts until then, one that stopped cleanly "
                                "is listed as left and never alerts")
    max_per_certificate: int = setting(32, positive, "instance names one relay certificate "
                                       "beats as (its CN and CN.<member>, e.g. pods)")


@dataclass(frozen=True)
class BodyLimits:
    max_message_bytes: int = setting(DEFAULT_MAX_MESSAGE_BYTES, positive,
                                     "largest message body, bytes")
    max_request_bytes: int = setting(262_144, positive,
                                     "largest JSON body of a home API request, bytes")


@dataclass(frozen=True)
class FailureLimits:
    """Each participant's share of home's failure reports (admins are not capped)."""

    max_open: int = setting(1000, positive, "open failure reports one participant may hold; "
                            "beyond it a new report is 429 failure-quota")
    max_envelope_bytes: int = setting(196_608, positive, "largest envelope (as JSON) a "
                                      "failure report may carry, bytes; beyond it 413 (the "
                                      "whole report is also within limits.max_request_bytes)")
    max_open_bytes: int = setting(67_108_864, positive, "envelope bytes of one participant's "
                                  "open failure reports together; beyond it 429 failure-quota")


@dataclass(frozen=True)
class HomeBackup:
    """``dmr home backup`` and its daily timer (dmr-home-backup.timer); home exports the
    newest backup's age from ``dir`` (dmr_home_backup_age_seconds)."""

    dir: Path = setting(Path("/var/backups/dmr-home"), help="where backups are written, one "
                        "directory each (DIR/home-<UTC time>)")
    keep: int = setting(7, positive, "backups kept in dir: each new one removes the oldest "
                        "beyond this many")


@dataclass(frozen=True)
class Gate:
    """The nginx in front of an app: it terminates TLS (client certificate and CRL checked)
    on ``bind`` and passes requests to gunicorn on a unix socket only it can reach."""

    socket: Path = setting(Path("/run/dmr-home/gunicorn.sock"), socket_path,
                           "unix socket gunicorn listens on (only the gate connects)")
    prefix: Path = setting(Path("/run/dmr-home-gate"), help="the gate's nginx prefix: pid "
                           "file, temp files, rendered nginx.conf")
    access_log: str = setting("journal", help="JSON access log: 'journal' (journald's syslog "
                              "socket), 'stdout', a path, or 'off'")
    error_log: str = setting("stderr", help="error log path, or 'stderr'")
    worker_processes: str = setting("1", help="nginx workers (auto: one per core)")
    worker_connections: int = setting(1024, positive, "connections per worker")
    health_bind: str = setting("", optional_bind, "HOST:PORT serving only /healthz and "
                               "/readyz over plain HTTP (Kubernetes probes); empty: none")


@dataclass(frozen=True)
class RelayGate(Gate):
    socket: Path = setting(Path("/run/dmr-relay/gunicorn.sock"), socket_path,
                           "unix socket gunicorn listens on (only the gate connects)")
    prefix: Path = setting(Path("/run/dmr-relay-gate"), help="the gate's nginx prefix: pid "
                           "file, temp files, rendered nginx.conf")


@dataclass(frozen=True)
class HomeConfig:
    instance: str = setting("home", instance_name, "name in logs and metrics")
    bind: str = setting("127.0.0.1:8700", bind_address,
                        "HOST:PORT the gate listens on (TLS, client certificate required)")
    workers: int = setting(2, positive, "gunicorn worker processes")
    threads: int = setting(64, positive, "threads per worker (each long poll holds one)")
    issuer: str = setting("dmr-home", help="iss of every token and card")
    database: Path = setting(Path("/var/lib/dmr-home/home.db"), help="SQLite store")
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


@dataclass(frozen=True)
class RelayTls(Tls):
    cert: Path = setting(PKI / "relay" / "relay-1.pem",
                         help="relay certificate: served to the router, shown to recipients")
    key: Path = setting(PKI / "relay" / "relay-1.key", help="its private key (0600)")


@dataclass(frozen=True)
class Delivery:
    connect_timeout: float = setting(3.0, positive, "seconds to connect to a recipient")
    read_timeout: float = setting(10.0, positive, "seconds to wait for its answer")
    pool_size: int = setting(64, positive, "delivery threads shared by all requests")
    # >= the threads delivering to one host at once: above it, each delivery re-handshakes.
    per_host_connections: int = setting(32, positive, "kept-alive connections per recipient")


@dataclass(frozen=True)
class RelaySync:
    poll_wait: int = setting(25, lambda v: None if 1 <= v <= 60 else "must be 1-60",
                             "long-poll wait asked of home, seconds")
    heartbeat_interval: int = setting(5, positive, "seconds between heartbeats")


@dataclass(frozen=True)
class RelayConfig:
    instance: str = setting("relay-1", instance_name, "this relay's instance id")
    bind: str = setting("127.0.0.1:8801", bind_address,
                        "HOST:PORT the gate listens on (TLS, client certificate required)")
    advertise: str = setting("", help="address reported in heartbeats (default: bind)")
    workers: int = setting(2, positive, "gunicorn worker processes")
    threads: int = setting(16, positive, "threads per worker")
    home_url: str = setting("https://127.0.0.1:8443/v1/home", https_url,
                            "home API base URL, through the router")
    home_failover: list[str] = setting([], https_urls,
                                       "more home API URLs (other routers), tried in turn "
                                       "when the one in use cannot be reached")
    home_names: list[str] = setting(["home"], certificate_names,
                                    "names (CN) of kind-server certificates the sync agent "
                                    "takes as home's own gate; routers are always accepted")
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
    cert: Path = setting(PKI / "router" / "router.pem",
                         help="router certificate (kind router): served to clients, and the "
                         "mark relays and home require before believing its header")
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

    relay_tls_name: str = setting("localhost", help="name every relay certificate carries "
                                  "(proxy_ssl_name; nginx checks DNS names only)")
    home_tls_name: str = setting("localhost", help="name home's certificate carries")
    connect_timeout: int = setting(3, positive, "seconds to connect to a relay or home")
    message_timeout: int = setting(60, positive, "seconds to wait for a relay's answer "
                                   "(longer than its delivery timeouts; never retried)")
    home_timeout: int = setting(30, positive, "seconds to wait for home's answer")
    sync_timeout: int = setting(75, lambda v: None if v > 60 else "must exceed 60 (longest "
                                "long poll)", "seconds to wait on GET /v1/home/sync")
    keepalive: int = setting(32, positive, "idle kept-alive connections per worker and pool")
    max_fails: int = setting(3, lambda v: None if v >= 0 else "must be 0 or more",
                             "failed attempts before a relay is taken out (0: never, for "
                             "a Kubernetes Service, whose endpoints are the ready pods)")
    fail_timeout: int = setting(10, positive, "seconds it stays out (and the window counted)")


@dataclass(frozen=True)
class RouterConfig:
    listen: int = setting(8443, port, "HTTPS port of the router")
    listen_address: str = setting("127.0.0.1", help="address to listen on ('*' for all)")
    server_name: str = setting("localhost", help="TLS server name")
    relays: list[str] = setting(["127.0.0.1:8801", "127.0.0.1:8802"], upstreams,
                                "relay upstream pool, HOST:PORT each")
    home: str = setting("127.0.0.1:8700", bind_address, "home upstream HOST:PORT")
    allow: list[str] = setting(LOOPBACK, networks, "who may send messages")
    home_allow: list[str] = setting(LOOPBACK, networks, "who may reach the home API")
    status_allow: list[str] = setting(LOOPBACK, networks, "who may see the status page")
    prefix: Path = setting(Path("/var/lib/dmr-router"), help="nginx prefix (temp files)")
    access_log: str = setting("/var/log/nginx/dmr-access.log",
                              help="JSON access log: a path, 'journal', 'stdout' or 'off'")
    error_log: str = setting("/var/log/nginx/dmr-error.log", help="error log path")
    pid_file: Path = setting(Path("/run/nginx-dmr.pid"))
    health_bind: str = setting("", optional_bind, "HOST:PORT answering only GET /healthz "
                               "over plain HTTP (Kubernetes probes); empty: none")
    stub_status_bind: str = setting("", optional_bind, "HOST:PORT (loopback) serving nginx's "
                                    "stub_status for the Prometheus nginx exporter; empty: none")
    worker_processes: str = setting("auto")
    worker_connections: int = setting(4096, positive, "connections per nginx worker (2 fds each)")
    log_level: str = setting("info", level_name)
    tls: RouterTls = field(default_factory=RouterTls)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    limits: BodyLimits = field(default_factory=BodyLimits)
    upstream: Upstreams = field(default_factory=Upstreams)


# --- loading ---------------------------------------------------------------------------

def load(cls: type[T], path: Path | str | None = None,
         environ: Mapping[str, str] | None = None) -> T:
    """Read ``cls`` from a TOML file (optional), then apply ``DMR_*`` overrides."""
    return load_layers(cls, [] if path is None else [Path(path)], environ)


def load_layers(cls: type[T], paths: list[Path], environ: Mapping[str, str] | None = None) -> T:
    """As ``load``, from several files: each later file's keys replace the earlier ones'
    (table by table), e.g. a site's few settings over a shared profile."""
    data: dict[str, Any] = {}
    for path in paths:
        data = merge(data, read_toml(Path(path)))
    source = " + ".join(str(p) for p in paths) or "defaults"
    config = build(cls, data, source=source, prefix=())
    return apply_environment(config, os.environ if environ is None else environ)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: tables merge key by key, any other value replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create it or pass --config)") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied (run as the dmr user or root)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def build(cls: type[T], data: Mapping[str, Any], *, source: str, prefix: tuple[str, ...]) -> T:
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = ".".join((*prefix, unknown[0]))
        raise ConfigError(f"{source}: unknown key '{where}' (known: {', '.join(sorted(fields))})")
    values = {}
    for name, value in data.items():
        key = ".".join((*prefix, name))
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a table ([{key}])")
            values[name] = build(kind, value, source=source, prefix=(*prefix, name))
        else:
            values[name] = convert(value, kind, source=source, key=key, f=fields[name])
    return cls(**values)


def convert(value: Any, kind: Any, *, source: str, key: str, f: dataclasses.Field) -> Any:
    """Check a value's type (ints are accepted for floats) and run the field's check."""
    if kind is Path:
        ok, value = isinstance(value, str), Path(value) if isinstance(value, str) else value
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typing.get_origin(kind) is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {type_name(kind)}, not {value!r}")
    check = f.metadata.get("check")
    problem = check(value) if check else None
    if problem:
        shown = str(value) if isinstance(value, Path) else value
        raise ConfigError(f"{source}: '{key}' = {shown!r}: {problem}")
    return value


def type_name(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        return "a list of strings"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             Path: "a path (string)"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def apply_environment(config: T, environ: Mapping[str, str]) -> T:
    """Overlay ``DMR_<KEY>`` / ``DMR_<TABLE>_<KEY>`` variables, parsed per field type."""
    changes: dict[str, Any] = {}
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            table = getattr(config, f.name)
            overrides = env_for(kind, environ, f"DMR_{f.name.upper()}_")
            if overrides:
                changes[f.name] = dataclasses.replace(table, **overrides)
        elif (var := f"DMR_{f.name.upper()}") in environ:
            changes[f.name] = from_env(environ[var], kind, var=var, f=f)
    return dataclasses.replace(config, **changes) if changes else config  # type: ignore[type-var]


def env_for(cls: type, environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        var = prefix + f.name.upper()
        if var in environ:
            found[f.name] = from_env(environ[var], hints[f.name], var=var, f=f)
    return found


def from_env(text: str, kind: Any, *, var: str, f: dataclasses.Field) -> Any:
    value: Any = text
    try:
        if kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        elif kind is bool:
            value = {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        elif typing.get_origin(kind) is list:
            value = [item.strip() for item in text.split(",") if item.strip()]
    except (ValueError, KeyError):
        raise ConfigError(f"environment: {var}={text!r} must be {type_name(kind)}") from None
    return convert(value, kind, source="environment", key=var, f=f)


def describe(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key, default, help) for every setting: the source of the documented defaults."""
    rows: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            rows += describe(kind, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        rows.append((prefix + f.name, default, f.metadata.get("help", "")))
    return rows


def defaults_toml(cls: type, title: str) -> str:
    """A commented TOML file listing every setting at its default (for /etc conffiles)."""
    lines = [
        f"# {title}",
        "# Every key is shown at its default, commented out. Uncomment to change;",
        "# DMR_<KEY> or DMR_<TABLE>_<KEY> in the environment overrides this file.",
        "",
    ]
    table = ""
    for key, default, help_text in describe(cls):
        section, _, name = key.rpartition(".")
        if section != table:
            table = section
            lines += ["", f"[{section}]"]
        if help_text:
            lines.append(f"# {help_text}")
        lines.append(f"# {name} = {toml_value(default)}")
    return "\n".join(lines) + "\n"


def to_toml(settings: Any) -> str:
    """Every setting of a config dataclass as TOML, read back by ``load`` (the local stack
    and the tests write their files with it)."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            tables.append((f.name, value))
        else:
            lines.append(f"{f.name} = {toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [f"{f.name} = {toml_value(getattr(table, f.name))}"
                  for f in dataclasses.fields(table)]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


KINDS: dict[str, type] = {"home": HomeConfig, "relay": RelayConfig, "router": RouterConfig}
