"""Formats of the names every part agrees on: participants, rooms, instances, messages.

Pure. Participant ids are also certificate common names and URL path segments, so they
stay lowercase ASCII without separators that would need escaping.
"""

from __future__ import annotations

import re
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
    """An ``https://`` URL with a host (and no port 0): participant endpoints, home's URL."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port out of range, a bad IPv6 literal
        return False
