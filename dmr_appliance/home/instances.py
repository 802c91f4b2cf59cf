"""Relay instances as their heartbeats describe them: healthy, stale or down by age, or
left: a relay stopping cleanly sends a last beat with ``"leaving": true`` (a rollout, a
planned stop), so that only a relay that went silent counts as down and alerts.

Bounded: one relay certificate beats under at most ``heartbeats.max_per_certificate``
names, and an instance silent for ``heartbeats.forget_after`` is forgotten (no longer
listed, counted in the metrics the alerts read, or kept), so names a key holder makes up,
or pods long gone, do not pile up or keep an alert firing for longer than that.
"""

from __future__ import annotations

import json
import time
from typing import Any

from dmr_appliance import ids
from dmr_appliance.config import Heartbeats
from dmr_appliance.errors import AuthError, Conflict, InvalidRequest, NotFound
from dmr_appliance.home import traffic
from dmr_appliance.home.store import Conn, Store
from dmr_appliance.timefmt import rfc3339

HEALTH = ("healthy", "stale", "down", "left")
MAX_COUNTERS = 64
MAX_TEXT = 256
MAX_AGE = 10**9  # seconds


def validate_beat(doc: Any, caller: str) -> dict[str, Any]:
    """The heartbeat body, checked; its instance must be the relay certificate's CN, or a
    member of that pool: ``CN.<member>`` (replicas sharing one certificate, e.g. the pods of
    a Kubernetes Deployment, each beat under their own name)."""
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(
        set(doc)
        - {"instance", "address", "version", "sync_version", "counters", "sync_age", "leaving"}
    )
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}")
    instance = doc.get("instance")
    if not ids.is_participant_id(instance):
        raise InvalidRequest(f"instance must be {ids.PARTICIPANT_ID_RULE}")
    if instance != caller and not instance.startswith(caller + "."):
        raise AuthError(
            f"a relay certificate for {caller!r} cannot beat for {instance!r}",
            code="instance-mismatch",
        )
    for name in ("address", "version"):
        if not isinstance(doc.get(name), str) or not 0 < len(doc[name]) <= MAX_TEXT:
            raise InvalidRequest(f"{name} must be a string of 1-{MAX_TEXT} characters")
    sync_version = doc.get("sync_version")
    if not _is_count(sync_version):
        raise InvalidRequest("sync_version must be an integer >= 0")
    counters = doc.get("counters", {})
    if not isinstance(counters, dict) or len(counters) > MAX_COUNTERS:
        raise InvalidRequest(f"counters must be an object of at most {MAX_COUNTERS} entries")
    if not all(isinstance(k, str) and len(k) <= 64 and _is_count(v) for k, v in counters.items()):
        raise InvalidRequest("counters maps names (<= 64 characters) to integers >= 0")
    sync_age = doc.get("sync_age")
    if sync_age is not None and (
        not isinstance(sync_age, int | float)
        or isinstance(sync_age, bool)
        or not 0 <= sync_age < MAX_AGE
    ):
        raise InvalidRequest(
            "sync_age must be seconds since home last confirmed the relay's "
            "sync document (a number >= 0)"
        )
    leaving = doc.get("leaving", False)
    if not isinstance(leaving, bool):
        raise InvalidRequest(
            "leaving must be a boolean (true: the relay's last beat, it is stopping cleanly)"
        )
    return {**doc, "counters": counters, "sync_age": sync_age, "leaving": leaving}


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def record(store: Store, beat: dict[str, Any], caller: str, rules: Heartbeats) -> int:
    """Store the beat of ``caller``'s certificate; returns the current sync version (it
    tells a relay it is behind). A leaving beat marks the instance left, the next normal
    one (a restart) clears it; one of an instance home does not know is ignored."""
    stamp = time.time()
    with store.write() as conn:
        silent = conn.execute(
            "SELECT id FROM instances WHERE last_beat < ?", (stamp - rules.forget_after,)
        )
        _delete(conn, [row[0] for row in silent])
        known = conn.execute("SELECT 1 FROM instances WHERE id = ?", (beat["instance"],))
        first = known.fetchone() is None
        if first and beat["leaving"]:  # nothing to mark left: no name made up this way
            return store.version(conn)
        if first:
            _make_room(conn, caller, stamp, rules)
        conn.execute(
            "INSERT INTO instances (id, address, version, sync_version, counters, first_seen,"
            " last_beat, sync_age, left_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE"
            " SET address = excluded.address, version = excluded.version,"
            " sync_version = excluded.sync_version, counters = excluded.counters,"
            " last_beat = excluded.last_beat, sync_age = excluded.sync_age,"
            " left_at = excluded.left_at",
            (
                beat["instance"],
                beat["address"],
                beat["version"],
                beat["sync_version"],
                json.dumps(beat["counters"], sort_keys=True),
                stamp,
                stamp,
                beat["sync_age"],
                stamp if beat["leaving"] else None,
            ),
        )
        traffic.record(conn, beat["instance"], beat["counters"], stamp, first=first)
        return store.version(conn)


