"""Relay instances as their heartbeats describe them: healthy, stale or down by age."""

from __future__ import annotations

import json
import time
from typing import Any

from dmr_appliance import ids
from dmr_appliance.config import Heartbeats
from dmr_appliance.errors import AuthError, InvalidRequest
from dmr_appliance.home import traffic
from dmr_appliance.home.store import Store
from dmr_appliance.timefmt import rfc3339

HEALTH = ("healthy", "stale", "down")
MAX_COUNTERS = 64
MAX_TEXT = 256
MAX_AGE = 10**9  # seconds


def validate_beat(doc: Any, caller: str) -> dict[str, Any]:
    """The heartbeat body, checked; its instance must be the relay certificate's CN, or a
    member of that pool: ``CN.<member>`` (replicas sharing one certificate, e.g. the pods of
    a Kubernetes Deployment, each beat under their own name)."""
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(doc) - {"instance", "address", "version", "sync_version", "counters",
                                 "sync_age"})
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}")
    instance = doc.get("instance")
    if not ids.is_participant_id(instance):
        raise InvalidRequest(f"instance must be {ids.PARTICIPANT_ID_RULE}")
    if instance != caller and not instance.startswith(caller + "."):
        raise AuthError(f"a relay certificate for {caller!r} cannot beat for {instance!r}",
                        code="instance-mismatch")
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
    if sync_age is not None and (not isinstance(sync_age, int | float) or isinstance(
            sync_age, bool) or not 0 <= sync_age < MAX_AGE):
        raise InvalidRequest("sync_age must be seconds since home last confirmed the relay's "
                             "sync document (a number >= 0)")
    return {**doc, "counters": counters, "sync_age": sync_age}


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def record(store: Store, beat: dict[str, Any]) -> int:
    """Store the beat; returns the current sync version (it tells a relay it is behind)."""
    stamp = time.time()
    with store.write() as conn:
        known = conn.execute("SELECT 1 FROM instances WHERE id = ?", (beat["instance"],))
        first = known.fetchone() is None
        conn.execute(
            "INSERT INTO instances (id, address, version, sync_version, counters, first_seen,"
            " last_beat, sync_age) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
            " SET address = excluded.address, version = excluded.version,"
            " sync_version = excluded.sync_version, counters = excluded.counters,"
            " last_beat = excluded.last_beat, sync_age = excluded.sync_age",
            (beat["instance"], beat["address"], beat["version"], beat["sync_version"],
             json.dumps(beat["counters"], sort_keys=True), stamp, stamp, beat["sync_age"]))
        traffic.record(conn, beat["instance"], beat["counters"], stamp, first=first)
        return store.version(conn)


def health(age: float, thresholds: Heartbeats) -> str:
    if age >= thresholds.down_after:
        return "down"
    return "stale" if age >= thresholds.stale_after else "healthy"


def listing(store: Store, thresholds: Heartbeats) -> list[dict[str, Any]]:
    current = time.time()
    with store.read() as conn:
        rows = conn.execute("SELECT * FROM instances ORDER BY id").fetchall()
    result = []
    for row in rows:
        age = max(0.0, current - row["last_beat"])
        result.append({
            "instance": row["id"], "address": row["address"], "version": row["version"],
            "sync_version": row["sync_version"], "counters": json.loads(row["counters"]),
            "first_seen": rfc3339(row["first_seen"]), "last_beat": rfc3339(row["last_beat"]),
            "age_seconds": round(age, 1), "health": health(age, thresholds),
            "sync_age": row["sync_age"],
        })
    return result


def counts(store: Store, thresholds: Heartbeats) -> dict[str, int]:
    found = {state: 0 for state in HEALTH}
    for item in listing(store, thresholds):
        found[item["health"]] += 1
    return found
