"""Access tokens and address cards, signed with the active key; token revocation.

Every access token issued is recorded (jti, subject, expiry) so an admin can revoke it
by id and the sync document can list it until it would have expired anyway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from dmr_appliance import tokens
from dmr_appliance.errors import NotFound
from dmr_appliance.home import rooms
from dmr_appliance.home.keyring import KeyRing
from dmr_appliance.home.participants import Participant
from dmr_appliance.home.store import Conn, Store
from dmr_appliance.timefmt import now, rfc3339


@dataclass(frozen=True)
class CredentialSigner:
    """Signs access tokens and address cards with the keyring's active key."""

    keyring: KeyRing
    issuer: str  # the JWT ``iss`` of everything it signs

    def access_token(self, who: Participant, thumbprint: str, lifetime: int) -> dict[str, Any]:
        stamp, jti = now(), uuid.uuid4().hex
        with self.keyring.store.write() as conn:
            key = self.keyring.active(conn)
            # The room policy as it is now: a later change applies to later tokens only.
            signed = rooms.signed_among(conn, who.rooms)
            token = tokens.issue_access_token(
                key,
                issuer=self.issuer,
                subject=who.id,
                rooms=who.rooms,
                cert_thumbprint=thumbprint,
                lifetime=lifetime,
                now=stamp,
                jti=jti,
                signed_rooms=signed,
            )
            conn.execute(
                "INSERT INTO issued_tokens (jti, subject, kid, issued_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (jti, who.id, key.kid, stamp, stamp + lifetime),
            )
            # Old entries are only needed until they expire; prune while holding the lock.
            conn.execute("DELETE FROM issued_tokens WHERE expires_at < ?", (stamp - 86400,))
        return {
            "access_token": token,
            "token_type": "Bearer",
            "jti": jti,
            "subject": who.id,
            "rooms": list(who.rooms),
            "expires_in": lifetime,
            "expires_at": rfc3339(stamp + lifetime),
        }

    def card(self, target: Participant, rooms: list[str], lifetime: int) -> dict[str, Any]:
        key, stamp = self.keyring.active(), now()
        card = tokens.issue_card(
            key,
            issuer=self.issuer,
            subject=target.id,
            endpoint=target.endpoint,
            rooms=rooms,
            lifetime=lifetime,
            now=stamp,
        )
        return {
            "card": card,
            "subject": target.id,
            "endpoint": target.endpoint,
            "rooms": sorted(rooms),
            "expires_at": rfc3339(stamp + lifetime),
        }


def revoke(store: Store, jti: str) -> dict[str, Any]:
    """Revoke the access token ``jti`` (idempotent); bumps the sync version."""
    with store.write() as conn:
        row = conn.execute("SELECT * FROM issued_tokens WHERE jti = ?", (jti,)).fetchone()
        if row is None:
            raise NotFound(f"no token {jti!r} (unknown or long expired)", code="token-not-found")
        if row["revoked_at"] is None:
            conn.execute("UPDATE issued_tokens SET revoked_at = ? WHERE jti = ?", (now(), jti))
            store.bump(conn)
        row = conn.execute("SELECT * FROM issued_tokens WHERE jti = ?", (jti,)).fetchone()
    return {
        "jti": jti,
        "subject": row["subject"],
        "expires_at": rfc3339(row["expires_at"]),
        "revoked_at": rfc3339(row["revoked_at"]),
    }


def revoked(conn: Conn, leeway: int) -> list[dict[str, Any]]:
    """Revoked tokens that would still verify (expiry plus the verifiers' leeway)."""
    rows = conn.execute(
        "SELECT jti, expires_at FROM issued_tokens WHERE revoked_at IS NOT NULL"
        " AND expires_at >= ? ORDER BY jti",
        (now() - leeway,),
    )
    return [{"jti": row[0], "expires_at": rfc3339(row[1])} for row in rows]
