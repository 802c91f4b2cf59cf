"""Failed messages as senders report them; one row per (sender, message id), attempts merged.

A sender may report the same message more than once (a retry of the report itself,
or a second router's attempts): the attempts are unioned, never duplicated. A report
belongs to its sender: another participant's report of the same id is its own row, so
it can neither block nor hide this one. A participant reports only in its rooms, to
recipients of that room, within its share (``FailureLimits``: open reports, envelope size).
"""

from __future__ import annotations

import json
import re
from typing import Any

from dmr_appliance import ids
from dmr_appliance.config import FailureLimits
from dmr_appliance.errors import (
    AuthError,
    Conflict,
    DmrError,
    EnvelopeError,
    InvalidRequest,
    NotFound,
)
from dmr_appliance.home.store import Conn, Row, Store
from dmr_appliance.timefmt import format_time, now, parse_time, rfc3339

FIELDS = {"message_id", "room", "from", "to", "attempts", "envelope", "reported_at"}
ATTEMPT_FIELDS = {"target", "at", "outcome", "status", "detail"}
OUTCOME = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_RECIPIENTS = 1000
MAX_ATTEMPTS = 100
MAX_TEXT = 1000

Key = tuple[str, str]  # (sender, message_id)


def validate(doc: Any) -> dict[str, Any]:
    """The report, checked and normalised (times in canonical RFC 3339)."""
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(doc) - FIELDS)
    missing = sorted(FIELDS - set(doc))
    if unknown or missing:
        raise InvalidRequest(
            f"unknown field {unknown[0]!r}" if unknown else f"missing {missing[0]!r}"
        )
    if not ids.is_message_id(doc["message_id"]):
        raise InvalidRequest("message_id must be a UUID or a ULID")
    if not ids.is_room(doc["room"]) or not ids.is_participant_id(doc["from"]):
        raise InvalidRequest("room and from must be a room name and a participant id")
    to = doc["to"]
    if (
        not isinstance(to, list)
        or not 0 < len(to) <= MAX_RECIPIENTS
        or not all(ids.is_participant_id(item) for item in to)
    ):
        raise InvalidRequest(f"to must list 1-{MAX_RECIPIENTS} participant ids")
    attempts = doc["attempts"]
    if not isinstance(attempts, list) or not 0 < len(attempts) <= MAX_ATTEMPTS:
        raise InvalidRequest(f"attempts must list 1-{MAX_ATTEMPTS} attempts")
    if not isinstance(doc["envelope"], dict):
        raise InvalidRequest("envelope must be the message envelope (an object, without cards)")
    return {
        **doc,
        "to": sorted(set(to)),
        "attempts": [_attempt(a) for a in attempts],
        "reported_at": _time(doc["reported_at"], "reported_at"),
    }


