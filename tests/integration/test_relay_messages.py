"""POST /v1/messages through the relay app (falcon.testing), with real tokens, real
certificates and real HTTPS recipients; every refusal is a problem+json with its code."""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import falcon.testing
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dmr_appliance import __version__, config, tokens
from dmr_appliance.files import write_atomic
from dmr_appliance.relay import sync_state as sync_state_mod
from dmr_appliance.relay.app import create_app
from dmr_appliance.relay.delivery import Deliverer
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import SyncState
from tests.support.identity import (
    CLIENT_CERT_HEADER,
    PEER_CERT_HEADER,
    cert_headers,
    direct_headers,
    escaped_cert,
)
from tests.support.problems import assert_problem
from tests.support.recipient import received, recipient_thread
from tests.support.relay_kit import ISSUER, HomeSigner, message, relay_config, thumbprint

MAX_BYTES = 4096


@dataclasses.dataclass
class Relay:
    client: falcon.testing.TestClient
    signer: HomeSigner
    trust: SyncState
    meters: RelayMetrics
    servers: dict
    logs: dict
    pki: object

    def card(self, name: str, rooms=("ops",), **kwargs) -> str:
        server = self.servers[name]
        return self.signer.card(name, f"https://127.0.0.1:{server.port}/{name}", rooms, **kwargs)

    def token(self, name: str = "alice", **kwargs) -> str:
        return self.signer.token(name, self.pki.cert("participant", name), **kwargs)

    def post(
        self,
        doc,
        *,
        token: str | None = None,
        caller=("participant", "alice"),
        headers: dict | None = None,
        body=None,
    ):
        hdrs = {"Content-Type": "application/json", **cert_headers(self.pki, *caller)}
        if token is None:
            token = self.token(caller[1] if caller[0] == "participant" else "alice")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        raw = body if body is not None else json.dumps(doc).encode()
        return self.client.simulate_post("/v1/messages", body=raw, headers=hdrs)

    def publish(self, **changes) -> None:
        """Home publishes a new sync document; the agent saves it."""
        self.signer.version += 1
        write_atomic(self.trust.path, self.signer.document(**changes))


@pytest.fixture
def relay(pki, tmp_path, monkeypatch):
    monkeypatch.setattr(sync_state_mod, "RELOAD_INTERVAL", 0.0)
    signer = HomeSigner()
    cfg = relay_config(pki, tmp_path, limits=config.BodyLimits(max_message_bytes=MAX_BYTES))
    state = SyncState.in_dir(tmp_path, issuer=ISSUER, leeway=5)
    write_atomic(state.path, signer.document())
    meters = RelayMetrics()
    deliverer = Deliverer.from_config(cfg, meters)
    with ExitStack() as stack:
        logs = {n: tmp_path / f"{n}.jsonl" for n in ("bob", "carol")}
        servers = {n: stack.enter_context(recipient_thread(pki, logs[n])) for n in logs}
        app = create_app(cfg, state, deliverer, meters)
        yield Relay(falcon.testing.TestClient(app), signer, state, meters, servers, logs, pki)
    deliverer.close()


def nothing_delivered(relay: Relay) -> bool:
    return all(received(log) == [] for log in relay.logs.values())


# --- delivered ---------------------------------------------------------------------------


def test_delivers_to_every_recipient(relay):
    doc = message([relay.card("bob"), relay.card("carol")])
    resp = relay.post(doc, headers={"X-Request-Id": "abc123"})
    assert resp.status_code == 200, resp.text
    assert resp.json["id"] == doc["id"]
    assert [(o["to"], o["outcome"], o["status"]) for o in resp.json["outcomes"]] == [
        ("bob", "delivered", 200),
        ("carol", "delivered", 200),
    ]
    for name in ("bob", "carol"):
        [got] = received(relay.logs[name])
        assert (got["id"], got["to"], got["request_id"]) == (doc["id"], [name], "abc123")
    assert relay.meters.totals() == {
        "messages": 1,
        "delivered": 2,
        "rejected": 0,
        "failed": 0,
        "refused": 0,
    }


