"""The sender's end-to-end proof (issue 26): it signs each message, and checks the receipt
each recipient answers a delivery with, since relays are not trusted with either.

A ``delivered`` outcome of a signed message counts only with a receipt that verifies
against what the sender signed (its digest), the recipient's id and the endpoint of the
card the sender addressed: a receipt that does not is ``failed`` (``receipt refused``), so
it is retried and, when retries run out, reported like any failure. A missing receipt is
``failed`` only with ``required`` (recipients that issue none stay delivered otherwise).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dmr_appliance import logs, pki
from dmr_appliance.client.answers import Answer
from dmr_appliance.errors import EnvelopeError, ProofError
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.receipt import Receipt
from dmr_appliance.proof.trust import Trust
from dmr_appliance.wire.outcome import DELIVERED, FAILED, Outcome, classify

NO_RECEIPT = "no receipt from the recipient"

_log = logs.get_logger("dmr.sender")


@dataclasses.dataclass(frozen=True)
class Signer:
    """The participant's key and certificate, loaded once per ``Sender``."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def from_files(cls, cert: Path | str, key: Path | str) -> Signer:
        loaded = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key}: not an EC private key; signing needs the participant's")
        return cls(loaded, pki.load_certificate(Path(cert).read_bytes()))

    def sign(self, envelope: dict[str, Any]) -> str:
        """The ``signature`` member for the sender's ``envelope`` (recipient ids in ``to``);
        ``EnvelopeError`` when its payload has no canonical form."""
        try:
            return signature.sign(envelope, self.key, self.cert)
        except ValueError as exc:
            raise EnvelopeError(
                f"the message cannot be signed: {exc}. Send such numbers as strings, "
                "or send unsigned (sign=False, dmr send --no-sign)",
                code="envelope-unsignable",
                status=422,
            ) from None


def card_endpoint(card: str) -> str | None:
    """The ``endpoint`` claim of an address card, read without checking home's signature:
    the sender got the card from home itself over mutual TLS (and holds no home key set;
    relays verify cards). ``None`` when it cannot be read."""
    try:
        claims = jwt.decode(card, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    endpoint = claims.get("endpoint")
    return endpoint if isinstance(endpoint, str) else None


@dataclasses.dataclass(frozen=True)
class ReceiptCheck:
    """Checks the receipts in a router's answer to one try of one signed message."""

    trust: Trust
    message_id: str
    digest: str
    required: bool = False
    sender: str | None = None  # the participant that signed: each receipt must name it

    def answer(
        self, answer: Answer, carried: Sequence[str], endpoints: Mapping[str, str | None]
    ) -> tuple[Answer, dict[str, Receipt]]:
        """``answer`` with each delivered outcome checked (a refused one now ``failed``,
        the refusals in its detail), and the receipts that verified, by recipient."""
        outcomes = dict(answer.outcomes)
        if self.required and not outcomes and classify(answer.status) == DELIVERED:
            # a 2xx without the relay's list: delivered, but with no receipt to show
            outcomes = {pid: Outcome(pid, DELIVERED, answer.status) for pid in carried}
        kept: dict[str, Receipt] = {}
        refusals = []
        for pid, got in outcomes.items():
            if got.outcome != DELIVERED or pid not in endpoints:
                continue
            checked, proof = self.outcome(got, endpoints[pid])
            outcomes[pid] = checked
            if proof is not None:
                kept[pid] = proof
            elif checked.outcome == FAILED:
                refusals.append(f"{pid}: {checked.error}")
        if outcomes == answer.outcomes and not refusals:
            return answer, kept
        detail = "; ".join(filter(None, [answer.detail, *refusals]))
        return dataclasses.replace(answer, outcomes=outcomes, detail=detail), kept

    def outcome(self, got: Outcome, endpoint: str | None) -> tuple[Outcome, Receipt | None]:
        """A delivered ``got`` and its receipt checked against the card's ``endpoint``."""
        if got.receipt is None:
            if not self.required:
                return got, None
            return dataclasses.replace(got, outcome=FAILED, error=NO_RECEIPT), None
        try:
            if endpoint is None:
                raise ProofError(
                    "the card addressed names no endpoint", code="receipt-endpoint-unknown"
                )
            proof = receipt.verify(
                got.receipt,
                self.trust,
                message_id=self.message_id,
                recipient=got.to,
                endpoint=endpoint,
                digest=self.digest,
                sender=self.sender,
            )
        except ProofError as exc:
            logs.log_event(
                _log,
                "send.receipt-refused",
                logging.WARNING,
                message_id=self.message_id,
                to=got.to,
                code=exc.code,
                detail=exc.detail,
            )
            error = f"receipt refused: {exc.code}: {exc.detail}"
            return dataclasses.replace(got, outcome=FAILED, error=error), None
        return got, proof
