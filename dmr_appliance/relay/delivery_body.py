"""The body each recipient gets: the message's envelope with that recipient's participant
id in ``to`` instead of the address cards, as compact UTF-8 JSON.

Only ``to`` differs between a message's recipients, so the fields before it and the
fields after it are encoded once per message (``parts``), and each recipient's body is
those bytes around its own ``to`` (``for_recipient``): nothing is encoded again per
recipient. The parts are whole JSON objects cut at a brace, so no value can be mistaken
for a seam; the ids, times and content type are ASCII, so encoding the parts apart gives
the bytes of encoding the whole document at once.
"""

from __future__ import annotations

import json
from typing import Any

from dmr_appliance.envelope import Envelope
from dmr_appliance.timefmt import format_time

Parts = tuple[bytes, bytes]  # the body before the value of ``to``, and after it

# Made once: json.dumps with options builds a new encoder on every call.
_UTF8 = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ASCII = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def compact_json(doc: Any) -> bytes:
    """Compact UTF-8 JSON, as every delivery body (and each part of one) is encoded."""
    try:
        return _UTF8.encode(doc).encode()
    except UnicodeEncodeError:
        # A lone surrogate from a "\ud800" escape cannot be UTF-8; escape it back.
        return _ASCII.encode(doc).encode()


def parts(message: Envelope) -> Parts:
    """The body of ``message`` around ``to``: ``{"id":…,"room":…,"from":…,"to":`` and
    ``,"created_at":…}``."""
    before = {"id": message.id, "room": message.room, "from": message.sender}
    after: dict[str, Any] = {
        "created_at": format_time(message.created_at),
        "expires_at": format_time(message.expires_at),
        "content_type": message.content_type,
        "headers": dict(message.headers),
    }
    if message.payload_b64 is not None:
        after["payload_b64"] = message.payload_b64
    else:
        after["payload"] = message.payload
    if message.signature is not None:  # the sender's, passed on as it came
        after["signature"] = message.signature
    return compact_json(before)[:-1] + b',"to":', b"," + compact_json(after)[1:]


def for_recipient(body_parts: Parts, recipient: str) -> bytes:
    """The body one recipient gets, ``to`` holding its participant id alone."""
    head, tail = body_parts
    return head + compact_json([recipient]) + tail


def body(message: Envelope, recipient: str) -> bytes:
    """One recipient's body in one call (tools and benchmarks; the relay keeps the parts)."""
    return for_recipient(parts(message), recipient)
