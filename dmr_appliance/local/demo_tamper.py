"""The demo's compromised relay: a signed message altered on a relay's host and delivered
with that relay's own certificate, as its relay process would deliver it. The recipient
must refuse it (422 ``signature-*``) and process nothing: the relay's certificate gets a
message to a recipient, never a message the sender did not sign."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization

from dmr_appliance import pki
from dmr_appliance.envelope import sender_envelope
from dmr_appliance.local.stack import Stack
from dmr_appliance.proof import signature
from dmr_appliance.relay.delivery_body import compact_json
from dmr_appliance.wire.problem import read_problem


@dataclass(frozen=True)
class Tampering:
    relay: str  # whose certificate delivered the altered copy
    message_id: str
    status: int | None  # the recipient's answer; None when it never answered
    code: str  # its problem code ("" for none)
    error: str | None = None

    @property
    def refused(self) -> bool:
        return self.status == 422 and self.code.startswith("signature-")

    def to_json(self) -> dict[str, Any]:
        return {
            "tampered_by": self.relay,
            "tampered_status": self.status,
            "tampered_code": self.code or None,
            "tampered_refused": self.refused,
        }


def deliver_altered(stack: Stack, *, room: str, sender: str, recipient: str) -> Tampering:
    """``sender``'s signed message to ``recipient`` with its payload changed on the way."""
    relay = stack.relay_names[-1]
    doc = sender_envelope(room=room, sender=sender, to=[recipient], payload={"pay": 10})
    cert, key = stack.cert("participant", sender)
    doc["signature"] = signature.sign(doc, _key(key), pki.load_certificate(cert.read_bytes()))
    altered = {**doc, "payload": {"pay": 10_000}}  # ``to`` already names the recipient alone
    headers = {
        "Content-Type": "application/json",
        "X-DMR-Message-Id": doc["id"],
        "X-DMR-Room": room,
        "X-DMR-From": sender,
    }
    try:
        with stack.session("relay", relay) as session:
            resp = session.post(
                stack.endpoint(recipient), data=compact_json(altered), headers=headers, timeout=10
            )
    except requests.RequestException as exc:
        return Tampering(relay, doc["id"], None, "", f"{type(exc).__name__}: {exc}")
    problem = read_problem(resp.status_code, resp.headers, resp.content)
    return Tampering(relay, doc["id"], resp.status_code, problem.code)


def _key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)
