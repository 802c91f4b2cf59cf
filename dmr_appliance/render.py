"""Render every nginx.conf of the project: the only writer of nginx config.

Two templates, sharing ``common.j2``: the router's (``router.conf.j2``, from a
RouterConfig) and the gate in front of each app (``gate.conf.j2``, from that app's
HomeConfig or RelayConfig). The local stack, the Ansible roles and the Kubernetes
manifests all render them here, and each reads nothing but its settings. This module
adds what a template cannot do well: refusing values that would change the meaning of the config
(a ``$`` starts an nginx variable, ``;`` or ``{`` would end a directive) before rendering.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import jinja2

from dmr_appliance import tls_profile
from dmr_appliance.config import HomeConfig, RelayConfig, RouterConfig, optional_bind
from dmr_appliance.errors import ConfigError

TEMPLATE = "nginx/router.conf.j2"
GATE_TEMPLATE = "nginx/gate.conf.j2"
AppConfig = HomeConfig | RelayConfig

# Unquoted tokens in the config (names, HOST:PORT, networks, rates): no spaces, no
# quotes, no `$ ; { }`. Paths are quoted, so they may hold spaces but not `$ " \`.
_TOKEN = re.compile(r"[A-Za-z0-9._:/\[\]*%-]+")
_PATH_FORBIDDEN = re.compile(r'[$"\\\x00-\x1f\x7f]')
_WORKERS = re.compile(r"auto|[1-9][0-9]{0,3}")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dmr_appliance", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701  (nginx config, not HTML)
        keep_trailing_newline=True,
    )
    env.globals["tls_profile"] = tls_profile.TEMPLATE_VALUES
    return env


def render(config: RouterConfig) -> str:
    """The complete nginx.conf for ``config``; ConfigError names a value nginx would misread."""
    check(config)
    return environment().get_template(TEMPLATE).render(config=config)


def render_gate(kind: str, config: AppConfig) -> str:
    """The complete nginx.conf of the gate in front of app ``kind`` (home or relay)."""
    check_gate(kind, config)
    return environment().get_template(GATE_TEMPLATE).render(kind=kind, config=config)


def check(config: RouterConfig) -> None:
    """Refuse values that are valid TOML but would break or bend the nginx config."""
    _check_workers("router", "worker_processes", config.worker_processes)
    _check_leaves("router", _leaves(config))


def check_gate(kind: str, config: AppConfig) -> None:
    """As ``check``, for the settings the gate template reads."""
    _check_workers(kind, "gate.worker_processes", config.gate.worker_processes)
    leaves = [
        ("bind", config.bind),
        ("instance", config.instance),
        *_leaves(config.tls, "tls."),
        *_leaves(config.gate, "gate."),
    ]
    _check_leaves(kind, leaves)


def _check_workers(source: str, key: str, value: str) -> None:
    if not _WORKERS.fullmatch(value):
        raise ConfigError(f"{source}: '{key}' = {value!r}: must be auto or a number")


def _check_leaves(source: str, leaves: list[tuple[str, Any]]) -> None:
    for key, value in leaves:
        if isinstance(value, Path) or key.endswith(("access_log", "error_log")):
            if _PATH_FORBIDDEN.search(str(value)):
                raise ConfigError(
                    f"{source}: '{key}' = {str(value)!r}: a path here may not contain "
                    "'$', '\"', '\\' or control characters"
                )
        elif isinstance(value, str) and not _TOKEN.fullmatch(value):
            raise ConfigError(
                f"{source}: '{key}' = {value!r}: must be a single word of letters, digits "
                "and . : / [ ] * % - (no spaces, quotes, '$', ';' or braces)"
            )
        elif isinstance(value, list):
            for item in value:
                if not _TOKEN.fullmatch(item):
                    raise ConfigError(
                        f"{source}: '{key}' contains {item!r}: not a single nginx word"
                    )


def write(config: RouterConfig, path: Path) -> Path:
    """Render the router's config into ``path`` atomically."""
    return write_text(render(config), path)


def write_gate(kind: str, config: AppConfig, path: Path) -> Path:
    """Render the gate's config for app ``kind`` into ``path`` atomically."""
    return write_text(render_gate(kind, config), path)


def write_text(text: str, path: Path) -> Path:
    """``text`` into ``path`` atomically (a reload never reads half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            found += _leaves(value, f"{prefix}{f.name}.")
        elif not (value == "" and f.metadata.get("check") is optional_bind):
            found.append((prefix + f.name, value))  # an unset optional listener renders nothing
    return found
