"""Failed messages as senders report them; one row per message id, attempts merged.

A sender may report the same message more than once (a retry of the report itself,
or a second router's attempts): the attempts are unioned, never duplicated.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

from dmr_appliance import ids
from dmr_appliance.errors import Conflict, EnvelopeError, InvalidRequest, NotFound
from dmr_appliance.home.store import Store
from dmr_appliance.timefmt import format_time, now, parse_time, rfc3339

FIELDS = {"message_id", "room", "from", "to", "attempts", "envelope", "reported_at"}
ATTEMPT_FIELDS = {"target", "at", "outcome", "status", "detail"}
OUTCOME = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_RECIPIENTS = 1000
MAX_ATTEMPTS = 100
MAX_TEXT = 1000


def validate(doc: Any) -> dict[str, Any]:
    """The report, checked and normalised (times in canonical RFC 3339)."""
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(doc) - FIELDS)
    missing = sorted(FIELDS - set(doc))
    if unknown or missing:
        raise InvalidRequest(f"unknown field {unknown[0]!r}" if unknown
                             else f"missing {missing[0]!r}")
    if not ids.is_message_id(doc["message_id"]):
        raise InvalidRequest("message_id must be a UUID or a ULID")
    if not ids.is_room(doc["room"]) or not ids.is_participant_id(doc["from"]):
        raise InvalidRequest("room and from must be a room name and a participant id")
    to = doc["to"]
    if not isinstance(to, list) or not 0 < len(to) <= MAX_RECIPIENTS \
            or not all(ids.is_participant_id(item) for item in to):
        raise InvalidRequest(f"to must list 1-{MAX_RECIPIENTS} participant ids")
    attempts = doc["attempts"]
    if not isinstance(attempts, list) or not 0 < len(attempts) <= MAX_ATTEMPTS:
        raise InvalidRequest(f"attempts must list 1-{MAX_ATTEMPTS} attempts")
    if not isinstance(doc["envelope"], dict):
        raise InvalidRequest("envelope must be the message envelope (an object, without cards)")
    return {**doc, "to": sorted(set(to)), "attempts": [_attempt(a) for a in attempts],
            "reported_at": _time(doc["reported_at"], "reported_at")}


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
    return {"target": target, "at": _time(item.get("at"), "attempt at"), "outcome": outcome,
            "status": status, "detail": detail}


def _time(value: Any, name: str) -> str:
    try:
        return format_time(parse_time(value))
    except (EnvelopeError, ValueError, TypeError):
        raise InvalidRequest(f"{name} must be an RFC 3339 date-time") from None


def report(store: Store, doc: dict[str, Any], reporter: str) -> tuple[dict[str, Any], bool]:
    """Record or merge a validated report; returns (failure, created)."""
    mid, stamp = doc["message_id"], now()
    with store.write() as conn:
        row = conn.execute("SELECT * FROM failures WHERE message_id = ?", (mid,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO failures (message_id, room, sender, recipients, envelope,"
                " reported_by, first_reported_at, last_reported_at, reports, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 'open')",
                (mid, doc["room"], doc["from"], json.dumps(doc["to"]),
                 json.dumps(doc["envelope"]), reporter, stamp, stamp))
        elif (row["room"], row["sender"]) != (doc["room"], doc["from"]):
            raise Conflict(f"message {mid} was reported with another room or sender",
                           code="failure-mismatch")
        else:
            recipients = sorted(set(json.loads(row["recipients"])) | set(doc["to"]))
            conn.execute("UPDATE failures SET recipients = ?, last_reported_at = ?,"
                         " reports = reports + 1 WHERE message_id = ?",
                         (json.dumps(recipients), stamp, mid))
        conn.executemany(
            "INSERT OR IGNORE INTO failure_attempts VALUES (?, ?, ?, ?, ?, ?)",
            [(mid, a["target"], a["at"], a["outcome"], a["status"], a["detail"])
             for a in doc["attempts"]])
        return _get(conn, mid), row is None


def get(store: Store, mid: str) -> dict[str, Any]:
    with store.read() as conn:
        return _get(conn, mid)


def listing(store: Store, *, status: str | None, room: str | None,
            sender: str | None, limit: int) -> list[dict[str, Any]]:
    query, args = "SELECT message_id FROM failures WHERE 1 = 1", []
    for column, value in (("status", status), ("room", room), ("sender", sender)):
        if value:
            query += f" AND {column} = ?"
            args.append(value)
    query += " ORDER BY last_reported_at DESC, message_id LIMIT ?"
    with store.read() as conn:
        mids = [row[0] for row in conn.execute(query, (*args, limit))]
        return [_get(conn, mid, with_envelope=False) for mid in mids]


def resolve(store: Store, mid: str, note: str, by: str) -> dict[str, Any]:
    with store.write() as conn:
        _get(conn, mid)
        conn.execute("UPDATE failures SET status = 'resolved', resolved_at = ?, resolved_by = ?,"
                     " note = ? WHERE message_id = ?", (now(), by, note, mid))
        return _get(conn, mid)


def open_count(store: Store) -> int:
    with store.read() as conn:
        return conn.execute("SELECT count(*) FROM failures WHERE status = 'open'").fetchone()[0]


def _get(conn: sqlite3.Connection, mid: str, *, with_envelope: bool = True) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM failures WHERE message_id = ?", (mid,)).fetchone()
    if row is None:
        raise NotFound(f"no failure report for message {mid!r}", code="failure-not-found")
    attempts = conn.execute("SELECT target, at, outcome, status, detail FROM failure_attempts"
                            " WHERE message_id = ? ORDER BY at, target", (mid,))
    doc = {
        "message_id": mid, "room": row["room"], "from": row["sender"],
        "to": json.loads(row["recipients"]), "status": row["status"],
        "attempts": [_present(a) for a in attempts],
        "reported_by": row["reported_by"], "reports": row["reports"],
        "first_reported_at": rfc3339(row["first_reported_at"]),
        "last_reported_at": rfc3339(row["last_reported_at"]),
        "resolved_at": rfc3339(row["resolved_at"]), "resolved_by": row["resolved_by"],
        "note": row["note"],
    }
    if with_envelope:
        doc["envelope"] = json.loads(row["envelope"])
    return doc


def _present(row: sqlite3.Row) -> dict[str, Any]:
    """The row's columns that have a value (optional attempt fields are left out)."""
    return {k: v for k, v in zip(row.keys(), tuple(row), strict=True) if v is not None}
