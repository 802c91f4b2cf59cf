"""Rooms and their policy (issue 26): a room marked ``signed`` admits only signed messages.

A room is known when a participant holds it or it has a policy (a room needs no members
to be marked). The policy reaches relays inside access tokens (the ``signed`` claim, set
by credentials.py when it issues one), never through the sync document: a change applies
to tokens issued after it, and a token keeps the policy it was issued with until it
expires. So a change does not bump the sync version: the document would not change, and
a bump would only make every relay fetch it again and drop its verdict caches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dmr_appliance import ids
from dmr_appliance.errors import InvalidRequest, NotFound
from dmr_appliance.home.store import Conn, Row, Store
from dmr_appliance.timefmt import now, rfc3339

POLICY_FIELDS = ("signed",)

# Every known room: those participants hold and those with a policy, with both facts.
_ROOMS = """
    SELECT r.room, coalesce(p.signed, 0) AS signed, p.updated_at,
        (SELECT count(*) FROM participant_rooms m WHERE m.room = r.room) AS members
    FROM (SELECT room FROM participant_rooms UNION SELECT room FROM room_policies) r
    LEFT JOIN room_policies p ON p.room = r.room
"""


@dataclass(frozen=True)
class Room:
    room: str
    signed: bool
    members: int  # participants holding the room, whatever their status
    updated_at: int | None  # when its policy last changed; None: never set

    def to_json(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "signed": self.signed,
            "members": self.members,
            "updated_at": None if self.updated_at is None else rfc3339(self.updated_at),
        }


def check_room(room: Any) -> str:
    """``room`` if it is a room name, else a 422 ``invalid-room``."""
    if not ids.is_room(room):
        raise InvalidRequest(
            f"a room name must be {ids.PARTICIPANT_ID_RULE}", code="invalid-room", field="room"
        )
    return room


def validate_policy(doc: Any) -> bool:
    """The ``signed`` flag of a ``PUT /v1/rooms/{room}`` body, or a 422 naming the field."""
    if not isinstance(doc, dict):
        raise InvalidRequest('the body must be a JSON object: {"signed": true|false}')
    unknown = sorted(set(doc) - set(POLICY_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}; allowed: {', '.join(POLICY_FIELDS)}", field=unknown[0]
        )
    signed = doc.get("signed")
    if not isinstance(signed, bool):  # 1, "true", null are not booleans
        raise InvalidRequest("signed must be true or false", field="signed")
    return signed


def set_signed(store: Store, room: str, signed: bool) -> Room:
    """Mark ``room`` signed or not (idempotent: an unchanged flag keeps its ``updated_at``)."""
    with store.write() as conn:
        conn.execute(
            "INSERT INTO room_policies (room, signed, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (room) DO UPDATE SET signed = excluded.signed,"
            " updated_at = excluded.updated_at WHERE room_policies.signed != excluded.signed",
            (room, int(signed), now()),
        )
        return _get(conn, room)


def get(store: Store, room: str) -> Room:
    with store.read() as conn:
        return _get(conn, room)


def listing(store: Store) -> list[Room]:
    with store.read() as conn:
        return [_room(row) for row in conn.execute(_ROOMS + " ORDER BY r.room")]


def signed_among(conn: Conn, rooms: Iterable[str]) -> list[str]:
    """Which of ``rooms`` are signed, sorted: the ``signed`` claim of a token for them."""
    # Signed rooms are few: all of them, intersected here (no SQL built from a list).
    rows = conn.execute("SELECT room FROM room_policies WHERE signed = 1")
    return sorted({row[0] for row in rows} & set(rooms))


def _get(conn: Conn, room: str) -> Room:
    row = conn.execute(_ROOMS + " WHERE r.room = ?", (room,)).fetchone()
    if row is None:
        raise NotFound(
            f"no room {room!r}: no participant holds it and it has no policy",
            code="room-not-found",
        )
    return _room(row)


def _room(row: Row) -> Room:
    return Room(row["room"], bool(row["signed"]), row["members"], row["updated_at"])
