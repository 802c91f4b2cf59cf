"""The participant list: who may send, where each receives, in which rooms.

Every change bumps the sync version in the same transaction, so relays learn of a
suspension or revocation with the very version that records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dmr_appliance import ids
from dmr_appliance.errors import Conflict, InvalidRequest, NotFound
from dmr_appliance.home.store import Conn, Store
from dmr_appliance.timefmt import now, rfc3339

STATUSES = ("active", "suspended", "revoked")
MAX_ROOMS = 256


@dataclass(frozen=True)
class Participant:
    id: str
    endpoint: str
    rooms: tuple[str, ...]
    status: str
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "rooms": list(self.rooms),
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }


def validate_new(doc: Any) -> tuple[str, str, list[str]]:
    """(id, endpoint, rooms) of a create request, or a 422 naming the field."""
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(doc) - {"id", "endpoint", "rooms"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; allowed: id, endpoint, rooms")
    pid, endpoint, rooms = doc.get("id"), doc.get("endpoint"), doc.get("rooms")
    if not ids.is_participant_id(pid):
        raise InvalidRequest(f"id must be {ids.PARTICIPANT_ID_RULE}", code="invalid-participant-id")
    check_endpoint(endpoint)
    if not isinstance(rooms, list) or not 1 <= len(rooms) <= MAX_ROOMS:
        raise InvalidRequest(
            f"rooms must be a list of 1-{MAX_ROOMS} room names", code="invalid-rooms"
        )
    if not all(ids.is_room(room) for room in rooms):
        raise InvalidRequest(f"each room must be {ids.PARTICIPANT_ID_RULE}", code="invalid-rooms")
    return pid, endpoint, sorted(set(rooms))


def check_endpoint(endpoint: Any) -> None:
    """A 422 ``invalid-endpoint`` naming what is wrong, unless ``ids.ENDPOINT_RULE`` holds."""
    problem = ids.endpoint_problem(endpoint)
    if problem:
        raise InvalidRequest(
            problem, code="invalid-endpoint", field="endpoint", rule=ids.ENDPOINT_RULE
        )


def create(store: Store, pid: str, endpoint: str, rooms: list[str]) -> Participant:
    stamp = now()
    with store.write() as conn:
        try:
            conn.execute(
                "INSERT INTO participants (id, endpoint, status, created_at, updated_at)"
                " VALUES (?, ?, 'active', ?, ?)",
                (pid, endpoint, stamp, stamp),
            )
        except store.IntegrityError:
            raise Conflict(f"participant {pid!r} exists", code="participant-exists") from None
        conn.executemany(
            "INSERT INTO participant_rooms VALUES (?, ?)", [(pid, room) for room in rooms]
        )
        # Re-creating a deleted id is the admin's decision: its tombstone goes.
        conn.execute("DELETE FROM removed_participants WHERE id = ?", (pid,))
        store.bump(conn)
        return _get(conn, pid)


def get(store: Store, pid: str) -> Participant:
    with store.read() as conn:
        return _get(conn, pid)


def find(store: Store, pid: str) -> Participant | None:
    with store.read() as conn:
        return _find(conn, pid)


def listing(
    store: Store, *, status: str | None = None, room: str | None = None
) -> list[Participant]:
    query, args = "SELECT id FROM participants p WHERE 1 = 1", []
    if status:
        query += " AND status = ?"
        args.append(status)
    if room:
        query += (
            " AND EXISTS (SELECT 1 FROM participant_rooms r WHERE r.participant_id = p.id"
            " AND r.room = ?)"
        )
        args.append(room)
    with store.read() as conn:
        return [_get(conn, row[0]) for row in conn.execute(query + " ORDER BY id", args)]


def counts(store: Store) -> dict[str, int]:
    with store.read() as conn:
        rows = conn.execute("SELECT status, count(*) FROM participants GROUP BY status")
        found = dict(rows.fetchall())
    return {status: found.get(status, 0) for status in STATUSES}


# Allowed status changes: revocation is permanent.
_TRANSITIONS = {
    "suspend": ({"active", "suspended"}, "suspended"),
    "reinstate": ({"suspended", "active"}, "active"),
    "revoke": ({"active", "suspended", "revoked"}, "revoked"),
}


def change_status(store: Store, pid: str, action: str) -> Participant:
    allowed_from, target = _TRANSITIONS[action]
    with store.write() as conn:
        current = _get(conn, pid)
        if current.status not in allowed_from:
            raise Conflict(
                f"participant {pid!r} is {current.status}; it cannot be {action}d",
                code="participant-status",
            )
        if current.status != target:
            conn.execute(
                "UPDATE participants SET status = ?, updated_at = ? WHERE id = ?",
                (target, now(), pid),
            )
            store.bump(conn)
        return _get(conn, pid)


def delete(store: Store, pid: str, *, refuse_for: int) -> None:
    """Delete ``pid``; relays keep refusing it for ``refuse_for`` seconds (token lifetimes)."""
    with store.write() as conn:
        _get(conn, pid)
        conn.execute("DELETE FROM participants WHERE id = ?", (pid,))
        conn.execute(
            "INSERT INTO removed_participants VALUES (?, ?)"
            " ON CONFLICT (id) DO UPDATE SET until = excluded.until",
            (pid, now() + refuse_for),
        )
        store.bump(conn)


def _find(conn: Conn, pid: str) -> Participant | None:
    row = conn.execute("SELECT * FROM participants WHERE id = ?", (pid,)).fetchone()
    if row is None:
        return None
    rooms = conn.execute(
        "SELECT room FROM participant_rooms WHERE participant_id = ? ORDER BY room", (pid,)
    )
    return Participant(
        row["id"],
        row["endpoint"],
        tuple(r[0] for r in rooms),
        row["status"],
        row["created_at"],
        row["updated_at"],
    )


def _get(conn: Conn, pid: str) -> Participant:
    found = _find(conn, pid)
    if found is None:
        raise NotFound(f"no participant {pid!r}", code="participant-not-found")
    return found
