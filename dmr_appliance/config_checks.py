"""The rules of configuration values: each check returns what is allowed, or None."""

from __future__ import annotations

import ipaddress
from typing import Any

from dmr_appliance import ids


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def port(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else "must be a TCP port, 1-65535"


def bind_address(value: Any) -> str | None:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return "must be HOST:PORT, e.g. 127.0.0.1:8700 or [::1]:8700"
    return None


def https_url(value: Any) -> str | None:
    return None if ids.is_https_url(value) else "must be an https:// URL"


def https_urls(value: Any) -> str | None:
    bad = [item for item in value if https_url(item)]
    return f"{bad[0]!r} is not an https:// URL" if bad else None


def certificate_names(value: Any) -> str | None:
    if not value:
        return "must name at least one certificate"
    bad = [item for item in value if not isinstance(item, str) or not item.strip() or "," in item]
    return f"{bad[0]!r} is not a certificate name" if bad else None


def networks(value: Any) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8, ::1)"
    return None


def upstreams(value: Any) -> str | None:
    if not value:
        return "must list at least one HOST:PORT"
    for item in value:
        if bind_address(item):
            return f"{item!r} is not HOST:PORT"
    return None


def level_name(value: Any) -> str | None:
    allowed = ("debug", "info", "warning", "error")
    return None if value in allowed else f"must be one of {', '.join(allowed)}"


def instance_name(value: Any) -> str | None:
    return None if ids.is_participant_id(value) else ids.PARTICIPANT_ID_RULE


def request_rate(value: Any) -> str | None:
    number, _, unit = value.partition("r/")
    if not number.isdigit() or int(number) < 1 or unit not in ("s", "m"):
        return "must be like 20r/s or 600r/m"
    return None


def optional_bind(value: Any) -> str | None:
    return None if value == "" else bind_address(value)


def socket_path(value: Any) -> str | None:
    # sun_path holds 108 bytes on Linux, the terminating NUL included.
    if not value.is_absolute() or len(str(value).encode()) > 100:
        return "must be an absolute path of at most 100 bytes (a unix socket)"
    return None
