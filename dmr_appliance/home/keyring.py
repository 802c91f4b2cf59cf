"""Home's Ed25519 signing keys: one active, retired ones published until their tokens expire.

The key list lives in the store (so every worker agrees, and a rotation bumps the sync
version). Each private key is either sealed in its row (``sealed``: AES-GCM under the
key-encryption key of ``[store] key_file``, home/sealing.py), so that every home instance
on one database signs with it, or, without a key_file (one host on SQLite, as before), a
file ``<keys_dir>/<kid>.pem`` written 0600 before its row is committed. A key made as a file
stays one when a key_file is added later: both kinds load. Loaded keys are cached per
process: a key never changes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from dmr_appliance.errors import Unavailable
from dmr_appliance.home.sealing import Sealer
from dmr_appliance.home.store import Conn, Row, Store
from dmr_appliance.timefmt import now, rfc3339
from dmr_appliance.tokens import KeySet, SigningKey

# The active key first, then retired ones, most recently retired first.
_ALL_KEYS = (
    "SELECT * FROM signing_keys"
    " ORDER BY retired_at IS NOT NULL, retired_at DESC, created_at DESC, kid"
)
_PUBLISHED_KEYS = (
    "SELECT * FROM signing_keys WHERE retired_at IS NULL OR retired_at > ?"
    " ORDER BY retired_at IS NOT NULL, retired_at DESC, created_at DESC, kid"
)


class KeyRing:
    def __init__(
        self, store: Store, keys_dir: Path, *, retention: int, sealer: Sealer | None = None
    ) -> None:
        """``retention``: seconds a retired key stays published (longest token lifetime);
        ``sealer``: new keys are sealed in the store with it, else written to ``keys_dir``."""
        self.store = store
        self.dir = Path(keys_dir)
        self.sealer = sealer
        self.retention = retention
        self._cache: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def ensure_active(self) -> None:
        """Make the first key if there is none (racing workers: the first one wins)."""
        with self.store.write() as conn:
            if _active_row(conn) is None:
                self._create(conn, now())

    def rotate(self) -> SigningKey:
        """A new active key; the previous one retires (and stays published for a while)."""
        stamp = now()
        with self.store.write() as conn:
            conn.execute(
                "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", (stamp,)
            )
            key = self._create(conn, stamp)
            self.store.bump(conn)
        return key

    def active(self, conn: Conn | None = None) -> SigningKey:
        if conn is None:
            with self.store.read() as conn:
                return self.active(conn)
        row = _active_row(conn)
        if row is None:
            raise Unavailable("home has no active signing key yet", code="no-signing-key")
        return self._load(row)

    def published(self, conn: Conn) -> list[SigningKey]:
        """The active key and every retired key whose tokens may still be valid."""
        rows = conn.execute(_PUBLISHED_KEYS, (now() - self.retention,))
        return [self._load(row) for row in rows]

    def jwks(self, conn: Conn | None = None) -> dict[str, Any]:
        if conn is None:
            with self.store.read() as conn:
                return self.jwks(conn)
        return KeySet.from_signing_keys(self.published(conn)).to_jwks()

    def listing(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(_ALL_KEYS)
            return [self._describe(row) for row in rows.fetchall()]

    def _describe(self, row: Row) -> dict[str, Any]:
        retired = row["retired_at"]
        dropped = None if retired is None else retired + self.retention
        status = "active" if retired is None else "retired" if dropped > now() else "expired"
        return {
            "kid": row["kid"],
            "status": status,
            "created_at": rfc3339(row["created_at"]),
            "retired_at": rfc3339(retired),
            "published_until": rfc3339(dropped),
        }

    def _create(self, conn: Conn, stamp: int) -> SigningKey:
        key = SigningKey.generate(now=stamp)
        sealed = None
        if self.sealer is not None:
            sealed = self.sealer.seal(key.kid, key.private_pem())
        else:
            _write_private(self.dir / f"{key.kid}.pem", key.private_pem())
        conn.execute(
            "INSERT INTO signing_keys (kid, created_at, sealed) VALUES (?, ?, ?)",
            (key.kid, stamp, sealed),
        )
        self._cache[key.kid] = key
        return key

    def _load(self, row: Row) -> SigningKey:
        kid = row["kid"]
        with self._lock:
            key = self._cache.get(kid)
            if key is None:
                key = SigningKey.from_private_pem(self._private(row), row["created_at"])
                self._cache[kid] = key
        # retired_at changes on rotation: never trust the cached copy for it.
        if key.retired_at != row["retired_at"]:
            key = SigningKey(key.kid, key.private_key, key.created_at, row["retired_at"])
        return key

    def _private(self, row: Row) -> bytes:
        if row["sealed"] is None:
            return (self.dir / f"{row['kid']}.pem").read_bytes()
        if self.sealer is None:
            raise Unavailable(
                f"signing key {row['kid']} is sealed in the store: [store] key_file is needed",
                code="no-signing-key",
            )
        return self.sealer.open(row["kid"], row["sealed"])


def _active_row(conn: Conn) -> Row | None:
    return conn.execute(
        "SELECT * FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1"
    ).fetchone()


def _write_private(path: Path, pem: bytes) -> None:
    """Create ``path`` 0600 (never replacing a file), durably, before its row commits."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