def test_two_cards_of_one_participant_deliver_once(relay):
    doc = message([relay.card("bob"), relay.card("bob", rooms=("ops", "dev"))])
    resp = relay.post(doc)
    assert resp.status_code == 200, resp.text
    assert len(resp.json["outcomes"]) == 1
    assert len(received(relay.logs["bob"])) == 1


# --- answer codes after delivery ----------------------------------------------------------


def test_a_failed_delivery_is_502_and_lists_every_outcome(relay):
    relay.servers["carol"].status = 503
    resp = relay.post(message([relay.card("bob"), relay.card("carol")]))
    doc = assert_problem(resp, 502, "delivery-failed")
    assert {o["to"]: o["outcome"] for o in doc["outcomes"]} == {
        "bob": "delivered",
        "carol": "failed",
    }


def test_failed_wins_over_rejected(relay):
    relay.servers["bob"].status = 404
    relay.servers["carol"].status = 500
    resp = relay.post(message([relay.card("bob"), relay.card("carol")]))
    doc = assert_problem(resp, 502, "delivery-failed")
    assert {o["to"]: o["outcome"] for o in doc["outcomes"]} == {
        "bob": "rejected",
        "carol": "failed",
    }


def test_a_permanent_rejection_is_422(relay):
    relay.servers["carol"].status = 410
    resp = relay.post(message([relay.card("bob"), relay.card("carol")]))
    doc = assert_problem(resp, 422, "delivery-rejected")
    assert {o["to"]: (o["outcome"], o["status"]) for o in doc["outcomes"]} == {
        "bob": ("delivered", 200),
        "carol": ("rejected", 410),
    }


# --- readiness ------------------------------------------------------------------------------


def test_not_ready_without_a_sync_document(relay):
    relay.trust.path.unlink()
    fresh = SyncState(relay.trust.path, issuer=ISSUER, leeway=5)
    app = create_app(
        relay_config(relay.pki, relay.trust.path.parent),
        fresh,
        Deliverer.from_config(relay_config(relay.pki, relay.trust.path.parent)),
    )
    client = falcon.testing.TestClient(app)
    relay.client = client
    assert_problem(client.simulate_get("/readyz"), 503, "not-ready")
    assert_problem(relay.post(message([relay.card("bob")])), 503, "not-ready")
    write_atomic(fresh.path, relay.signer.document())
    assert client.simulate_get("/readyz").json == {"status": "ready", "sync_version": 1}
    assert relay.post(message([relay.card("bob")])).status_code == 200


# --- identity -------------------------------------------------------------------------------


def test_a_forged_header_from_a_non_router_peer_is_ignored(relay):
    # A relay's certificate at the gate, alice's in the header: the relay sees a relay.
    forged = {
        **direct_headers(relay.pki, "relay", "relay-2"),
        CLIENT_CERT_HEADER: escaped_cert(relay.pki.cert("participant", "alice")),
    }
    resp = relay.post(message([relay.card("bob")]), headers=forged)
    assert_problem(resp, 403, "forbidden")
    # bob's own certificate with alice's in the header: bob, whose token alice lacks.
    forged = {
        **direct_headers(relay.pki, "participant", "bob"),
        CLIENT_CERT_HEADER: escaped_cert(relay.pki.cert("participant", "alice")),
    }
    resp = relay.post(message([relay.card("bob")]), headers=forged)
    assert_problem(resp, 401, "token-cnf-mismatch")
    assert nothing_delivered(relay)


def test_without_the_gate_header_there_is_no_identity(relay):
    resp = relay.post(
        message([relay.card("bob")]),
        headers={
            PEER_CERT_HEADER: "",
            CLIENT_CERT_HEADER: escaped_cert(relay.pki.cert("participant", "alice")),
        },
    )
    assert_problem(resp, 403, "no-client-identity")
    assert nothing_delivered(relay)


def test_without_a_certificate_nothing_is_accepted(relay):
    assert_problem(
        relay.post(message([relay.card("bob")]), caller=(None, None)), 403, "no-client-identity"
    )


def test_only_participants_send(relay):
    assert_problem(
        relay.post(message([relay.card("bob")]), caller=("admin", "admin")), 403, "forbidden"
    )


# --- the access token -----------------------------------------------------------------------


def _foreign_key_token(relay: Relay) -> str:
    return HomeSigner().token("alice", relay.pki.cert("participant", "alice"))


