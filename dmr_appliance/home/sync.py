"""The sync document relays live on, and the long poll that hands it out.

Several gunicorn workers (and, on PostgreSQL, several home instances) serve polls; a
change committed by any of them must wake every waiting poll at once. Each worker runs one
watcher thread that follows the store's ``changes()`` (SQLite: ``PRAGMA data_version``
every 50 ms; PostgreSQL: LISTEN/NOTIFY, with the version read from the table at every
wake-up and every second) and wakes this worker's waiters through a Condition.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from prometheus_client import Gauge

from dmr_appliance import logs, sync_signature
from dmr_appliance.config import HomeConfig
from dmr_appliance.home import credentials
from dmr_appliance.home.keyring import KeyRing
from dmr_appliance.home.store import Conn, Store
from dmr_appliance.timefmt import now, rfc3339

_log = logs.get_logger("dmr.home.sync")
RETRY = 1.0  # seconds between attempts to follow a store that cannot answer


def document(store: Store, keyring: KeyRing, config: HomeConfig) -> dict[str, Any]:
    """Everything a relay needs, read in one snapshot so it matches its version; only what
    relays read (relay/sync_state.py Snapshot), and when it was made. Settings a relay needs
    (the issuer it expects, its body limit) are in its relay.toml, one source each
    (docs/architecture.md, the sync document)."""
    with store.read() as conn:
        return {
            "version": store.version(conn),
            "jwks": keyring.jwks(conn),
            "revoked_participants": _revoked(conn),
            "suspended_participants": _ids(
                conn, "SELECT id FROM participants WHERE status = 'suspended' ORDER BY id"
            ),
            "revoked_tokens": credentials.revoked(conn, config.tokens.leeway),
            "generated_at": rfc3339(now()),
        }


def signature(body: bytes, store: Store, keyring: KeyRing) -> str:
    """``body`` signed by every published key: a relay that knows any of them, even one
    retired by a rotation since its last document, can check it (sync_signature.py)."""
    with store.read() as conn:
        return sync_signature.sign(body, keyring.published(conn))


def _revoked(conn: Conn) -> list[str]:
    return _ids(
        conn,
        "SELECT id FROM participants WHERE status = 'revoked'"
        " UNION SELECT id FROM removed_participants WHERE until >= ? ORDER BY 1",
        now(),
    )


def _ids(conn: Conn, query: str, *args: Any) -> list[str]:
    return [row[0] for row in conn.execute(query, args)]


_watchers: weakref.WeakSet[ChangeWatcher] = weakref.WeakSet()


def release_waiters() -> None:
    """Called from gunicorn's worker hooks on shutdown so long polls do not hold it up."""
    for watcher in list(_watchers):
        watcher.release()


class ChangeWatcher:
    """Wakes this worker's long polls when the store's sync version moves."""

    def __init__(self, store: Store, waiting: Gauge | None = None, interval: float = 0.05) -> None:
        self.store = store
        self.interval = interval
        self.waiting = waiting
        self.waiters = 0
        self._version = 0
        self._changed = threading.Condition()
        self._started = False
        self._start_lock = threading.Lock()
        self._closing = False
        _watchers.add(self)

    def wait_beyond(self, version: int, timeout: float) -> int:
        """Block until the sync version exceeds ``version`` or ``timeout`` passes;
        returns the latest version seen."""
        self._ensure_started()
        with self._changed:
            self.waiters += 1
            if self.waiting is not None:
                self.waiting.inc()
            try:
                self._changed.wait_for(lambda: self._version > version or self._closing, timeout)
            finally:
                self.waiters -= 1
                if self.waiting is not None:
                    self.waiting.dec()
            return self._version

    @property
    def closing(self) -> bool:
        return self._closing

    def release(self) -> None:
        """Answer every waiting poll now (the worker is stopping): relays just poll again."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()

    def _ensure_started(self) -> None:
        # Started on first use, inside the worker: a thread started before gunicorn
        # forks (with --preload) would not exist in the workers.
        with self._start_lock:
            if self._started:
                return
            self._version = self.store.version()
            threading.Thread(target=self._run, name="sync-watcher", daemon=True).start()
            self._started = True

    def _run(self) -> None:
        while not self._closing:  # released: the worker stops, so does this thread
            try:
                for version in self.store.changes():
                    if self._closing:
                        break
                    self._seen(version)
            except Exception as exc:  # the store is briefly unusable: keep watching
                logs.log_event(_log, "sync-watch-error", logging.WARNING, detail=str(exc))
                time.sleep(RETRY)

    def _seen(self, version: int) -> None:
        if version != self._version:
            with self._changed:
                self._version = version
                self._changed.notify_all()
