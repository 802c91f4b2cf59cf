"""Formats of the names every part agrees on: participants, rooms, instances, messages.

Pure. Participant ids are also certificate common names and URL path segments, so they
stay lowercase ASCII without separators that would need escaping.
"""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import urlsplit

PARTICIPANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
ROOM = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
INSTANCE_ID = PARTICIPANT_ID
# A UUID (any version, canonical text form) or a ULID (Crockford base32, 26 characters).
MESSAGE_ID = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-7][0-9A-HJKMNP-TV-Z]{25})$"
)

PARTICIPANT_ID_RULE = (
    "1-64 characters of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit"
)


def is_participant_id(value: object) -> bool:
    return isinstance(value, str) and PARTICIPANT_ID.fullmatch(value) is not None


def is_room(value: object) -> bool:
    return isinstance(value, str) and ROOM.fullmatch(value) is not None


def is_message_id(value: object) -> bool:
    return isinstance(value, str) and MESSAGE_ID.fullmatch(value) is not None


def is_https_url(value: object) -> bool:
    """An ``https://`` URL with a host (and no port 0): home's URL in configs.

    Lenient; participant endpoints follow the strict ``is_endpoint_url``.
    """
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port out of range, a bad IPv6 literal
        return False


# Participant endpoints: a strict grammar of our own (RFC 3986 subset), so that every
# endpoint home accepts reaches the relay's HTTP client (relay/http1.py) unchanged.
ENDPOINT_MAX_LENGTH = 2048
ENDPOINT_RULE = (
    "an https:// URL with a lowercase DNS name, IPv4 address or [IPv6] address, an optional"
    " port 1-65535, and a path and query of RFC 3986 characters (uppercase percent-encodings,"
    " no '.' or '..' segments); no userinfo, no fragment, no whitespace, control or non-ASCII"
    f" characters; at most {ENDPOINT_MAX_LENGTH} characters"
)
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/")  # sub-delims, pchar, '/'
_QUERY_CHARS = _PATH_CHARS | {"?"}
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII | re.IGNORECASE)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_PORT = re.compile(r"[1-9][0-9]{0,4}")


def is_endpoint_url(value: object) -> bool:
    """A participant endpoint by the strict rule (``ENDPOINT_RULE``)."""
    return endpoint_problem(value) is None


def endpoint_problem(value: object) -> str | None:
    """Why ``value`` is not a valid participant endpoint, or None when it is."""
    if not isinstance(value, str):
        return "the endpoint must be a string (an https:// URL)"
    if len(value) > ENDPOINT_MAX_LENGTH:
        return f"the endpoint is longer than {ENDPOINT_MAX_LENGTH} characters"
    problem = _character_problem(value)
    if problem:
        return problem
    if "#" in value:
        return "the endpoint has a fragment (#...)"
    if not value.startswith("https://"):
        return "the endpoint must start with https:// (lowercase)"
    authority, path, query = _split(value[len("https://") :])
    return _authority_problem(authority) or _path_problem(path) or _query_problem(query)


def request_target(endpoint: str) -> str:
    """The request line's target for an endpoint (path, and query when it has one)."""
    _, path, query = _split(endpoint.split("://", 1)[1])
    return (path or "/") + (f"?{query}" if query is not None else "")


def _character_problem(value: str) -> str | None:
    for char in value:
        if char in " \t\n\r\f\v":
            return f"the endpoint contains whitespace (U+{ord(char):04X})"
        if char < " " or char == "\x7f":
            return f"the endpoint contains a control character (U+{ord(char):04X})"
        if char > "\x7f":
            return f"the endpoint contains a non-ASCII character (U+{ord(char):04X})"
    return None


def _split(rest: str) -> tuple[str, str, str | None]:
    """(authority, path, query or None) of what follows ``https://``."""
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    path, mark, query = tail.partition("?")
    return authority, path, query if mark else None


def _authority_problem(authority: str) -> str | None:
    if "@" in authority:
        return "the endpoint has userinfo (user:pass@)"
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return "the endpoint's IPv6 address has no closing ']'"
        host, rest = authority[: close + 1], authority[close + 1 :]
        if rest and not rest.startswith(":"):
            return "the endpoint has characters between its IPv6 address and its port"
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
    return _host_problem(host) or _port_problem(port)


def _host_problem(host: str) -> str | None:
    if not host:
        return "the endpoint has no host"
    if host.startswith("["):
        return _ipv6_problem(host[1:-1])
    if re.fullmatch(r"[0-9.]+", host):
        if _IPV4.fullmatch(host) is None:
            return "the endpoint's IPv4 address must be four decimal octets 0-255, no leading zeros"
        return None
    return _dns_name_problem(host)


def _dns_name_problem(host: str) -> str | None:
    if len(host) > 253:
        return "the endpoint's host name is longer than 253 characters"
    labels = host.split(".")
    for label in labels:
        if _LABEL.fullmatch(label) is None:
            return (
                f"the endpoint's host label {label!r} is not 1-63 of a-z, 0-9, '-'"
                " (not starting or ending with '-')"
            )
    if labels[-1].isdigit():
        return "the endpoint's host name must not end in an all-digit label"
    if host != host.lower():  # clients lowercase it: the URL would change on the way
        return "the endpoint's host must be lowercase"
    return None


def _ipv6_problem(text: str) -> str | None:
    if "%" in text:
        return "the endpoint's IPv6 address must not have a zone id"
    if text != text.lower():
        return "the endpoint's IPv6 address must be lowercase"
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return "the endpoint's host is not a valid IPv6 address"
    return None


def _port_problem(port: str | None) -> str | None:
    if port is None:
        return None
    if _PORT.fullmatch(port) is None or int(port) > 65535:
        return "the endpoint's port must be 1-65535 without leading zeros"
    return None


def _path_problem(path: str) -> str | None:
    # Clients remove dot segments (RFC 3986 5.2.4): the URL would change on the way.
    if any(segment in (".", "..") for segment in path.split("/")):
        return "the endpoint's path has a '.' or '..' segment"
    return _component_problem("path", path, _PATH_CHARS)


def _query_problem(query: str | None) -> str | None:
    return None if query is None else _component_problem("query", query, _QUERY_CHARS)


def _component_problem(name: str, text: str, allowed: frozenset[str]) -> str | None:
    bad = next((char for char in text if char not in allowed and char != "%"), None)
    if bad is not None:
        return f"the endpoint's {name} contains {bad!r}; percent-encode it"
    for at in (i for i, char in enumerate(text) if char == "%"):
        problem = _percent_problem(name, text[at + 1 : at + 3])
        if problem:
            return problem
    return None


def _percent_problem(name: str, code: str) -> str | None:
    if len(code) < 2 or not all(char in string.hexdigits for char in code):
        return f"the endpoint's {name} has a '%' not followed by two hex digits"
    if code != code.upper():
        return f"the endpoint's {name} must use uppercase hex (%{code.upper()}, not %{code})"
    if chr(int(code, 16)) in _UNRESERVED:
        return (
            f"the endpoint's {name} percent-encodes {chr(int(code, 16))!r} (%{code});"
            " write it as is"
        )
    return None
