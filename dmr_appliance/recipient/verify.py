"""One delivery as a relay posts it, checked by the recipient it was posted to.

A relay is not trusted with the message: it controls the body, its headers and the URL
it posts to. So the recipient's own participant id comes from the recipient (its
configuration, or the path of its own endpoint), never from the body; the body's ``to``
must name that id alone, and a signed message's signature must name it among the
recipients its sender signed for (``proof.signature.verify``). Everything a relay could
hand over is refused as an ``EnvelopeError`` or a ``ProofError`` with its code and
status, never as another exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from dmr_appliance import envelope_json, ids
from dmr_appliance.envelope import DEFAULT_LIMITS, SEMANTIC, EnvelopeLimits
from dmr_appliance.errors import EnvelopeError, ProofError
from dmr_appliance.proof import signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.timefmt import parse_time

SIGNATURE_MISSING = "signature-missing"
WRONG_RECIPIENT = "delivery-wrong-recipient"


@dataclass(frozen=True)
class Accepted:
    """A delivery that passed: the decoded envelope, what its signature proved, and the
    recipient id it was checked for."""

    document: dict[str, Any]
    verdict: signature.Verdict
    recipient: str

    @property
    def signed(self) -> bool:
        return self.verdict.signed

    @property
    def sender(self) -> str:
        return self.verdict.sender

    @property
    def message_id(self) -> str:
        return str(self.document["id"])


def verify_delivery(
    body: bytes,
    recipient: str,
    trust: Trust,
    *,
    require_signature: bool = False,
    now: datetime | None = None,
    limits: EnvelopeLimits = DEFAULT_LIMITS,
) -> Accepted:
    """``body`` checked as a delivery to ``recipient``; ``EnvelopeError`` / ``ProofError``
    (each with ``code`` and ``status``) when it must be refused.

    Signed: the signature is verified (``proof.signature.verify``). Unsigned: refused
    with ``signature-missing`` when ``require_signature``, else accepted unsigned.
    Either way an expired message is refused (``message-expired``).
    """
    when = now or datetime.now(UTC)
    doc = envelope_json.decode(
        bytes(body), max_bytes=limits.max_message_bytes, max_depth=limits.max_json_depth
    )
    if not isinstance(doc, dict):
        raise EnvelopeError(
            "the delivery must be a JSON object", code="envelope-not-object", status=SEMANTIC
        )
    _addressed_to(doc, recipient)
    _identified(doc)
    if "signature" in doc:
        verdict = signature.verify(doc, recipient, trust, now=when)
    elif require_signature:
        raise ProofError(
            "this recipient accepts signed messages only, and the message has no signature",
            code=SIGNATURE_MISSING,
            title="Signature required",
        )
    else:
        _unexpired(doc, when)
        verdict = signature.Verdict(False, doc["from"])
    return Accepted(doc, verdict, recipient)


def path_recipient(target: str) -> str:
    """The last segment of a request target's path (``/inbox/bob?x=1`` -> ``bob``): the
    recipient id of an endpoint that serves several participants under one prefix."""
    path = target.partition("?")[0].partition("#")[0]
    return unquote(path.rstrip("/").rpartition("/")[2])


def _addressed_to(doc: dict[str, Any], recipient: str) -> None:
    # A relay delivers each recipient a body whose ``to`` names that recipient alone.
    to = doc.get("to")
    if to != [recipient] or not ids.is_participant_id(recipient):
        shown = repr(to)[:80]
        raise EnvelopeError(
            f"the delivery is addressed to {shown}, not to this recipient ({recipient[:64]!r})",
            code=WRONG_RECIPIENT,
            status=SEMANTIC,
            title="Delivery for another recipient",
            field="to",
        )


def _identified(doc: dict[str, Any]) -> None:
    """The id and sender a receipt and deduplication rely on are of the right form."""
    for name, valid, code in (
        ("id", ids.is_message_id, "envelope-bad-id"),
        ("from", ids.is_participant_id, "envelope-bad-from"),
    ):
        value = doc.get(name)
        if not (isinstance(value, str) and valid(value)):
            raise EnvelopeError(
                f"{name!r} is missing or not valid", code=code, status=SEMANTIC, field=name
            )


def _unexpired(doc: dict[str, Any], now: datetime) -> None:
    expires_at = doc.get("expires_at")
    try:
        expires = parse_time(expires_at) if isinstance(expires_at, str) else None
    except ValueError:
        expires = None
    if expires is None:
        raise EnvelopeError(
            "'expires_at' is missing or not an RFC 3339 time",
            code="envelope-bad-time",
            status=SEMANTIC,
            field="expires_at",
        )
    if expires <= now:
        raise ProofError(
            f"the message expired at {expires_at}", code="message-expired", title="Message expired"
        )
