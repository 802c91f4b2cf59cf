"""A relay worker's sync state: home's current sync document and the tokens it has verified.

The sync agent (one per relay instance) writes the last good document to
``state_dir/sync.json`` atomically; every worker holds it as an immutable ``Snapshot``
and swaps in a new one when the file changes. The file is stat'ed at most every
``RELOAD_INTERVAL`` seconds, on the request path: no watcher thread, and a request
always runs against one snapshot from start to end.

Verifying an EdDSA token costs more than the rest of a request, so each verdict is
cached per (token string, sync version): a new document (a new key, a revocation)
starts from a clean cache, and a cached token is never used past its ``exp``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from dmr_appliance import logs, tokens
from dmr_appliance.errors import AuthError, TokenError, Unavailable

SYNC_FILE = "sync.json"
RELOAD_INTERVAL = 0.1  # seconds between two stats of sync.json
CACHE_SIZE = 10_000  # verdicts per cache; the oldest go first

_log = logs.get_logger("dmr.relay.trust")

V = TypeVar("V", tokens.AccessToken, tokens.Card)


class SyncDocumentError(ValueError):
    """A sync document that must not replace the one in use."""


@dataclass(frozen=True)
class Snapshot:
    """One sync document (home/sync.py makes it), parsed once: the keys to verify with,
    who may not take part, and which tokens were revoked before they expired."""

    version: int
    keys: tokens.KeySet
    revoked: frozenset[str]
    suspended: frozenset[str]
    revoked_tokens: frozenset[str]  # jti

    @classmethod
    def parse(cls, raw: bytes) -> Snapshot:
        """The snapshot of a sync document; ``SyncDocumentError`` when it is not one."""
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise SyncDocumentError(f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise SyncDocumentError("a sync document is a JSON object")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise SyncDocumentError("'version' must be a non-negative integer")
        try:
            keys = tokens.KeySet.from_jwks(doc.get("jwks"))  # type: ignore[arg-type]
        except ValueError as exc:
            raise SyncDocumentError(f"'jwks': {exc}") from exc
        return cls(
            version=version,
            keys=keys,
            revoked=_strings(doc, "revoked_participants"),
            suspended=_strings(doc, "suspended_participants"),
            revoked_tokens=_jtis(doc.get("revoked_tokens", [])),
        )

    def check_active(self, participant: str, role: str) -> None:
        """Refuse (403) a participant home has revoked or suspended; ``role`` says which."""
        for state, names in (("revoked", self.revoked), ("suspended", self.suspended)):
            if participant in names:
                raise AuthError(
                    f"{role} {participant!r} is {state}",
                    code=f"{role}-{state}",
                    title=f"Participant {state}",
                    participant=participant,
                )


def _strings(doc: dict[str, Any], key: str) -> frozenset[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SyncDocumentError(f"'{key}' must be a list of participant ids")
    return frozenset(value)


def _jtis(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(
        isinstance(v, dict) and isinstance(v.get("jti"), str) for v in value
    ):
        raise SyncDocumentError("'revoked_tokens' must be a list of {jti, expires_at}")
    return frozenset(v["jti"] for v in value)


class VerdictCache(Generic[V]):
    """Verified tokens by (token, sync version), bounded, never returned past ``exp``."""

    def __init__(self, max_size: int = CACHE_SIZE) -> None:
        self.max_size = max_size
        self._items: dict[tuple[str, int], V] = {}
        self._lock = threading.Lock()

    def get(self, token: str, version: int, now: float) -> V | None:
        verdict = self._items.get((token, version))
        if verdict is not None and now > verdict.expires_at:
            with self._lock:
                self._items.pop((token, version), None)
            return None
        return verdict

    def put(self, token: str, version: int, verdict: V) -> None:
        with self._lock:
            while len(self._items) >= self.max_size:
                # Insertion order: drop the oldest (iteration is safe under the lock).
                del self._items[next(iter(self._items))]
            self._items[(token, version)] = verdict

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class SyncState:
    """A worker's view of the sync document on disk, plus its verdict caches."""

    def __init__(
        self,
        path: Path,
        *,
        issuer: str,
        leeway: int,
        clock: Callable[[], float] = time.time,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.path = Path(path)
        self.issuer = issuer
        self.leeway = leeway
        self.clock = clock
        self.access_tokens: VerdictCache[tokens.AccessToken] = VerdictCache(cache_size)
        self.cards: VerdictCache[tokens.Card] = VerdictCache(cache_size)
        self._snapshot: Snapshot | None = None
        self._file_id: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._reload = threading.Lock()

    @classmethod
    def in_dir(cls, state_dir: Path, **kwargs: Any) -> SyncState:
        return cls(Path(state_dir) / SYNC_FILE, **kwargs)

    # --- the sync document -------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        """The document in use, after a (rate-limited) look at the file."""
        self.refresh()
        return self._snapshot

    def current(self) -> Snapshot:
        """The document in use; 503 while the relay holds none (nothing was attempted: the
        router gives the message to another relay)."""
        snapshot = self.snapshot
        if snapshot is None:
            raise Unavailable(
                "this relay holds no sync document from home yet",
                code="not-ready",
                title="Not ready",
            )
        return snapshot

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        # One thread reloads; the others keep serving with the snapshot they have.
        if not self._reload.acquire(blocking=force):
            return
        try:
            self._next_check = now + RELOAD_INTERVAL
            self._load_if_changed()
        finally:
            self._reload.release()

    def _load_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return  # keep what we hold: the agent replaces the file, never deletes it
        file_id = (st.st_ino, st.st_mtime_ns, st.st_size)
        if file_id == self._file_id:
            return
        self._file_id = file_id
        try:
            snapshot = Snapshot.parse(self.path.read_bytes())
        except (OSError, SyncDocumentError) as exc:
            logs.log_event(
                _log, "sync-document-refused", logging.ERROR, path=str(self.path), detail=str(exc)
            )
            return
        self.install(snapshot)

    def install(self, snapshot: Snapshot) -> None:
        """Use ``snapshot`` from now on (one reference swap; old verdicts are dropped)."""
        previous = self._snapshot
        if previous is not None and snapshot.version <= previous.version:
            if snapshot.version < previous.version:  # the agent never writes one: refuse
                logs.log_event(
                    _log,
                    "sync-document-refused",
                    logging.ERROR,
                    reason="older",
                    version=snapshot.version,
                    held=previous.version,
                )
            return
        self._snapshot = snapshot
        self.access_tokens.clear()
        self.cards.clear()
        logs.log_event(
            _log,
            "sync-document-loaded",
            version=snapshot.version,
            previous=previous.version if previous else None,
        )

    # --- tokens and cards --------------------------------------------------------------

    def access_token(
        self, token: str, snapshot: Snapshot, cert_thumbprint: str
    ) -> tokens.AccessToken:
        """The verified access token, bound to the certificate with ``cert_thumbprint``."""
        now = self.clock()
        verdict = self.access_tokens.get(token, snapshot.version, now)
        if verdict is None:
            verdict = tokens.verify_access_token(
                token,
                snapshot.keys,
                issuer=self.issuer,
                cert_thumbprint=cert_thumbprint,
                leeway=self.leeway,
                now=int(now),
            )
            if verdict.jti in snapshot.revoked_tokens:
                raise TokenError("this access token was revoked", code="token-revoked")
            self.access_tokens.put(token, snapshot.version, verdict)
        elif verdict.cert_thumbprint != cert_thumbprint:
            # The same token from another certificate: what the binding exists to stop.
            raise TokenError("token is bound to another certificate", code="token-cnf-mismatch")
        return verdict

    def card(self, token: str, snapshot: Snapshot) -> tokens.Card:
        now = self.clock()
        verdict = self.cards.get(token, snapshot.version, now)
        if verdict is None:
            verdict = tokens.verify_card(
                token, snapshot.keys, issuer=self.issuer, leeway=self.leeway, now=int(now)
            )
            self.cards.put(token, snapshot.version, verdict)
        return verdict