def _other_issuer(relay: Relay) -> str:
    return tokens.issue_access_token(
        relay.signer.key,
        issuer="someone-else",
        subject="alice",
        rooms=["ops"],
        cert_thumbprint=thumbprint(relay.pki.cert("participant", "alice")),
        lifetime=60,
    )


def _unsigned(relay: Relay) -> str:
    claims = jwt.decode(relay.token(), options={"verify_signature": False})
    return jwt.encode(
        claims,
        None,
        algorithm="none",
        headers={"typ": tokens.ACCESS_TYP, "kid": relay.signer.key.kid},
    )


def _expired(relay: Relay) -> str:
    return relay.token(lifetime=60, now=int(datetime.now(UTC).timestamp()) - 600)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda r: "", "token-missing"),
        (lambda r: "not.a.token", "token-malformed"),
        (lambda r: r.signer.token("alice", r.pki.cert("participant", "bob")), "token-cnf-mismatch"),
        (_expired, "token-expired"),
        (_foreign_key_token, "token-unknown-kid"),
        (_other_issuer, "token-wrong-issuer"),
        (_unsigned, "token-alg-none"),
    ],
)
def test_every_token_refusal_is_401_with_its_code(relay, make, code):
    assert_problem(relay.post(message([relay.card("bob")]), token=make(relay)), 401, code)
    assert nothing_delivered(relay)
    assert relay.meters.totals()["refused"] == 1
    assert (
        relay.meters.registry.get_sample_value("dmr_relay_refusals_total", {"problem": code}) == 1
    )


def test_a_revoked_token_is_refused(relay):
    token = relay.token(jti="leaked")
    assert relay.post(message([relay.card("bob")]), token=token).status_code == 200
    relay.publish(revoked_jtis=("leaked",))
    assert_problem(relay.post(message([relay.card("bob")]), token=token), 401, "token-revoked")


# --- sender, room, recipients ---------------------------------------------------------------


def test_from_must_be_the_tokens_subject(relay):
    assert_problem(relay.post(message([relay.card("bob")], sender="carol")), 403, "sender-mismatch")


def test_the_room_must_be_in_the_token(relay):
    doc = message([relay.card("bob", rooms=("ops", "hr"))], room="hr")
    assert_problem(relay.post(doc), 403, "room-not-allowed")


@pytest.mark.parametrize("state", ["revoked", "suspended"])
def test_a_revoked_or_suspended_sender_is_refused_without_restart(relay, state):
    assert relay.post(message([relay.card("bob")])).status_code == 200
    relay.publish(**{state: ("alice",)})
    doc = assert_problem(relay.post(message([relay.card("bob")])), 403, f"sender-{state}")
    assert doc["participant"] == "alice"
    assert len(received(relay.logs["bob"])) == 1


@pytest.mark.parametrize("state", ["revoked", "suspended"])
def test_a_revoked_or_suspended_recipient_is_refused(relay, state):
    relay.publish(**{state: ("carol",)})
    resp = relay.post(message([relay.card("bob"), relay.card("carol")]))
    assert_problem(resp, 403, f"recipient-{state}")
    assert nothing_delivered(relay)


def test_a_recipient_outside_the_room_is_refused(relay):
    cards = [relay.card("bob"), relay.card("carol", rooms=("hr",))]
    assert_problem(relay.post(message(cards)), 403, "recipient-not-in-room")
    assert nothing_delivered(relay)


def test_a_card_home_did_not_sign_is_refused(relay):
    forged = HomeSigner().card("bob", "https://evil.example/")
    doc = assert_problem(
        relay.post(message([relay.card("carol"), forged])), 422, "card-unknown-kid"
    )
    assert doc["field"] == "to[1]"
    assert nothing_delivered(relay)


def test_an_expired_card_is_refused(relay):
    expired = tokens.issue_card(
        relay.signer.key,
        issuer=ISSUER,
        subject="bob",
        endpoint="https://127.0.0.1:1/",
        rooms=["ops"],
        lifetime=60,
        now=int(datetime.now(UTC).timestamp()) - 600,
    )
    assert_problem(relay.post(message([expired])), 422, "card-expired")


# --- the envelope ---------------------------------------------------------------------------