def _make_room(conn: Conn, caller: str, stamp: float, rules: Heartbeats) -> None:
    """Room for a new name of ``caller``'s certificate: under the bound, or in the place of
    one of its instances that left (longest ago first), else of the one silent longest if
    that one is down (a pod replaced by a rollout)."""
    rows = conn.execute(
        "SELECT id, last_beat, left_at FROM instances WHERE id = ? OR (id > ? AND id < ?)"
        " ORDER BY left_at IS NULL, last_beat",
        (caller, caller + ".", caller + "/"),
    ).fetchall()
    if len(rows) < rules.max_per_certificate:
        return
    if rows[0]["left_at"] is None and stamp - rows[0]["last_beat"] < rules.down_after:
        raise Conflict(
            f"the certificate {caller!r} already beats as {len(rows)} instances, its most "
            f"(heartbeats.max_per_certificate); one is replaced once down or left, or an "
            f"admin forgets one: dmr instances forget NAME",
            code="instance-limit",
        )
    _delete(conn, [rows[0]["id"]])


def forget(store: Store, name: str) -> None:
    """Drop an instance and its traffic (it comes back if it beats again)."""
    with store.write() as conn:
        if not conn.execute("SELECT 1 FROM instances WHERE id = ?", (name,)).fetchone():
            raise NotFound(f"no instance {name!r}", code="instance-not-found")
        _delete(conn, [name])


def _delete(conn: Conn, names: list[str]) -> None:
    conn.executemany("DELETE FROM instances WHERE id = ?", [(n,) for n in names])
    conn.executemany("DELETE FROM traffic WHERE instance = ?", [(n,) for n in names])


def health(age: float, thresholds: Heartbeats, *, left: bool = False) -> str:
    """By the age of the last beat, unless that beat was the instance's leaving one."""
    if left:
        return "left"
    if age >= thresholds.down_after:
        return "down"
    return "stale" if age >= thresholds.stale_after else "healthy"


def listing(store: Store, thresholds: Heartbeats) -> list[dict[str, Any]]:
    current = time.time()
    with store.read() as conn:
        rows = conn.execute(
            "SELECT * FROM instances WHERE last_beat >= ? ORDER BY id",
            (current - thresholds.forget_after,),
        ).fetchall()
    result = []
    for row in rows:
        age = max(0.0, current - row["last_beat"])
        state = health(age, thresholds, left=row["left_at"] is not None)
        result.append(
            {
                "instance": row["id"],
                "address": row["address"],
                "version": row["version"],
                "sync_version": row["sync_version"],
                "counters": json.loads(row["counters"]),
                "first_seen": rfc3339(row["first_seen"]),
                "last_beat": rfc3339(row["last_beat"]),
                "age_seconds": round(age, 1),
                "health": state,
                "sync_age": row["sync_age"],
            }
        )
    return result


def counts(store: Store, thresholds: Heartbeats) -> dict[str, int]:
    found = {state: 0 for state in HEALTH}
    for item in listing(store, thresholds):
        found[item["health"]] += 1
    return found
