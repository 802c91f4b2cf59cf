"""relay/messages.py after delivery: the relay answers 200/502/422 with every outcome
itself (the problem documents a raised refusal would give), logs it on one ``response``
line (the message, its outcome and code, every recipient's delivery; a refusal too) and
counts the message by its outcome, not as a refusal. Trust and delivery are stand-ins."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import falcon
import falcon.testing
import pytest

from dmr_appliance import envelope, identity, logs, web
from dmr_appliance.errors import DmrError
from dmr_appliance.relay.messages import Messages
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.wire.outcome import DELIVERED, FAILED, REJECTED, Outcome

CARDS = {"a.b.c": "bob", "d.e.f": "carol"}


class Trust:
    def current(self) -> SimpleNamespace:
        return SimpleNamespace(check_active=lambda participant, role: None)

    def access_token(self, bearer: str, snapshot: object, thumbprint: str) -> SimpleNamespace:
        return SimpleNamespace(subject="alice", rooms=frozenset({"ops"}), signed_rooms=frozenset())

    def card(self, token: str, snapshot: object) -> SimpleNamespace:
        return SimpleNamespace(
            subject=CARDS[token], rooms=("ops",), endpoint=f"https://inbox/{CARDS[token]}"
        )


class Deliverer:
    def __init__(self) -> None:
        self.answers: dict[str, Outcome] = {}

    def deliver(
        self, message: envelope.Envelope, recipients: list, request_id: str
    ) -> list[Outcome]:
        return [self.answers[r.id] for r in recipients]


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure("info", instance="relay-1", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture
def relay() -> SimpleNamespace:
    meters, deliverer = RelayMetrics(), Deliverer()
    alice = identity.Caller("participant", "alice", "thumb", certificate=None)
    app = falcon.App(middleware=[web.RequestContext()])
    web.install_error_handlers(app)
    app.add_route(
        "/v1/messages",
        Messages(
            Trust(),
            deliverer,
            meters,  # type: ignore[arg-type]
            verifier=SimpleNamespace(caller=lambda req: alice),  # type: ignore[arg-type]
            limits=envelope.EnvelopeLimits(),
        ),
    )
    return SimpleNamespace(
        client=falcon.testing.TestClient(app), meters=meters, deliverer=deliverer
    )


def post(
    relay: SimpleNamespace, bob: Outcome, carol: Outcome
) -> tuple[falcon.testing.Result, dict]:
    relay.deliverer.answers = {"bob": bob, "carol": carol}
    doc = envelope.build_envelope(room="ops", sender="alice", cards=list(CARDS), payload={"n": 1})
    result = relay.client.simulate_post(
        "/v1/messages", json=doc, headers={"Authorization": "Bearer t"}
    )
    return result, doc


def events(stream: io.StringIO) -> list[dict]:
    return [json.loads(x) for x in stream.getvalue().splitlines()]


def counted(relay: SimpleNamespace) -> dict[str, float]:
    found = {}
    for family in relay.meters.registry.collect():
        for s in family.samples:
            if s.name in ("dmr_relay_messages_total", "dmr_relay_refusals_total") and s.value:
                found[f"{s.name}:{next(iter(s.labels.values()))}"] = s.value
    return found


@pytest.mark.parametrize(
    ("carol", "status", "code", "title", "detail", "level"),
    [
        (
            Outcome("carol", FAILED, None, 3.0, "timeout"),
            502,
            "delivery-failed",
            "Delivery failed",
            "1 of 2 deliveries failed; retry those",
            "warning",
        ),
        (
            Outcome("carol", REJECTED, 410, 3.0),
            422,
            "delivery-rejected",
            "Delivery rejected",
            "1 of 2 recipients rejected the message",
            "info",
        ),
    ],
)
def test_a_partly_delivered_message_is_answered_and_logged_for_what_happened(
    relay, lines, carol, status, code, title, detail, level
):
    bob = Outcome("bob", DELIVERED, 200, 2.0)
    result, doc = post(relay, bob, carol)
    outcomes = [bob.to_json(), carol.to_json()]
    # the bytes a raised DmrError gave before: same document, status and content type
    before = DmrError(
        detail, code=code, status=status, title=title, id=doc["id"], outcomes=outcomes
    ).problem(instance="/v1/messages")
    assert result.status_code == status
    assert result.headers["Content-Type"] == web.PROBLEM_JSON
    assert result.text == json.dumps(before, default=str)
    [line] = events(lines)  # one line per message: the response line says it all
    assert (line["event"], line["level"], line["message_id"], line["code"]) == (
        "response",
        level,
        doc["id"],
        code,
    )
    assert (line["outcome"], line["status"], line["from"], line["to"]) == (
        carol.outcome,
        status,
        "alice",
        ["bob", "carol"],
    )
    assert line["deliveries"] == [
        {"to": "bob", "outcome": DELIVERED, "status": 200, "ms": 2.0},
        carol.to_json(),
    ]
    assert counted(relay) == {f"dmr_relay_messages_total:{carol.outcome}": 1.0}


def test_a_delivered_message_is_200_with_its_outcomes(relay, lines):
    bob, carol = Outcome("bob", DELIVERED, 200, 2.0), Outcome("carol", DELIVERED, 204, 1.0)
    result, doc = post(relay, bob, carol)
    assert result.status_code == 200
    assert result.json == {"id": doc["id"], "outcomes": [bob.to_json(), carol.to_json()]}
    [line] = events(lines)
    assert (line["event"], line["outcome"], line["message_id"]) == (
        "response",
        DELIVERED,
        doc["id"],
    )
    assert [d["to"] for d in line["deliveries"]] == ["bob", "carol"] and "code" not in line
    assert counted(relay) == {"dmr_relay_messages_total:delivered": 1.0}


def test_a_refusal_still_goes_through_the_error_handler(relay, lines):
    result = relay.client.simulate_post(
        "/v1/messages", json={"id": "x"}, headers={"Authorization": "Bearer t"}
    )
    assert result.status_code == 422 and result.json["type"].endswith("envelope-missing-field")
    [line] = events(lines)  # the refusal on the response line, not a line of its own
    assert (line["event"], line["outcome"], line["code"], line["status"]) == (
        "response",
        "refused",
        "envelope-missing-field",
        422,
    )
    assert counted(relay) == {"dmr_relay_refusals_total:envelope-missing-field": 1.0}
