"""Envelope v1: one test per refusal code, the happy paths, and how a sender builds one."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dmr_appliance import ids
from dmr_appliance.envelope import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Envelope,
    EnvelopeLimits,
    build_envelope,
    format_time,
    new_message_id,
    parse_envelope,
    parse_time,
    sender_envelope,
    with_cards,
)
from dmr_appliance.errors import EnvelopeError

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CARD_A = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLWE"
CARD_B = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJjYXJvbCJ9.c2lnbmF0dXJlLWI"
MSG_ID = "01HWX5ZB3M8Q6W2V9T7R4K1N0P"


def valid_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": MSG_ID,
        "room": "ops",
        "from": "alice",
        "to": [CARD_A, CARD_B],
        "created_at": "2024-05-01T11:59:58Z",
        "expires_at": "2024-05-01T12:05:00Z",
        "content_type": "application/json",
        "payload": {"text": "héllo", "n": [1, 2.5, None, True]},
        "headers": {"X-Trace": "abc"},
    }
    doc.update(changes)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def refuse(body: bytes, limits: EnvelopeLimits | None = None) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(body, limits or EnvelopeLimits(), now=NOW)
    return info.value


def without(name: str) -> dict[str, Any]:
    doc = valid_doc()
    del doc[name]
    return doc


# ------------------------------------------------------------------ happy paths


def test_parses_a_valid_envelope() -> None:
    env = parse_envelope(encode(valid_doc()), now=NOW)
    assert env == Envelope(
        id=MSG_ID,
        room="ops",
        sender="alice",
        to=(CARD_A, CARD_B),
        created_at=datetime(2024, 5, 1, 11, 59, 58, tzinfo=UTC),
        expires_at=datetime(2024, 5, 1, 12, 5, tzinfo=UTC),
        content_type="application/json",
        payload={"text": "héllo", "n": [1, 2.5, None, True]},
        payload_b64=None,
        headers={"X-Trace": "abc"},
    )
    with pytest.raises(TypeError):
        env.headers["X-Other"] = "no"  # type: ignore[index]


def test_headers_are_optional_and_offsets_become_utc() -> None:
    doc = without("headers")
    doc["created_at"] = "2024-05-01t13:59:58.25+02:00"
    doc["expires_at"] = "2024-05-01T07:05:00-05:00"
    env = parse_envelope(encode(doc), now=NOW)
    assert dict(env.headers) == {}
    assert env.created_at == datetime(2024, 5, 1, 11, 59, 58, 250000, tzinfo=UTC)
    assert env.expires_at.utcoffset() == timedelta(0)
    assert env.expires_at == datetime(2024, 5, 1, 12, 5, tzinfo=UTC)


def test_accepts_bytes_payload_and_a_uuid_id() -> None:
    doc = without("payload")
    doc.update(payload_b64="aGVsbG8=", id="0b7e4e0c-9a3e-4c1e-8f6b-2b1d3f0b9a11")
    doc["content_type"] = 'text/plain; charset="utf-8"'
    env = parse_envelope(encode(doc), now=NOW)
    assert (env.payload, env.payload_b64) == (None, "aGVsbG8=")


def test_a_signature_is_kept_as_it_came_and_its_absence_is_none() -> None:
    signed = parse_envelope(encode(valid_doc(signature="eyJ0eXAiOiJ4In0..c2ln")), now=NOW)
    assert signed.signature == "eyJ0eXAiOiJ4In0..c2ln"
    assert parse_envelope(encode(valid_doc()), now=NOW).signature is None


def test_null_payload_is_a_payload() -> None:
    assert parse_envelope(encode(valid_doc(payload=None)), now=NOW).payload is None


def test_limits_are_inclusive() -> None:
    limits = EnvelopeLimits(max_recipients=2, max_headers=1, max_ttl=300, max_clock_skew=60)
    doc = valid_doc(created_at="2024-05-01T12:01:00Z", expires_at="2024-05-01T12:05:00Z")
    parse_envelope(encode(doc), limits, now=NOW)
    body = encode(valid_doc())
    parse_envelope(body, EnvelopeLimits(max_message_bytes=len(body)), now=NOW)


def test_depth_limit_counts_the_envelope_and_ignores_brackets_in_strings() -> None:
    nested: Any = "[[[[{{{{"
    for _ in range(31):  # 31 lists inside the envelope object: depth 32
        nested = [nested]
    parse_envelope(encode(valid_doc(payload=nested)), now=NOW)
    assert refuse(encode(valid_doc(payload=[nested]))).code == "envelope-too-deep"


def test_default_limits() -> None:
    limits = EnvelopeLimits()
    assert limits.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 1_048_576
    assert (limits.max_recipients, limits.max_headers, limits.max_json_depth) == (100, 32, 32)
    assert (limits.max_ttl, limits.max_clock_skew) == (7 * 86400, 300)
    assert (limits.max_header_name, limits.max_header_value, limits.max_content_type) == (
        64,
        1024,
        255,
    )


# --------------------------------------------------------------- one per code

Case = tuple[str, Callable[[], bytes], str, int, str | None]

CASES: list[Case] = [
    ("too-large", lambda: b" " * 101 + b"not json", "envelope-too-large", 413, None),
    ("bad utf-8", lambda: b'{"id": "\xff"}', "envelope-malformed-json", 400, None),
    ("truncated", lambda: encode(valid_doc())[:-1], "envelope-malformed-json", 400, None),
    ("NaN", lambda: b'{"payload": NaN}', "envelope-malformed-json", 400, None),
    ("-Infinity", lambda: b"[-Infinity]", "envelope-malformed-json", 400, None),
    ("overflowing float", lambda: b"[1e999]", "envelope-malformed-json", 400, None),
    ("huge integer", lambda: b"[" + b"9" * 5000 + b"]", "envelope-malformed-json", 400, None),
    ("duplicate key", lambda: b'{"id": "a", "id": "b"}', "envelope-malformed-json", 400, None),
    (
        "utf-16",
        lambda: json.dumps(valid_doc()).encode("utf-16"),
        "envelope-malformed-json",
        400,
        None,
    ),
    ("too deep", lambda: b"[" * 100_000, "envelope-too-deep", 400, None),
    ("array", lambda: b"[]", "envelope-not-object", 422, None),
    ("unknown", lambda: encode(valid_doc(cc=[])), "envelope-unknown-field", 422, "cc"),
    ("missing", lambda: encode(without("expires_at")), "envelope-missing-field", 422, "expires_at"),
    ("id type", lambda: encode(valid_doc(id=7)), "envelope-bad-type", 422, "id"),
    ("to type", lambda: encode(valid_doc(to=CARD_A)), "envelope-bad-type", 422, "to"),
    ("headers type", lambda: encode(valid_doc(headers=[])), "envelope-bad-type", 422, "headers"),
    (
        "time type",
        lambda: encode(valid_doc(created_at=1714564800)),
        "envelope-bad-type",
        422,
        "created_at",
    ),
    (
        "b64 type",
        lambda: encode({**without("payload"), "payload_b64": None}),
        "envelope-bad-type",
        422,
        "payload_b64",
    ),
    ("bad id", lambda: encode(valid_doc(id="msg-1")), "envelope-bad-id", 422, "id"),
    ("bad room", lambda: encode(valid_doc(room="Ops!")), "envelope-bad-room", 422, "room"),
    ("bad from", lambda: encode(valid_doc(**{"from": "-alice"})), "envelope-bad-from", 422, "from"),
    (
        "date only",
        lambda: encode(valid_doc(expires_at="2024-05-02")),
        "envelope-bad-time",
        422,
        "expires_at",
    ),
    (
        "no offset",
        lambda: encode(valid_doc(created_at="2024-05-01T11:00:00")),
        "envelope-bad-time",
        422,
        "created_at",
    ),
    (
        "space",
        lambda: encode(valid_doc(created_at="2024-05-01 11:00:00Z")),
        "envelope-bad-time",
        422,
        "created_at",
    ),
    (
        "expired",
        lambda: encode(valid_doc(expires_at="2024-05-01T12:00:00Z")),
        "envelope-expired",
        422,
        "expires_at",
    ),
    (
        "ttl",
        lambda: encode(valid_doc(expires_at="2024-05-08T12:00:01Z")),
        "envelope-ttl-too-long",
        422,
        "expires_at",
    ),
    (
        "future",
        lambda: encode(valid_doc(created_at="2024-05-01T12:05:01Z")),
        "envelope-created-in-future",
        422,
        "created_at",
    ),
    (
        "order",
        lambda: encode(
            valid_doc(created_at="2024-05-01T12:04:00Z", expires_at="2024-05-01T12:03:00Z")
        ),
        "envelope-time-order",
        422,
        "expires_at",
    ),
    ("no recipients", lambda: encode(valid_doc(to=[])), "envelope-no-recipients", 422, "to"),
    (
        "many recipients",
        lambda: encode(valid_doc(to=[f"a.b.{i}" for i in range(101)])),
        "envelope-too-many-recipients",
        422,
        "to",
    ),
    (
        "dup recipient",
        lambda: encode(valid_doc(to=[CARD_A, CARD_B, CARD_A])),
        "envelope-duplicate-recipient",
        422,
        "to",
    ),
    (
        "card shape",
        lambda: encode(valid_doc(to=["not-a-jwt"])),
        "envelope-bad-recipient",
        422,
        "to",
    ),
    ("card type", lambda: encode(valid_doc(to=[42])), "envelope-bad-recipient", 422, "to"),
    (
        "card size",
        lambda: encode(valid_doc(to=["a.b." + "c" * 8189])),
        "envelope-bad-recipient",
        422,
        "to",
    ),
    (
        "header count",
        lambda: encode(valid_doc(headers={f"h{i}": "v" for i in range(33)})),
        "envelope-bad-headers",
        422,
        "headers",
    ),
    (
        "header name",
        lambda: encode(valid_doc(headers={"bad name": "v"})),
        "envelope-bad-headers",
        422,
        "headers",
    ),
    (
        "header name len",
        lambda: encode(valid_doc(headers={"h" * 65: "v"})),
        "envelope-bad-headers",
        422,
        "headers",
    ),
    (
        "header case",
        lambda: encode(valid_doc(headers={"X-A": "1", "x-a": "2"})),
        "envelope-bad-headers",
        422,
        "headers",
    ),
    (
        "header value",
        lambda: encode(valid_doc(headers={"h": 1})),
        "envelope-bad-headers",
        422,
        "headers",
    ),
    (
        "header value len",
        lambda: encode(valid_doc(headers={"h": "v" * 1025})),
        "envelope-bad-headers",
        422,
        "headers",
    ),
    (
        "both payloads",
        lambda: encode(valid_doc(payload_b64="")),
        "envelope-payload-conflict",
        422,
        "payload",
    ),
    ("no payload", lambda: encode(without("payload")), "envelope-payload-conflict", 422, "payload"),
    (
        "signature not detached",
        lambda: encode(valid_doc(signature=CARD_A)),
        "envelope-bad-signature",
        422,
        "signature",
    ),
    (
        "signature too long",
        lambda: encode(valid_doc(signature="e30.." + "A" * 16384)),
        "envelope-bad-signature",
        422,
        "signature",
    ),
    (
        "signature type",
        lambda: encode(valid_doc(signature=7)),
        "envelope-bad-type",
        422,
        "signature",
    ),
    (
        "base64url",
        lambda: encode({**without("payload"), "payload_b64": "a-_b"}),
        "envelope-bad-base64",
        422,
        "payload_b64",
    ),
    (
        "base64 unpadded",
        lambda: encode({**without("payload"), "payload_b64": "aGVsbG8"}),
        "envelope-bad-base64",
        422,
        "payload_b64",
    ),
    (
        "base64 loose bits",
        lambda: encode({**without("payload"), "payload_b64": "aGVsbG9="}),
        "envelope-bad-base64",
        422,
        "payload_b64",
    ),
    (
        "content type",
        lambda: encode(valid_doc(content_type="json")),
        "envelope-bad-content-type",
        422,
        "content_type",
    ),
    (
        "content type len",
        lambda: encode(valid_doc(content_type="a/" + "b" * 254)),
        "envelope-bad-content-type",
        422,
        "content_type",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_has_its_code(
    body: Callable[[], bytes], code: str, status: int, field: str | None
) -> None:
    limits = EnvelopeLimits(max_message_bytes=100) if code.endswith("too-large") else None
    error = refuse(body(), limits)
    assert (error.code, error.status) == (code, status)
    assert error.extra.get("field") == field
    problem = error.problem()
    assert problem["type"] == "urn:dmr:problem:" + code
    if field is not None:
        assert problem["field"] == field
        assert field in error.detail


def test_every_code_is_covered() -> None:
    codes = {
        "too-large",
        "malformed-json",
        "too-deep",
        "not-object",
        "missing-field",
        "unknown-field",
        "bad-type",
        "bad-id",
        "bad-room",
        "bad-from",
        "bad-time",
        "expired",
        "ttl-too-long",
        "created-in-future",
        "time-order",
        "no-recipients",
        "too-many-recipients",
        "duplicate-recipient",
        "bad-recipient",
        "bad-headers",
        "payload-conflict",
        "bad-base64",
        "bad-content-type",
        "bad-signature",
    }
    assert {c[2] for c in CASES} == {"envelope-" + code for code in codes}


def test_size_is_checked_before_parsing() -> None:
    error = refuse(b"[" * 2000, EnvelopeLimits(max_message_bytes=1000))
    assert error.code == "envelope-too-large"
    assert error.extra["limit"] == 1000


def test_malformed_json_detail_says_where() -> None:
    assert "line 1 column 2" in refuse(b"{,}").detail


# ------------------------------------------------------------------ building


def test_build_envelope_parses() -> None:
    doc = build_envelope(
        room="ops",
        sender="alice",
        cards=[CARD_A],
        payload=[1],
        headers={"k": "v"},
        ttl=60,
        now=NOW,
    )
    env = parse_envelope(encode(doc), now=NOW)
    assert env.expires_at - env.created_at == timedelta(seconds=60)
    assert (env.payload, dict(env.headers), env.to) == ([1], {"k": "v"}, (CARD_A,))
    assert ids.is_message_id(env.id)


def test_build_envelope_with_bytes_and_own_id() -> None:
    doc = build_envelope(
        room="ops",
        sender="alice",
        cards=[CARD_A],
        payload_b64="AA==",
        message_id=MSG_ID,
        content_type="application/octet-stream",
        now=NOW,
    )
    assert (doc["id"], doc["payload_b64"]) == (MSG_ID, "AA==")
    assert "payload" not in doc


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"payload": 1, "payload_b64": "AA=="}, "envelope-payload-conflict"),
        ({"room": "Bad Room"}, "envelope-bad-room"),
        ({"ttl": 0}, "envelope-expired"),
        ({"ttl": 7 * 86400 + 1}, "envelope-ttl-too-long"),
        ({"cards": []}, "envelope-no-recipients"),
        ({"payload": {1, 2}}, "envelope-bad-type"),
    ],
)
def test_build_envelope_refuses_what_the_relay_would(kwargs: dict[str, Any], code: str) -> None:
    args: dict[str, Any] = {"room": "ops", "sender": "alice", "cards": [CARD_A], "now": NOW}
    with pytest.raises(EnvelopeError) as info:
        build_envelope(**{**args, **kwargs})
    assert info.value.code == code


def test_a_sender_keeps_ids_and_posts_each_try_with_cards() -> None:
    doc = sender_envelope(
        room="ops",
        sender="alice",
        to=["bob", "carol", "bob"],
        payload={"n": 1},
        message_id=MSG_ID,
        now=NOW,
    )
    assert doc["to"] == ["bob", "carol"]  # each once, in order
    assert sender_envelope(room="ops", sender="alice", to="bob", now=NOW)["to"] == ["bob"]
    posted = with_cards(doc, iter([CARD_B]))
    assert doc["to"] == ["bob", "carol"]  # the sender's own copy is left as it was
    env = parse_envelope(encode(posted), now=NOW)
    assert (env.id, env.to, env.payload) == (MSG_ID, (CARD_B,), {"n": 1})
    assert {k: v for k, v in posted.items() if k != "to"} == {
        k: v for k, v in doc.items() if k != "to"
    }


@pytest.mark.parametrize(
    ("kwargs", "code", "status"),
    [
        ({"to": []}, "envelope-no-recipients", 400),
        ({"to": ["Bob"]}, "envelope-bad-recipient", 400),
        ({"to": ["bob", 7]}, "envelope-bad-recipient", 400),
        ({"to": ["Bob"], "room": "Bad Room"}, "envelope-bad-recipient", 400),  # ids first
        ({"room": "Bad Room"}, "envelope-bad-room", 422),
        ({"payload": 1, "payload_b64": "AA=="}, "envelope-payload-conflict", 422),
        ({"ttl": 0}, "envelope-expired", 422),
        ({"payload": {1, 2}}, "envelope-bad-type", 422),
    ],
)
def test_a_sender_envelope_is_refused_before_any_card_is_known(
    kwargs: dict[str, Any], code: str, status: int
) -> None:
    args: dict[str, Any] = {"room": "ops", "sender": "alice", "to": ["bob"], "now": NOW}
    with pytest.raises(EnvelopeError) as info:
        sender_envelope(**{**args, **kwargs})
    assert (info.value.code, info.value.status) == (code, status)


# ---------------------------------------------------------------- ids and times


def test_new_message_id_is_a_time_sortable_ulid() -> None:
    earlier = new_message_id(NOW)
    later = new_message_id(NOW + timedelta(milliseconds=1))
    assert ids.is_message_id(earlier) and len(earlier) == 26
    assert earlier < later
    assert new_message_id(NOW) != new_message_id(NOW)
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ms = 0
    for char in earlier[:10]:
        ms = ms * 32 + crockford.index(char)
    assert ms == int(NOW.timestamp() * 1000)


def test_format_time_is_utc_with_z() -> None:
    tz = datetime(2024, 5, 1, 14, 0, 0, 1500, tzinfo=UTC).astimezone()
    assert format_time(tz) == "2024-05-01T14:00:00.001500Z"
    assert format_time(NOW) == "2024-05-01T12:00:00Z"
    assert parse_time(format_time(tz)) == tz
    with pytest.raises(ValueError):
        format_time(datetime(2024, 5, 1))


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01",
        "2024-05-01T12:00:00",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00Z",
        "2024-05-01T12:00:00+0100",
        "2024-05-01T12:00:00+24:00",
        "2024-05-01T12:00:60Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00Z ",
        "2024-05-01T12:00:00Z\n",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z"  # fullwidth digits,
        "9999-12-31T23:59:59-01:00",
        "20240501T120000Z",
    ],
)
def test_parse_time_is_strict_rfc3339(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_parse_time_accepts_rfc3339_variants() -> None:
    assert parse_time("2024-05-01T12:00:00.123456789-00:00") == datetime(
        2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_time("2024-05-01t12:00:00z") == NOW
