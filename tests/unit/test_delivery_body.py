"""relay/delivery_body.py: each recipient gets the envelope with its own participant id in
``to``, from parts encoded once per message, byte for byte what encoding the whole
document at once gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmr_appliance.envelope import Envelope
from dmr_appliance.relay import delivery_body as bodies
from dmr_appliance.timefmt import format_time

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CARD = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJib2IifQ.c2ln"


def message(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": "01HXA7ZK8Q5X3V6T9W2M4N1P0R",
        "room": "ops",
        "sender": "alice",
        "to": (CARD,),
        "created_at": NOW - timedelta(seconds=2),
        "expires_at": NOW + timedelta(minutes=5),
        "content_type": "application/json",
        "payload": {"text": "héllo", "n": [1, 2.5]},
        "headers": MappingProxyType({"X-Trace": "abc"}),
    }
    return Envelope(**{**fields, **changes})


def whole(env: Envelope, recipient: str) -> bytes:
    """The body encoded as one document (how the relay encoded it before the parts)."""
    doc: dict[str, Any] = {
        "id": env.id,
        "room": env.room,
        "from": env.sender,
        "to": [recipient],
        "created_at": format_time(env.created_at),
        "expires_at": format_time(env.expires_at),
        "content_type": env.content_type,
        "headers": dict(env.headers),
    }
    if env.payload_b64 is not None:
        doc["payload_b64"] = env.payload_b64
    else:
        doc["payload"] = env.payload
    if env.signature is not None:
        doc["signature"] = env.signature
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except UnicodeEncodeError:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"payload": "\ud800"},
        {"payload": '["\u0000dmr-to\u0000"]'},
        {"payload": {"to": ["carol"], "}": "{"}},
        {"payload": None},
        {"payload": []},
        {"payload": None, "payload_b64": "AAEC"},
        {"headers": MappingProxyType({})},
        {"headers": MappingProxyType({"X-Note": "\ud800 ünï"})},
        {"signature": "eyJ0eXAiOiJ4In0..c2ln"},
    ],
)
def test_every_recipient_gets_the_bytes_of_the_whole_document(changes: dict[str, Any]) -> None:
    env = message(**changes)
    parts = bodies.parts(env)
    for recipient in ("bob", "carol.x-1"):
        assert bodies.for_recipient(parts, recipient) == whole(env, recipient)
        assert bodies.body(env, recipient) == whole(env, recipient)


def test_the_body_swaps_cards_for_the_recipient_id_in_compact_utf8() -> None:
    body = bodies.body(message(), "bob")
    assert b" " not in body.replace(b"application/json", b"")  # compact
    assert "héllo".encode() in body  # UTF-8, not \\u escapes
    assert CARD.encode() not in body
    assert json.loads(body) == {
        "id": "01HXA7ZK8Q5X3V6T9W2M4N1P0R",
        "room": "ops",
        "from": "alice",
        "to": ["bob"],
        "created_at": "2024-05-01T11:59:58Z",
        "expires_at": "2024-05-01T12:05:00Z",
        "content_type": "application/json",
        "payload": {"text": "héllo", "n": [1, 2.5]},
        "headers": {"X-Trace": "abc"},
    }


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(payload=json_values, headers=st.dictionaries(st.text(min_size=1), st.text(), max_size=3))
def test_any_payload_and_headers_give_the_same_bytes(payload: Any, headers: dict[str, str]) -> None:
    env = message(payload=payload, headers=MappingProxyType(headers))
    assert bodies.body(env, "bob") == whole(env, "bob")
