"""relay/messages.py: a room home marked signed (the token's ``signed`` claim) admits no
unsigned message. The refusal is 403 ``signature-required``, raised before any delivery
and counted as a refusal; a signed message, or any message to an unsigned room, passes.
Trust and delivery are stand-ins (the token is a real ``tokens.AccessToken``)."""

from __future__ import annotations

from types import SimpleNamespace

import falcon
import falcon.testing
import pytest

from dmr_appliance import envelope, identity, web
from dmr_appliance.relay.messages import Messages
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.tokens import AccessToken
from dmr_appliance.wire.outcome import DELIVERED, Outcome
from tests.support.problems import assert_problem

# What the sender's signature looks like on the wire (the relay never reads it).
SIGNATURE = "eyJhbGciOiJFUzI1NiJ9..c2lnbmF0dXJl"
TOKEN = AccessToken(
    subject="alice",
    issuer="https://home.example",
    rooms=frozenset({"ops", "lobby"}),
    jti="0" * 32,
    issued_at=0,
    not_before=0,
    expires_at=0,
    cert_thumbprint="thumb",
    kid="kid",
    signed_rooms=frozenset({"ops"}),
)


class Trust:
    def current(self) -> SimpleNamespace:
        return SimpleNamespace(check_active=lambda participant, role: None)

    def access_token(self, bearer: str, snapshot: object, thumbprint: str) -> AccessToken:
        return TOKEN

    def card(self, token: str, snapshot: object) -> SimpleNamespace:
        return SimpleNamespace(subject="bob", rooms=("ops", "lobby"), endpoint="https://bob/in")


class Deliverer:
    def __init__(self) -> None:
        self.delivered: list[str] = []

    def deliver(self, message: envelope.Envelope, recipients: list, request_id: str) -> list:
        self.delivered.append(message.id)
        return [Outcome(r.id, DELIVERED, 200, 1.0) for r in recipients]


@pytest.fixture
def relay() -> SimpleNamespace:
    meters, deliverer = RelayMetrics(), Deliverer()
    alice = identity.Caller("participant", "alice", "thumb", certificate=None)
    app = falcon.App(middleware=[web.RequestContext()])
    web.install_error_handlers(app)
    messages = Messages(
        Trust(),  # type: ignore[arg-type]
        deliverer,  # type: ignore[arg-type]
        meters,
        verifier=SimpleNamespace(caller=lambda req: alice),  # type: ignore[arg-type]
        limits=envelope.EnvelopeLimits(),
    )
    app.add_route("/v1/messages", messages)
    return SimpleNamespace(
        client=falcon.testing.TestClient(app), meters=meters, deliverer=deliverer
    )


def post(relay: SimpleNamespace, room: str, signature: str | None) -> falcon.testing.Result:
    doc = envelope.build_envelope(room=room, sender="alice", cards=["a.b.c"], payload={"n": 1})
    if signature is not None:
        doc["signature"] = signature
    return relay.client.simulate_post(
        "/v1/messages", json=doc, headers={"Authorization": "Bearer t"}
    )


def refusals(relay: SimpleNamespace) -> dict[str, float]:
    return {
        s.labels["problem"]: s.value
        for family in relay.meters.registry.collect()
        for s in family.samples
        if s.name == "dmr_relay_refusals_total" and s.value
    }


def test_an_unsigned_message_to_a_signed_room_is_refused_before_any_delivery(relay):
    doc = assert_problem(post(relay, "ops", None), 403, "signature-required")
    assert doc["title"] == "Signature required" and doc["room"] == "ops"
    assert "'ops'" in doc["detail"] and "must sign" in doc["detail"]
    assert relay.deliverer.delivered == []
    assert refusals(relay) == {"signature-required": 1.0}


def test_a_signed_message_to_a_signed_room_passes(relay):
    result = post(relay, "ops", SIGNATURE)
    assert result.status_code == 200, result.text
    assert len(relay.deliverer.delivered) == 1 and refusals(relay) == {}


def test_an_unsigned_message_to_an_unsigned_room_passes(relay):
    result = post(relay, "lobby", None)
    assert result.status_code == 200, result.text
    assert len(relay.deliverer.delivered) == 1 and refusals(relay) == {}


def test_a_token_without_the_claim_asks_for_no_signature(relay, monkeypatch):
    # A token from a home that predates room policies reads as no signed rooms.
    older = AccessToken(**{**TOKEN.__dict__, "signed_rooms": frozenset()})
    monkeypatch.setattr(Trust, "access_token", lambda *args: older)
    assert post(relay, "ops", None).status_code == 200
