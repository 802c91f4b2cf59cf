"""What relay tests need around a relay: home's signing key, sync documents, tokens,
cards, envelopes and a relay configuration, all real (no fakes of the checks)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmr_appliance import config, envelope, pki, tokens
from tests.support.apps import relay_gate

ISSUER = "dmr-home"


def thumbprint(pem_path: Path) -> str:
    return pki.cert_thumbprint(pki.load_certificate(pem_path.read_bytes()))


@dataclass
class HomeSigner:
    """Home's side, in miniature: one signing key and a sync document version counter.
    Tests call it ``signer``; ``home`` is a home that answers requests."""

    key: tokens.SigningKey = field(default_factory=tokens.SigningKey.generate)
    version: int = 1

    def document(
        self,
        *,
        revoked: tuple[str, ...] = (),
        suspended: tuple[str, ...] = (),
        revoked_jtis: tuple[str, ...] = (),
        keys: list | None = None,
    ) -> bytes:
        """A sync document of home's shape (home/sync.py)."""
        return json.dumps(
            {
                "version": self.version,
                "jwks": {"keys": keys if keys is not None else [self.key.public_jwk()]},
                "revoked_participants": sorted(revoked),
                "suspended_participants": sorted(suspended),
                "revoked_tokens": [
                    {"jti": j, "expires_at": "2099-01-01T00:00:00Z"} for j in revoked_jtis
                ],
                "generated_at": "2024-01-01T00:00:00Z",
            }
        ).encode()

    def token(
        self,
        subject: str,
        cert: Path,
        rooms: tuple[str, ...] = ("ops",),
        *,
        lifetime: int = 600,
        now: int | None = None,
        jti: str | None = None,
    ) -> str:
        return tokens.issue_access_token(
            self.key,
            issuer=ISSUER,
            subject=subject,
            rooms=rooms,
            cert_thumbprint=thumbprint(cert),
            lifetime=lifetime,
            now=now,
            jti=jti,
        )

    def card(
        self, subject: str, endpoint: str, rooms: tuple[str, ...] = ("ops",), *, lifetime: int = 600
    ) -> str:
        return tokens.issue_card(
            self.key,
            issuer=ISSUER,
            subject=subject,
            endpoint=endpoint,
            rooms=rooms,
            lifetime=lifetime,
        )


def message(
    cards: list[str], *, sender: str = "alice", room: str = "ops", **kwargs: Any
) -> dict[str, Any]:
    return envelope.build_envelope(
        room=room, sender=sender, cards=cards, payload={"text": "hello"}, **kwargs
    )


def relay_config(pki_: Any, state_dir: Path, **overrides: Any) -> config.RelayConfig:
    tls = config.RelayTls(
        ca=pki_.ca,
        cert=pki_.cert("relay", "relay-1"),
        key=pki_.key("relay", "relay-1"),
        crl=pki_.crl,
    )
    delivery = config.Delivery(connect_timeout=2.0, read_timeout=5.0, pool_size=8)
    base: dict[str, Any] = {
        "state_dir": state_dir,
        "tls": tls,
        "delivery": delivery,
        "issuer": ISSUER,
        "gate": relay_gate(state_dir),
    }
    return config.RelayConfig(**{**base, **overrides})
