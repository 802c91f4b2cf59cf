"""Message envelope v1: parse and validate (the relay), build (a sender).

Pure: standard library only, no Falcon, no sockets. ``parse_envelope`` is on the
relay's hot path for every message, so it decodes the body once (``envelope_json``: size,
UTF-8, nesting depth without recursion, strict JSON) and validates every field in one pass.
Each broken rule raises ``EnvelopeError`` with its own stable ``code``; the error's
``extra`` names the offending ``field`` so the problem+json document shows it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NoReturn

from dmr_appliance import envelope_json, ids
from dmr_appliance.errors import EnvelopeError
from dmr_appliance.timefmt import format_time, parse_time

DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
MAX_CARD_CHARS = 8192
# A sender's signature (proof/signature.py): a detached compact JWS whose header carries
# the sender's certificate and the recipients' ids. Relays pass it on unread.
MAX_SIGNATURE_CHARS = 16384

# 422: valid JSON whose content breaks a v1 rule; 400 a document we will not read at all
# (envelope_json's, and no recipients).
SYNTAX = envelope_json.SYNTAX
SEMANTIC = 422

FIELDS = frozenset(
    {
        "id",
        "room",
        "from",
        "to",
        "created_at",
        "expires_at",
        "content_type",
        "payload",
        "payload_b64",
        "headers",
        "signature",
    }
)
REQUIRED = ("id", "room", "from", "to", "created_at", "expires_at", "content_type")

# RFC 9110 token, the charset of header names and media type parts.
_TCHAR = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_HEADER_NAME = re.compile(_TCHAR)
_CONTENT_TYPE = re.compile(
    rf'{_TCHAR}/{_TCHAR}(?:[ \t]*;[ \t]*{_TCHAR}=(?:{_TCHAR}|"(?:[\t !#-\[\]-~]|\\[\t -~])*"))*'
)
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_DETACHED_JWS = re.compile(r"[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+")
# Canonical padded base64 (RFC 4648 section 4): the bits a pad character hides must be zero.
_BASE64 = re.compile(
    r"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?"
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class EnvelopeLimits:
    """What the relay accepts; one default per limit (config.py overrides them)."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_recipients: int = 100
    max_headers: int = 32
    max_header_name: int = 64
    max_header_value: int = 1024
    max_ttl: int = 7 * 86400  # seconds from now to expires_at
    max_clock_skew: int = 300  # seconds created_at may lie in the future
    max_json_depth: int = 32  # arrays and objects, the envelope itself included
    max_content_type: int = 255


