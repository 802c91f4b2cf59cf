"""A proof bundle: a signed message and its recipients' receipts, checked offline.

``{"message": <the signed envelope, the sender's copy with recipient ids>, "receipts":
[<receipt JWS>, ...]}``, written by ``dmr send --proof FILE`` and checked by ``dmr
receipts verify`` with the deployment CA (and CRL) alone: no home, no relay, no network.

A third party looks after the message expired, so each check is made at the moment the
receipt states (``received_at``): the message's signature for that recipient (its
certificate valid then, the message not yet expired then) and the receipt itself
(against the digest of what the sender signed, its recipient, and the endpoint it
states, whose host the receipt's certificate must name). The CRL is today's: a
certificate revoked since is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmr_appliance import files
from dmr_appliance.client.result import SendResult
from dmr_appliance.errors import ProofError
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.timefmt import parse_time

MAX_BUNDLE_BYTES = 4 * 1024 * 1024


class BundleError(ValueError):
    """A file that is not a proof bundle; the message says what to do."""


@dataclass(frozen=True)
class Bundle:
    message: dict[str, Any]
    receipts: list[str]

    @classmethod
    def of(cls, result: SendResult) -> Bundle:
        """The proof of a signed send: its message and every receipt verified."""
        if result.envelope is None or not result.signed:
            raise BundleError("no signed message was sent: there is nothing to prove")
        tokens = [r.receipt.token for r in result.recipients.values() if r.receipt]
        return cls(result.envelope, tokens)

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "receipts": self.receipts}

    def write(self, path: Path) -> None:
        data = json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"
        files.write_atomic(path, data.encode())

    @classmethod
    def read(cls, path: Path) -> Bundle:
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_BUNDLE_BYTES + 1)
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc.strerror}") from None
        fix = "give the file 'dmr send --proof' wrote"
        if len(raw) > MAX_BUNDLE_BYTES:
            raise BundleError(f"{path} is larger than {MAX_BUNDLE_BYTES} bytes; {fix}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise BundleError(f"{path} is not JSON; {fix}") from None
        if not (
            isinstance(doc, dict)
            and isinstance(doc.get("message"), dict)
            and isinstance(doc.get("receipts"), list)
            and all(isinstance(t, str) for t in doc["receipts"])
        ):
            raise BundleError(
                f"{path} is not a proof bundle (an object with 'message' and 'receipts', "
                f"a list of strings); {fix}"
            )
        return cls(doc["message"], doc["receipts"])


@dataclass(frozen=True)
class Checked:
    """One check: the message's signature, or one receipt (as it states itself)."""

    recipient: str
    endpoint: str
    signer: str
    at: str  # the moment it was checked at: created_at, or the receipt's received_at
    error: str | None = None  # None: verified

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "to": self.recipient,
            "endpoint": self.endpoint,
            "signer": self.signer,
            "at": self.at,
            "verified": self.ok,
            "error": self.error,
        }


def check_message(message: dict[str, Any], trust: Trust) -> Checked:
    """The message's signature, checked when it was made (``created_at``)."""
    at = str(message.get("created_at"))
    to = message.get("to")
    first = to[0] if isinstance(to, list) and to and isinstance(to[0], str) else ""
    try:
        verdict = signature.verify(message, first, trust, now=parse_time(at))
    except (ProofError, ValueError) as exc:
        return Checked(first, "", "", at, _why(exc))
    if not verdict.signed:
        return Checked(first, "", "", at, "the message carries no signature")
    return Checked(", ".join(verdict.recipients), "", verdict.sender, at)


def check_receipt(message: dict[str, Any], token: str, trust: Trust) -> Checked:
    """One receipt: the message as its recipient got it, and the receipt, both when the
    receipt says it was received."""
    stated = _stated(token)
    if not stated:
        return Checked("?", "?", "?", "?", "receipt-malformed: not a readable receipt JWS")
    to, endpoint, at = stated.get("to", "?"), stated.get("endpoint", "?"), stated.get("received_at")
    try:
        when = parse_time(str(at))
        verdict = signature.verify(message, to, trust, now=when)
        if not verdict.signed or verdict.digest is None:
            raise ProofError("the message carries no signature", code="signature-missing")
        proof = receipt.verify(
            token,
            trust,
            message_id=str(message.get("id")),
            recipient=to,
            endpoint=endpoint,
            digest=verdict.digest,
            sender=verdict.sender,
            now=when,
        )
    except (ProofError, ValueError) as exc:
        return Checked(to, endpoint, "", str(at), _why(exc))
    return Checked(to, endpoint, proof.signer, proof.received_at)


def _stated(token: str) -> dict[str, str]:
    """What a receipt claims, read before it is verified (to know what to verify it as)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, binascii.Error, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    return {k: v for k, v in claims.items() if k in receipt.CLAIMS and isinstance(v, str)}


def _why(exc: Exception) -> str:
    if isinstance(exc, ProofError):
        return f"{exc.code}: {exc.detail}"
    return f"malformed: {exc}"