def _attempt(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or set(item) - ATTEMPT_FIELDS:
        raise InvalidRequest(f"an attempt is an object with {', '.join(sorted(ATTEMPT_FIELDS))}")
    target, outcome = item.get("target"), item.get("outcome")
    if not isinstance(target, str) or not 0 < len(target) <= MAX_TEXT:
        raise InvalidRequest("attempt target must be a non-empty string")
    if not isinstance(outcome, str) or not OUTCOME.fullmatch(outcome):
        raise InvalidRequest("attempt outcome must be a lowercase slug, e.g. failed, rejected")
    status, detail = item.get("status"), item.get("detail")
    if status is not None and (type(status) is not int or not 100 <= status <= 599):
        raise InvalidRequest("attempt status must be an HTTP status code")
    if detail is not None and (not isinstance(detail, str) or len(detail) > MAX_TEXT):
        raise InvalidRequest(f"attempt detail must be a string of at most {MAX_TEXT} characters")
    return {
        "target": target,
        "at": _time(item.get("at"), "attempt at"),
        "outcome": outcome,
        "status": status,
        "detail": detail,
    }


def _time(value: Any, name: str) -> str:
    try:
        return format_time(parse_time(value))
    except (EnvelopeError, ValueError, TypeError):
        raise InvalidRequest(f"{name} must be an RFC 3339 date-time") from None


def report(
    store: Store, doc: dict[str, Any], reporter: str, share: FailureLimits | None = None
) -> tuple[dict[str, Any], bool]:
    """Record or merge a validated report; returns (failure, created). ``share``: the
    reporter is a participant, held to its rooms and its share of home."""
    key, stamp = (doc["from"], doc["message_id"]), now()
    envelope = json.dumps(doc["envelope"], separators=(",", ":"))
    if share is not None and len(envelope.encode()) > share.max_envelope_bytes:
        raise DmrError(
            f"the envelope is {len(envelope.encode())} bytes; a failure report "
            f"carries at most {share.max_envelope_bytes}",
            code="failure-too-large",
            status=413,
            title="Failure report too large",
            limit=share.max_envelope_bytes,
        )
    with store.write() as conn:
        if share is not None:
            _check_rooms(conn, doc)
        row = conn.execute(
            "SELECT * FROM failures WHERE sender = ? AND message_id = ?", key
        ).fetchone()
        if row is None:
            if share is not None:
                _check_quota(conn, doc["from"], share, len(envelope.encode()))
            conn.execute(
                "INSERT INTO failures (sender, message_id, room, recipients, envelope,"
                " reported_by, first_reported_at, last_reported_at, reports, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 'open')",
                (*key, doc["room"], json.dumps(doc["to"]), envelope, reporter, stamp, stamp),
            )
        elif row["room"] != doc["room"]:
            raise Conflict(
                f"message {key[1]} of {key[0]} was reported with another room",
                code="failure-mismatch",
            )
        else:
            recipients = sorted(set(json.loads(row["recipients"])) | set(doc["to"]))
            conn.execute(
                "UPDATE failures SET recipients = ?, last_reported_at = ?,"
                " reports = reports + 1 WHERE sender = ? AND message_id = ?",
                (json.dumps(recipients), stamp, *key),
            )
        _add_attempts(conn, key, doc["attempts"])
        return _get(conn, key), row is None


def _check_rooms(conn: Conn, doc: dict[str, Any]) -> None:
    """A participant reports only in a room it is in, to recipients of that room (the same
    answer whether an outsider exists or not: it learns nothing of other rooms)."""
    members = {
        r[0]
        for r in conn.execute(
            "SELECT participant_id FROM participant_rooms WHERE room = ?", (doc["room"],)
        )
    }
    if doc["from"] not in members:
        raise AuthError(
            f"{doc['from']} is not a member of room {doc['room']!r}", code="not-in-room"
        )
    outside = sorted(set(doc["to"]) - members)
    if outside:
        raise AuthError(
            f"recipient {outside[0]!r} is not in room {doc['room']!r}", code="recipient-not-in-room"
        )


def _check_quota(conn: Conn, sender: str, share: FailureLimits, size: int) -> None:
    """Within the sender's share: its open reports, counted and in envelope bytes."""
    held, held_bytes = conn.execute(
        "SELECT count(*), coalesce(sum(length(CAST(envelope AS BLOB))), 0) FROM failures"
        " WHERE sender = ? AND status = 'open'",
        (sender,),
    ).fetchone()
    if held >= share.max_open or held_bytes + size > share.max_open_bytes:
        raise DmrError(
            f"{sender} already has {held} open failure reports of {held_bytes}"
            f" bytes (at most {share.max_open}, {share.max_open_bytes} bytes):"
            " re-send or resolve some first",
            code="failure-quota",
            status=429,
            title="Too many open failure reports",
            limit=share.max_open,
            limit_bytes=share.max_open_bytes,
        )


def _add_attempts(conn: Conn, key: Key, attempts: list[dict[str, Any]]) -> None:
    """Union the attempts, keeping the newest MAX_ATTEMPTS: repeated reports of one message
    cannot grow its row without bound."""
    conn.executemany(
        "INSERT INTO failure_attempts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [(*key, a["target"], a["at"], a["outcome"], a["status"], a["detail"]) for a in attempts],
    )
    conn.execute(
        "DELETE FROM failure_attempts WHERE sender = ? AND message_id = ?"
        " AND (target, at, outcome) NOT IN (SELECT target, at, outcome FROM failure_attempts"
        " WHERE sender = ? AND message_id = ? ORDER BY at DESC, target, outcome LIMIT ?)",
        (*key, *key, MAX_ATTEMPTS),
    )


def get(store: Store, mid: str, sender: str | None = None) -> dict[str, Any]:
    """The report of ``sender``'s message ``mid``; without a sender, the only report of that
    id (409 ``failure-ambiguous`` when several senders reported it)."""
    with store.read() as conn:
        return _get(conn, _key(conn, mid, sender))


def listing(
    store: Store,
    *,
    status: str | None,
    room: str | None,
    sender: str | None,
    limit: int,
    per_sender: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``per_sender``: at most that many of each sender, so no sender's
    reports push another's out of the list."""
    where, args = _where(status=status, room=room, sender=sender)
    query = (
        "WITH ranked AS (SELECT sender, message_id, last_reported_at, ROW_NUMBER() OVER"
        " (PARTITION BY sender ORDER BY last_reported_at DESC, message_id) AS n"
        " FROM failures WHERE 1 = 1"
    )
    query += where
    query += ") SELECT sender, message_id FROM ranked WHERE n <= ?"
    query += " ORDER BY last_reported_at DESC, message_id, sender LIMIT ?"
    args.append(per_sender or limit)
    with store.read() as conn:
        keys = [(row[0], row[1]) for row in conn.execute(query, (*args, limit))]
        return [_get(conn, key, with_envelope=False) for key in keys]


def counts(
    store: Store, *, room: str | None = None, sender: str | None = None
) -> list[dict[str, Any]]:
    """Open and resolved reports per sender, most open first."""
    where, args = _where(room=room, sender=sender)
    query = (
        "SELECT sender, count(CASE WHEN status = 'open' THEN 1 END),"
        " count(CASE WHEN status = 'resolved' THEN 1 END) FROM failures WHERE 1 = 1"
    )
    query += where
    query += " GROUP BY sender ORDER BY 2 DESC, sender"
    with store.read() as conn:
        return [{"from": s, "open": o, "resolved": r} for s, o, r in conn.execute(query, args)]


def resolve(
    store: Store, mid: str, note: str, by: str, sender: str | None = None
) -> dict[str, Any]:
    with store.write() as conn:
        key = _key(conn, mid, sender)
        conn.execute(
            "UPDATE failures SET status = 'resolved', resolved_at = ?, resolved_by = ?,"
            " note = ? WHERE sender = ? AND message_id = ?",
            (now(), by, note, *key),
        )
        return _get(conn, key)


def open_count(store: Store) -> int:
    with store.read() as conn:
        return conn.execute("SELECT count(*) FROM failures WHERE status = 'open'").fetchone()[0]


def _where(**filters: str | None) -> tuple[str, list[Any]]:
    """`` AND column = ?`` per filter given; the columns are the keyword names above,
    never text from the request."""
    given = {column: value for column, value in filters.items() if value}
    return "".join(f" AND {column} = ?" for column in given), list(given.values())


def _key(conn: Conn, mid: str, sender: str | None) -> Key:
    if sender is not None:
        return sender, mid
    senders = [
        r[0]
        for r in conn.execute(
            "SELECT sender FROM failures WHERE message_id = ? ORDER BY sender", (mid,)
        )
    ]
    if len(senders) > 1:
        raise Conflict(
            f"message id {mid} was reported by {len(senders)} senders: name one with ?from=",
            code="failure-ambiguous",
            senders=senders,
        )
    return (senders[0] if senders else ""), mid


def _get(conn: Conn, key: Key, *, with_envelope: bool = True) -> dict[str, Any]:
    mid = key[1]
    row = conn.execute("SELECT * FROM failures WHERE sender = ? AND message_id = ?", key).fetchone()
    if row is None:
        raise NotFound(f"no failure report for message {mid!r}", code="failure-not-found")
    attempts = conn.execute(
        "SELECT target, at, outcome, status, detail FROM failure_attempts"
        " WHERE sender = ? AND message_id = ? ORDER BY at, target",
        key,
    )
    doc = {
        "message_id": mid,
        "room": row["room"],
        "from": row["sender"],
        "to": json.loads(row["recipients"]),
        "status": row["status"],
        "attempts": [_present(a) for a in attempts],
        "reported_by": row["reported_by"],
        "reports": row["reports"],
        "first_reported_at": rfc3339(row["first_reported_at"]),
        "last_reported_at": rfc3339(row["last_reported_at"]),
        "resolved_at": rfc3339(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
        "note": row["note"],
    }
    if with_envelope:
        doc["envelope"] = json.loads(row["envelope"])
    return doc


def _present(row: Row) -> dict[str, Any]:
    """The row's columns that have a value (optional attempt fields are left out)."""
    return {k: v for k, v in zip(row.keys(), tuple(row), strict=True) if v is not None}