def test_an_expired_message_is_refused(relay):
    doc = message([relay.card("bob")], ttl=10, now=datetime.now(UTC) - timedelta(seconds=60))
    assert_problem(relay.post(doc), 422, "envelope-expired")
    assert nothing_delivered(relay)


def test_an_oversize_message_is_413(relay):
    doc = message([relay.card("bob")])
    doc["payload"] = {"text": "x" * MAX_BYTES}
    assert_problem(relay.post(doc), 413, "envelope-too-large")


def test_malformed_json_is_400(relay):
    assert_problem(relay.post(None, body=b'{"id": '), 400, "envelope-malformed-json")


def test_the_body_must_be_json(relay):
    resp = relay.post(None, body=b"hello", headers={"Content-Type": "text/plain"})
    assert_problem(resp, 415, "unsupported-media-type")


# --- operations -----------------------------------------------------------------------------


def test_health_metrics_and_openapi(relay):
    assert relay.client.simulate_get("/healthz").json == {"status": "ok"}
    relay.post(message([relay.card("bob")]))
    relay.post(message([relay.card("bob")], sender="carol"))
    scrape = relay.client.simulate_get("/metrics")
    assert scrape.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
    }
    assert samples[("dmr_relay_messages_total", (("outcome", "delivered"),))] == 1
    assert samples[("dmr_relay_deliveries_total", (("outcome", "delivered"),))] == 1
    assert samples[("dmr_relay_deliveries_total", (("outcome", "failed"),))] == 0
    assert samples[("dmr_relay_refusals_total", (("problem", "sender-mismatch"),))] == 1
    assert samples[("dmr_relay_sync_version", ())] == 1
    assert samples[("dmr_relay_ready", ())] == 1
    assert samples[("dmr_relay_deliveries_in_flight", ())] == 0
    assert samples[("dmr_relay_delivery_duration_seconds_count", (("outcome", "delivered"),))] == 1
    post = (("code", "200"), ("method", "POST"), ("route", "/v1/messages"))
    assert samples[("dmr_relay_request_duration_seconds_count", post)] == 1
    refused = (("code", "403"), ("method", "POST"), ("route", "/v1/messages"))
    assert samples[("dmr_relay_request_duration_seconds_count", refused)] == 1
    inf = tuple(sorted((*post, ("le", "+Inf"))))
    assert samples[("dmr_relay_request_duration_seconds_bucket", inf)] == 1
    info = [k for k in samples if k[0] == "dmr_relay_info"]
    assert info == [("dmr_relay_info", (("relay", "relay-1"), ("version", __version__)))]
    expiry = {
        dict(k[1])["certificate"]: v
        for k, v in samples.items()
        if k[0] == "dmr_certificate_expiry_timestamp_seconds"
    }
    assert set(expiry) == {"service", "ca"} and min(expiry.values()) > time.time()
    spec = relay.client.simulate_get("/openapi.json").json
    assert set(spec["paths"]) == {
        "/v1/messages",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
    assert {"200", "401", "403", "422", "502", "503"} <= set(
        spec["paths"]["/v1/messages"]["post"]["responses"]
    )


def test_only_post_is_allowed(relay):
    resp = relay.client.simulate_get("/v1/messages")
    assert_problem(resp, 405, "method-not-allowed")


def test_relay_body_without_content_length_is_read_and_capped() -> None:
    """A chunked body (no Content-Length) is read, not taken for empty, and still capped."""
    import falcon.testing

    from dmr_appliance.envelope import EnvelopeLimits
    from dmr_appliance.errors import EnvelopeError
    from dmr_appliance.relay.messages import read_body

    def chunked(body: str) -> falcon.Request:
        req = falcon.testing.create_req(
            method="POST", body=body, headers={"Content-Type": "application/json"}
        )
        del req.env["CONTENT_LENGTH"]
        return req

    limits = EnvelopeLimits(max_message_bytes=64)
    assert read_body(chunked('{"id": 1}'), limits) == b'{"id": 1}'
    with pytest.raises(EnvelopeError) as caught:
        read_body(chunked("[" + "1," * 100 + "1]"), limits)
    assert caught.value.code == "envelope-too-large" and caught.value.status == 413
