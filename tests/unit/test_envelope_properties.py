"""Property tests: whatever arrives, parse_envelope answers with an EnvelopeError or an
Envelope, never anything else; valid envelopes parse, and each mutation of one is
refused with the code of the rule it breaks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmr_appliance.envelope import (
    FIELDS,
    REQUIRED,
    Envelope,
    EnvelopeLimits,
    build_envelope,
    format_time,
    parse_envelope,
)
from dmr_appliance.errors import EnvelopeError
from dmr_appliance.relay import delivery_body as bodies

pytestmark = pytest.mark.once  # the standard library only: the same on every set (setup.cfg)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LIMITS = EnvelopeLimits()
MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
# Any subset of the envelope's keys with any values, so arbitrary documents reach the
# field checks rather than stopping at the first unknown key.
shallow_values = (
    json_scalars
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
)
loose_documents = st.fixed_dictionaries(
    {}, optional={name: shallow_values for name in sorted(FIELDS)}
)

b64url = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12
)
cards = st.tuples(b64url, b64url, b64url).map(".".join)
# Plain alphabets rather than from_regex: generation dominates these tests' runtime.
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
message_ids = st.uuids().map(str) | st.tuples(
    st.sampled_from("01234567"),
    st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=25, max_size=25),
).map("".join)
names = st.sampled_from(ALNUM) | st.tuples(
    st.sampled_from(ALNUM), st.text(ALNUM + "._-", max_size=62), st.sampled_from(ALNUM)
).map("".join)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timedelta(minutes=m))
header_names = st.text(
    "!#$%&'*+.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-",
    min_size=1,
    max_size=64,
)
headers = st.lists(
    st.tuples(header_names, st.text(max_size=40)), max_size=6, unique_by=lambda kv: kv[0].lower()
).map(dict)
content_types = st.sampled_from(
    ["application/json", "text/plain; charset=utf-8", 'application/x.dmr+json; v="1 2"']
)


def rfc3339(moment: datetime, offset: timedelta) -> str:
    return moment.astimezone(timezone(offset)).isoformat()


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    created = NOW + timedelta(seconds=draw(st.integers(-86400, LIMITS.max_clock_skew)))
    earliest = max(created, NOW) + timedelta(milliseconds=1)
    expires = earliest + timedelta(
        milliseconds=draw(
            st.integers(
                0, (NOW + timedelta(seconds=LIMITS.max_ttl) - earliest) // timedelta(milliseconds=1)
            )
        )
    )
    doc: dict[str, Any] = {
        "id": draw(message_ids),
        "room": draw(names),
        "from": draw(names),
        "to": draw(st.lists(cards, min_size=1, max_size=5, unique=True)),
        "created_at": rfc3339(created, draw(offsets)),
        "expires_at": rfc3339(expires, draw(offsets)),
        "content_type": draw(content_types),
    }
    if draw(st.booleans()):
        doc["payload"] = draw(json_values)
    else:
        doc["payload_b64"] = base64.b64encode(draw(st.binary(max_size=64))).decode()
    if draw(st.booleans()):
        doc["headers"] = draw(headers)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def parse(body: bytes) -> Envelope:
    return parse_envelope(body, LIMITS, now=NOW)


def code_of(body: bytes) -> str | None:
    try:
        parse(body)
    except EnvelopeError as exc:
        return exc.code
    return None


# ------------------------------------------------------------- (a) total parser


@MANY
@given(st.binary(max_size=300) | json_values.map(encode))
def test_arbitrary_input_only_raises_envelope_error(body: bytes) -> None:
    code_of(body)


@MANY
@given(loose_documents)
def test_arbitrary_objects_only_raise_envelope_error(doc: dict[str, Any]) -> None:
    code_of(encode(doc))


# ------------------------------------------------------------------ mutations

Mutation = Callable[[dict[str, Any], st.DataObject], str]


def drop_field(doc: dict[str, Any], data: st.DataObject) -> str:
    name = data.draw(
        st.sampled_from([*REQUIRED, "payload_b64" if "payload_b64" in doc else "payload"])
    )
    del doc[name]
    return "envelope-missing-field" if name in REQUIRED else "envelope-payload-conflict"


def retype_field(doc: dict[str, Any], data: st.DataObject) -> str:
    name = data.draw(st.sampled_from([n for n in FIELDS if n in doc and n != "payload"]))
    wanted = {"to": list, "headers": dict}.get(name, str)
    doc[name] = data.draw(json_values.filter(lambda v: not isinstance(v, wanted)))
    return "envelope-bad-type"


def add_unknown_field(doc: dict[str, Any], data: st.DataObject) -> str:
    doc[data.draw(st.text(max_size=10).filter(lambda k: k not in FIELDS))] = data.draw(json_values)
    return "envelope-unknown-field"


def garble_time(doc: dict[str, Any], data: st.DataObject) -> str:
    name = data.draw(st.sampled_from(["created_at", "expires_at"]))
    good = doc[name]
    doc[name] = data.draw(
        st.sampled_from(
            [
                good[:10],
                good.replace("T", " "),
                good[:19],
                good[:-6] + good[-5:].replace(":", ""),
                good[:10] + "T25" + good[13:],
                good + "x",
            ]
        )
    )
    return "envelope-bad-time"


def shift_times(doc: dict[str, Any], data: st.DataObject) -> str:
    skew, ttl = LIMITS.max_clock_skew, LIMITS.max_ttl
    secs = data.draw(st.integers(1, 10**6))
    code, created, expires = data.draw(
        st.sampled_from(
            [
                (
                    "envelope-expired",
                    NOW - timedelta(seconds=2 * secs),
                    NOW - timedelta(seconds=secs),
                ),
                ("envelope-ttl-too-long", NOW, NOW + timedelta(seconds=ttl + secs)),
                (
                    "envelope-created-in-future",
                    NOW + timedelta(seconds=skew + secs),
                    NOW + timedelta(seconds=skew + 2 * secs),
                ),
                (
                    "envelope-time-order",
                    NOW + timedelta(seconds=skew),
                    NOW + timedelta(seconds=skew) - timedelta(seconds=min(secs, skew - 1)),
                ),
            ]
        )
    )
    doc["created_at"], doc["expires_at"] = format_time(created), format_time(expires)
    return code


def break_value(doc: dict[str, Any], data: st.DataObject) -> str:
    name, value, code = data.draw(
        st.sampled_from(
            [
                ("id", "not-an-id", "envelope-bad-id"),
                ("room", "Room!", "envelope-bad-room"),
                ("from", "", "envelope-bad-from"),
                ("to", [], "envelope-no-recipients"),
                ("to", [*doc["to"], doc["to"][0]], "envelope-duplicate-recipient"),
                ("to", [*doc["to"], "a.b"], "envelope-bad-recipient"),
                ("to", [f"a.b.{i}" for i in range(101)], "envelope-too-many-recipients"),
                ("headers", {"a b": "x"}, "envelope-bad-headers"),
                ("content_type", "text", "envelope-bad-content-type"),
                (
                    "payload_b64" if "payload_b64" in doc else "payload",
                    None,
                    "envelope-payload-conflict",
                ),
            ]
        )
    )
    if code == "envelope-payload-conflict":
        doc["payload" if name == "payload_b64" else "payload_b64"] = ""
    else:
        doc[name] = value
    return code


MUTATIONS: list[Mutation] = [
    drop_field,
    retype_field,
    add_unknown_field,
    garble_time,
    shift_times,
    break_value,
]


@MANY
@given(valid_documents(), st.sampled_from(MUTATIONS), st.data())
def test_valid_envelopes_parse_and_mutants_get_their_code(
    doc: dict[str, Any], mutate: Mutation, data: st.DataObject
) -> None:
    env = parse(encode(doc))
    assert (env.id, env.room, env.sender, env.to) == (
        doc["id"],
        doc["room"],
        doc["from"],
        tuple(doc["to"]),
    )
    assert json.loads(bodies.body(env, "bob"))["to"] == ["bob"]
    expected = mutate(doc, data)
    assert code_of(encode(doc)) == expected


# -------------------------------------------------------------- (c) the builder


@MANY
@given(
    room=names,
    sender=names,
    cards=st.lists(cards, min_size=1, max_size=5, unique=True),
    payload=json_values,
    raw=st.none() | st.binary(max_size=64),
    headers=headers,
    content_type=content_types,
    ttl=st.integers(1, LIMITS.max_ttl),
    offset=st.integers(-(10**6), 10**6),
)
def test_built_envelopes_parse(
    room: str,
    sender: str,
    cards: list[str],
    payload: Any,
    raw: bytes | None,
    headers: dict[str, str],
    content_type: str,
    ttl: int,
    offset: int,
) -> None:
    now = NOW + timedelta(milliseconds=offset)
    doc = build_envelope(
        room=room,
        sender=sender,
        cards=cards,
        headers=headers,
        content_type=content_type,
        ttl=ttl,
        now=now,
        **(
            {"payload": payload} if raw is None else {"payload_b64": base64.b64encode(raw).decode()}
        ),
    )
    env = parse_envelope(encode(doc), LIMITS, now=now)
    assert env.expires_at - env.created_at == timedelta(seconds=ttl)
    assert dict(env.headers) == headers
    if raw is None:
        assert env.payload == payload
    else:
        assert base64.b64decode(env.payload_b64 or "") == raw