DEFAULT_LIMITS = EnvelopeLimits()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A validated v1 envelope. Times are timezone-aware UTC."""

    id: str
    room: str
    sender: str
    to: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    content_type: str
    payload: Any = None
    payload_b64: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    signature: str | None = None  # the sender's, passed on unread; None: unsigned


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


# ------------------------------------------------------------------------------ ids


def new_message_id(now: datetime | None = None) -> str:
    """A ULID: 48-bit Unix time in ms, then 80 random bits, in Crockford base32."""
    ms = (_utc(now) - _EPOCH) // timedelta(milliseconds=1)
    n = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(chars))


# ------------------------------------------------------------------------- decoding


def _fail(code: str, detail: str, *, status: int = SEMANTIC, **extra: Any) -> NoReturn:
    raise EnvelopeError(detail, code=code, status=status, **extra)


def _decode(body: bytes, limits: EnvelopeLimits) -> Any:
    return envelope_json.decode(
        body, max_bytes=limits.max_message_bytes, max_depth=limits.max_json_depth
    )


# ----------------------------------------------------------------------- validation


def _string(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        _fail("envelope-bad-type", f"{name!r} must be a string", field=name)
    return value


def _matching(doc: dict[str, Any], name: str, ok: Any, code: str, rule: str) -> str:
    value = _string(doc, name)
    if not ok(value):
        _fail(code, f"{name!r} must be {rule}", field=name)
    return value


def _fields(doc: Any) -> None:
    if not isinstance(doc, dict):
        _fail("envelope-not-object", "the envelope must be a JSON object")
    for name in doc:
        if name not in FIELDS:
            _fail(
                "envelope-unknown-field",
                f"unknown field {name[:64]!r}; allowed: {', '.join(sorted(FIELDS))}",
                field=name[:64],
            )
    for name in REQUIRED:
        if name not in doc:
            _fail("envelope-missing-field", f"required field {name!r} is missing", field=name)
    if ("payload" in doc) == ("payload_b64" in doc):
        _fail(
            "envelope-payload-conflict",
            "exactly one of 'payload' (JSON) and 'payload_b64' (base64 bytes) is required",
            field="payload",
        )


# How ``to`` is read: address cards (the relay), or participant ids (a sender's own copy).
RecipientRule = Callable[[dict[str, Any], "EnvelopeLimits"], tuple[str, ...]]


def _recipients(doc: dict[str, Any], limits: EnvelopeLimits) -> tuple[str, ...]:
    cards = doc["to"]
    if not isinstance(cards, list):
        _fail("envelope-bad-type", "'to' must be an array of address cards", field="to")
    if not cards:
        _fail("envelope-no-recipients", "'to' must name at least one recipient", field="to")
    if len(cards) > limits.max_recipients:
        _fail(
            "envelope-too-many-recipients",
            f"'to' has {len(cards)} recipients; at most {limits.max_recipients} are allowed",
            field="to",
            limit=limits.max_recipients,
        )
    seen: set[str] = set()
    for i, card in enumerate(cards):
        if not (
            isinstance(card, str) and len(card) <= MAX_CARD_CHARS and _COMPACT_JWS.fullmatch(card)
        ):
            _fail(
                "envelope-bad-recipient",
                f"'to[{i}]' must be an address card: a compact JWS of at most "
                f"{MAX_CARD_CHARS} characters",
                field="to",
            )
        if card in seen:
            _fail("envelope-duplicate-recipient", f"'to[{i}]' repeats a recipient", field="to")
        seen.add(card)
    return tuple(cards)


def _time(doc: dict[str, Any], name: str) -> datetime:
    try:
        return parse_time(_string(doc, name))
    except ValueError:
        _fail(
            "envelope-bad-time",
            f"{name!r} must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z",
            field=name,
        )


def _times(doc: dict[str, Any], limits: EnvelopeLimits, now: datetime) -> tuple[datetime, datetime]:
    created, expires = _time(doc, "created_at"), _time(doc, "expires_at")
    if created - now > timedelta(seconds=limits.max_clock_skew):
        _fail(
            "envelope-created-in-future",
            f"'created_at' is more than {limits.max_clock_skew} s ahead of the relay's clock",
            field="created_at",
        )
    if expires <= now:
        _fail(
            "envelope-expired",
            "'expires_at' has passed; an expired message is never delivered",
            field="expires_at",
        )
    if expires - now > timedelta(seconds=limits.max_ttl):
        _fail(
            "envelope-ttl-too-long",
            f"'expires_at' may be at most {limits.max_ttl} s from now",
            field="expires_at",
            limit=limits.max_ttl,
        )
    if expires <= created:
        _fail(
            "envelope-time-order",
            "'expires_at' must be later than 'created_at'",
            field="expires_at",
        )
    return created, expires


def _content_type(doc: dict[str, Any], limits: EnvelopeLimits) -> str:
    value = _string(doc, "content_type")
    if len(value) > limits.max_content_type or not _CONTENT_TYPE.fullmatch(value):
        _fail(
            "envelope-bad-content-type",
            f"'content_type' must be a media type (type/subtype[; name=value]) of at most "
            f"{limits.max_content_type} characters",
            field="content_type",
        )
    return value


def _headers(doc: dict[str, Any], limits: EnvelopeLimits) -> Mapping[str, str]:
    headers = doc.get("headers", {})
    if not isinstance(headers, dict):
        _fail("envelope-bad-type", "'headers' must be an object of strings", field="headers")
    if len(headers) > limits.max_headers:
        _fail(
            "envelope-bad-headers",
            f"'headers' may hold at most {limits.max_headers} entries",
            field="headers",
            limit=limits.max_headers,
        )
    folded: set[str] = set()
    for name, value in headers.items():
        if len(name) > limits.max_header_name or not _HEADER_NAME.fullmatch(name):
            _fail(
                "envelope-bad-headers",
                f"'headers' name {name[:64]!r} must be 1-{limits.max_header_name} token "
                "characters (letters, digits, !#$%&'*+.^_`|~-)",
                field="headers",
            )
        if name.lower() in folded:  # recipients may treat names as HTTP headers
            _fail(
                "envelope-bad-headers",
                f"'headers' name {name!r} repeats another (names are case-insensitive)",
                field="headers",
            )
        folded.add(name.lower())
        if not isinstance(value, str) or len(value) > limits.max_header_value:
            _fail(
                "envelope-bad-headers",
                f"'headers' value of {name!r} must be a string of at most "
                f"{limits.max_header_value} characters",
                field="headers",
            )
    return MappingProxyType(headers)  # a read-only view of the decoded dict, no copy


def _payload_b64(doc: dict[str, Any]) -> str | None:
    if "payload_b64" not in doc:
        return None
    value = _string(doc, "payload_b64")
    if len(value) % 4 or not _BASE64.fullmatch(value):
        _fail(
            "envelope-bad-base64",
            "'payload_b64' must be canonical padded base64 (RFC 4648 section 4)",
            field="payload_b64",
        )
    return value


def _signature(doc: dict[str, Any]) -> str | None:
    if "signature" not in doc:
        return None
    value = _string(doc, "signature")
    if len(value) > MAX_SIGNATURE_CHARS or not _DETACHED_JWS.fullmatch(value):
        _fail(
            "envelope-bad-signature",
            "'signature' must be a detached compact JWS (header..signature) of at most "
            f"{MAX_SIGNATURE_CHARS} characters",
            field="signature",
        )
    return value


def _validate(
    doc: Any, limits: EnvelopeLimits, now: datetime, recipients: RecipientRule = _recipients
) -> Envelope:
    _fields(doc)
    message_id = _matching(doc, "id", ids.is_message_id, "envelope-bad-id", "a UUID or a ULID")
    room = _matching(doc, "room", ids.is_room, "envelope-bad-room", ids.PARTICIPANT_ID_RULE)
    sender = _matching(
        doc, "from", ids.is_participant_id, "envelope-bad-from", ids.PARTICIPANT_ID_RULE
    )
    to = recipients(doc, limits)
    created, expires = _times(doc, limits, now)
    content_type = _content_type(doc, limits)
    headers = _headers(doc, limits)
    payload_b64 = _payload_b64(doc)
    signature = _signature(doc)
    return Envelope(
        id=message_id,
        room=room,
        sender=sender,
        to=to,
        created_at=created,
        expires_at=expires,
        content_type=content_type,
        payload=doc.get("payload"),
        payload_b64=payload_b64,
        headers=headers,
        signature=signature,
    )


def parse_envelope(
    body: bytes, limits: EnvelopeLimits = DEFAULT_LIMITS, *, now: datetime | None = None
) -> Envelope:
    """Decode and validate a v1 envelope; raises only ``EnvelopeError``.

    ``now`` (aware) is the relay's clock, injectable for tests.
    """
    return _validate(_decode(body, limits), limits, _utc(now))


# ------------------------------------------------------------------------- building


def _participants(to: Sequence[str] | str) -> list[str]:
    """The recipients a sender names: participant ids, each once, in the order given."""
    recipients = list(dict.fromkeys([to] if isinstance(to, str) else to))
    if not recipients:
        _fail("envelope-no-recipients", "name at least one recipient", status=SYNTAX)
    for pid in recipients:
        if not ids.is_participant_id(pid):
            _fail(
                "envelope-bad-recipient",
                f"recipient {pid!r} is not a participant id ({ids.PARTICIPANT_ID_RULE})",
                status=SYNTAX,
            )
    return recipients


def _assemble(
    to: list[str],
    created: datetime,
    *,
    room: str,
    sender: str,
    payload: Any = None,
    payload_b64: str | None = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    ttl: int = 300,
    message_id: str | None = None,
) -> dict[str, Any]:
    if payload is not None and payload_b64 is not None:
        _fail(
            "envelope-payload-conflict",
            "pass either payload or payload_b64, not both",
            field="payload",
        )
    doc: dict[str, Any] = {
        "id": message_id if message_id is not None else new_message_id(created),
        "room": room,
        "from": sender,
        "to": to,
        "created_at": format_time(created),
        "expires_at": format_time(created + timedelta(seconds=ttl)),
        "content_type": content_type,
        "headers": dict(headers or {}),
    }
    if payload_b64 is not None:
        doc["payload_b64"] = payload_b64
    else:
        doc["payload"] = payload
    return doc


def _checked(
    to: list[str], rule: RecipientRule, now: datetime | None, fields: dict[str, Any]
) -> dict[str, Any]:
    """The document, checked as the relay would take it (``to`` by ``rule``): a bad
    argument fails in the sender's process with the ``EnvelopeError`` the relay would
    answer."""
    created = _utc(now)
    doc = _assemble(to, created, **fields)
    try:
        body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        _fail("envelope-bad-type", f"payload is not JSON-serialisable: {exc}", field="payload")
    _validate(_decode(body, DEFAULT_LIMITS), DEFAULT_LIMITS, created, rule)
    return doc


def _given_ids(doc: dict[str, Any], limits: EnvelopeLimits) -> tuple[str, ...]:
    return tuple(doc["to"])  # checked by _participants before


def sender_envelope(
    *,
    room: str,
    sender: str,
    to: Sequence[str] | str,
    payload: Any = None,
    payload_b64: str | None = None,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    ttl: int = 300,
    message_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A message as its sender keeps it across tries: ``to`` holds the recipients'
    participant ids (each once; what a failure report carries too), every other field
    checked as the relay checks it. Each try posts ``with_cards(doc, cards)``.

    ``payload_b64`` wins over ``payload`` when given (passing both is an error).
    """
    return _checked(
        _participants(to),
        _given_ids,
        now,
        {
            "room": room,
            "sender": sender,
            "payload": payload,
            "payload_b64": payload_b64,
            "content_type": content_type,
            "headers": headers,
            "ttl": ttl,
            "message_id": message_id,
        },
    )


def with_cards(doc: Mapping[str, Any], cards: Sequence[str]) -> dict[str, Any]:
    """What one try posts to ``/v1/messages``: the sender's envelope addressed by the
    cards of the recipients it carries (the relay reads recipients from cards only)."""
    return {**doc, "to": list(cards)}


def build_envelope(
    *, cards: Sequence[str], now: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    """The document posted to ``/v1/messages`` in one step, for a caller that holds the
    recipients' address cards already (tools, tests): the other fields as in
    ``sender_envelope``, and checked as the relay checks them, cards included."""
    return _checked(list(cards), _recipients, now, fields)
