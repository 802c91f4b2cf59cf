"""``POST /v1/messages``: identify, verify, validate, deliver, answer.

Answer codes (also in docs/architecture.md and the OpenAPI document):
200 every recipient delivered; 502 at least one delivery failed and may be retried
(the body lists every outcome, so the sender retries only those); 422 none failed
but at least one recipient rejected the message for good; 503 nothing was attempted
(not ready, overloaded): the router may try another relay. Refusals before delivery
are 4xx problems: 401 token, 403 certificate/room/revocation, 4xx envelope.

Refusals are raised (the error handler answers them); the answers after delivery are
results, written here. Either way the request's one ``response`` line (``web``) says it:
the message (id, room, from, recipients), the outcome (delivered, failed, rejected,
refused with its code) and each recipient's delivery (outcome, status, ms, error).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import falcon

from dmr_appliance import envelope, identity, web
from dmr_appliance.errors import AuthError, DmrError, EnvelopeError, TokenError
from dmr_appliance.relay import draining
from dmr_appliance.relay.delivery import Deliverer, Recipient
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import Snapshot, SyncState
from dmr_appliance.tokens import AccessToken
from dmr_appliance.wire.outcome import FAILED, REJECTED, Outcome, roll_up


class Messages:
    def __init__(
        self,
        state: SyncState,
        deliverer: Deliverer,
        meters: RelayMetrics,
        *,
        verifier: identity.Verifier,
        limits: envelope.EnvelopeLimits,
        drain: draining.Flag | None = None,
    ) -> None:
        self.state = state
        self.drain = drain
        self.deliverer = deliverer
        self.meters = meters
        self.verifier = verifier
        self.limits = limits

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web.add_to_line(req)  # from here on, a refusal is said on the response line
        try:
            if self.drain is not None:  # 503 draining: nothing attempted
                self.drain.refuse_if_set()
            snapshot = self.state.current()  # 503 while not ready: nothing attempted
            caller = identity.require(self.verifier.caller(req), "participant")
            token = self.state.access_token(bearer_token(req), snapshot, caller.thumbprint)
            message = envelope.parse_envelope(read_body(req, self.limits), self.limits)
            web.add_to_line(
                req,
                message_id=message.id,
                room=message.room,
                signed=message.signature is not None,
                **{"from": message.sender},
            )
            check_sender(message, token, snapshot)
            check_signed(message, token)
            recipients = self.recipients(message, snapshot)
            web.add_to_line(req, to=[r.id for r in recipients])
            outcomes = self.deliverer.deliver(message, recipients, req.context.request_id)
        except DmrError as exc:  # refused before any delivery (overloaded: 503 too)
            self.meters.refusals.labels(exc.code).inc()
            raise
        tally = Counter(o.outcome for o in outcomes)
        self.meters.messages.labels(roll_up(tally)).inc()
        for outcome, n in tally.items():
            self.meters.deliveries.labels(outcome).inc(n)
        answer(req, resp, message, outcomes, tally)

    def recipients(self, message: envelope.Envelope, snapshot: Snapshot) -> list[Recipient]:
        """One recipient per participant, from cards home signed for this room."""
        found: dict[str, Recipient] = {}
        for i, card_token in enumerate(message.to):
            try:
                card = self.state.card(card_token, snapshot)
            except TokenError as exc:
                raise card_refused(exc, i) from None
            if message.room not in card.rooms:
                raise AuthError(
                    f"recipient {card.subject!r} is not in room {message.room!r}",
                    code="recipient-not-in-room",
                    field=f"to[{i}]",
                )
            snapshot.check_active(card.subject, "recipient")
            found.setdefault(card.subject, Recipient(card.subject, card.endpoint))
        return list(found.values())


def check_sender(message: envelope.Envelope, token: AccessToken, snapshot: Snapshot) -> None:
    if token.subject != message.sender:
        raise AuthError(
            f"the token is for {token.subject!r}, the message is from {message.sender!r}",
            code="sender-mismatch",
        )
    if message.room not in token.rooms:
        raise AuthError(f"the token does not allow room {message.room!r}", code="room-not-allowed")
    snapshot.check_active(token.subject, "sender")


def check_signed(message: envelope.Envelope, token: AccessToken) -> None:
    """A room home marked signed (the token says so) admits no unsigned message: refused
    here, once, rather than by every recipient after delivery."""
    if message.signature is None and message.room in token.signed_rooms:
        raise AuthError(
            f"room {message.room!r} admits only signed messages: the sender must sign "
            "this message (the Sender signs by default)",
            code="signature-required",
            title="Signature required",
            room=message.room,
        )


def bearer_token(req: falcon.Request) -> str:
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError(
            "send the access token as 'Authorization: Bearer <token>'", code="token-missing"
        )
    return token.strip()


def read_body(req: falcon.Request, limits: envelope.EnvelopeLimits) -> bytes:
    """The raw body, refused past the limit before it is parsed."""
    limit = limits.max_message_bytes
    too_large = EnvelopeError(
        f"the body is larger than {limit} bytes", limit=limit, code="envelope-too-large", status=413
    )
    return web.read_body(req, limit, too_large=too_large)


def card_refused(exc: TokenError, index: int) -> DmrError:
    """A bad address card is bad content (422), not a failed login (401)."""
    return DmrError(
        f"to[{index}]: {exc.detail}",
        code="card-" + exc.code.removeprefix("token-"),
        status=422,
        title="Address card refused",
        field=f"to[{index}]",
    )


def answer(
    req: falcon.Request,
    resp: falcon.Response,
    message: envelope.Envelope,
    outcomes: list[Outcome],
    tally: Counter,
) -> None:
    """200 when every recipient has it; else the problem document that tells the sender
    what to do next: 502 retry the failed ones, 422 none to retry."""
    doc = {"id": message.id, "outcomes": [o.to_json() for o in outcomes]}
    outcome = roll_up(tally)
    web.add_to_line(req, outcome=outcome, deliveries=[logged(o) for o in outcomes])
    if outcome == FAILED:
        _not_all_delivered(
            req,
            resp,
            code="delivery-failed",
            status=502,
            title="Delivery failed",
            detail=f"{tally[FAILED]} of {len(outcomes)} deliveries failed; retry those",
            **doc,
        )
    elif outcome == REJECTED:
        _not_all_delivered(
            req,
            resp,
            code="delivery-rejected",
            status=422,
            title="Delivery rejected",
            detail=f"{tally[REJECTED]} of {len(outcomes)} recipients rejected the message",
            **doc,
        )
    else:
        resp.media = doc


def _not_all_delivered(
    req: falcon.Request,
    resp: falcon.Response,
    *,
    code: str,
    status: int,
    title: str,
    detail: str,
    **doc: Any,
) -> None:
    web.answer_problem(req, resp, code=code, status=status, title=title, detail=detail, **doc)
    web.add_to_line(req, code=code, detail=detail)


def logged(outcome: Outcome) -> dict[str, Any]:
    """A recipient's delivery as the response line lists it: its answer's item, with the
    receipt only as a yes (the sender keeps it; it would make the line kilobytes long)."""
    doc = outcome.to_json()
    if doc.pop("receipt", None):
        doc["receipt"] = True
    return doc
