"""Render the router's nginx.conf from a RouterConfig: the only writer of nginx config.

The template (``templates/nginx/router.conf.j2``) is also what the Ansible role and the
Kubernetes manifests render, so it reads nothing but ``config``. This module adds what a
template cannot do well: refusing values that would change the meaning of the config
(a ``$`` starts an nginx variable, ``;`` or ``{`` would end a directive) before rendering.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import jinja2

from dmr_appliance.config import RouterConfig
from dmr_appliance.errors import ConfigError

TEMPLATE = "nginx/router.conf.j2"

# Unquoted tokens in the config (names, HOST:PORT, networks, rates): no spaces, no
# quotes, no `$ ; { }`. Paths are quoted, so they may hold spaces but not `$ " \`.
_TOKEN = re.compile(r"[A-Za-z0-9._:/\[\]*%-]+")
_PATH_FORBIDDEN = re.compile(r'[$"\\\x00-\x1f\x7f]')
_WORKERS = re.compile(r"auto|[1-9][0-9]{0,3}")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("dmr_appliance", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701  (nginx config, not HTML)
        keep_trailing_newline=True,
    )


def render(config: RouterConfig) -> str:
    """The complete nginx.conf for ``config``; ConfigError names a value nginx would misread."""
    check(config)
    return environment().get_template(TEMPLATE).render(config=config)


def check(config: RouterConfig) -> None:
    """Refuse values that are valid TOML but would break or bend the nginx config."""
    if not _WORKERS.fullmatch(config.worker_processes):
        raise ConfigError(
            f"router: 'worker_processes' = {config.worker_processes!r}: must be auto or a number"
        )
    for key, value in _leaves(config):
        if isinstance(value, Path) or key in ("access_log", "error_log"):
            if _PATH_FORBIDDEN.search(str(value)):
                raise ConfigError(
                    f"router: '{key}' = {str(value)!r}: a path here may not contain "
                    "'$', '\"', '\\' or control characters"
                )
        elif isinstance(value, str) and not _TOKEN.fullmatch(value):
            raise ConfigError(
                f"router: '{key}' = {value!r}: must be a single word of letters, digits "
                "and . : / [ ] * % - (no spaces, quotes, '$', ';' or braces)"
            )
        elif isinstance(value, list):
            for item in value:
                if not _TOKEN.fullmatch(item):
                    raise ConfigError(
                        f"router: '{key}' contains {item!r}: not a single nginx word"
                    )


def write(config: RouterConfig, path: Path) -> Path:
    """Render into ``path`` atomically (a reload never reads half a file)."""
    text = render(config)
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
        else:
            found.append((prefix + f.name, value))
    return found
