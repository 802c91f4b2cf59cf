"""The relay passes end-to-end proof on without touching it, as a real process (`dmr relay
serve` under gunicorn behind its gate) delivering to a real HTTPS recipient: the sender's
``signature`` reaches the recipient byte for byte, each recipient's DMR-Receipt answer
header is listed unchanged in that recipient's outcome, and one that cannot be a receipt
(longer than the relay keeps, or not shaped as a compact JWS) is dropped."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from dmr_appliance import config, envelope, tls_profile
from dmr_appliance import pki as pki_mod
from dmr_appliance.files import write_atomic
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.relay.delivery import MAX_RECEIPT_CHARS
from tests.support import relay_kit
from tests.support.apps import App
from tests.support.https import mtls_session
from tests.support.identity import forwarded
from tests.support.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.needs_nginx]


class Inbox(ThreadingHTTPServer):
    """A recipient over mutual TLS that keeps every body as it came and answers each path
    with the DMR-Receipt header the test set for it."""

    daemon_threads = True

    def __init__(self, pki) -> None:
        super().__init__(("127.0.0.1", 0), InboxHandler)
        context = tls_profile.apply(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
        context.load_cert_chain(
            str(pki.cert("server", "recipient")), str(pki.key("server", "recipient"))
        )
        context.load_verify_locations(cafile=str(pki.ca))
        context.verify_mode = ssl.CERT_REQUIRED
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.receipts: dict[str, str] = {}
        self.bodies: list[tuple[str, bytes]] = []

    def url(self, pid: str) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/inbox/{pid}"


class InboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Inbox

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append((self.path, body))
        self.send_response(200)
        if self.path in self.server.receipts:
            self.send_header("DMR-Receipt", self.server.receipts[self.path])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Relay:
    url: str
    session: requests.Session
    token: str
    signer: relay_kit.HomeSigner
    inbox: Inbox

    def send(self, doc: dict, pki) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            **forwarded(pki, "participant", "alice"),
        }
        body = json.dumps(doc).encode()
        return self.session.post(self.url + "/v1/messages", data=body, headers=headers, timeout=10)

    def cards(self, *pids: str) -> list[str]:
        return [self.signer.card(pid, self.inbox.url(pid)) for pid in pids]


@pytest.fixture(scope="module")
def relay(pki, tmp_path_factory) -> Iterator[Relay]:
    tmp = tmp_path_factory.mktemp("passthrough")
    state = tmp / "state"
    state.mkdir()
    signer = relay_kit.HomeSigner()
    write_atomic(state / "sync.json", signer.document())  # home is down: the saved document
    port = free_port()
    cfg = relay_kit.relay_config(
        pki,
        state,
        bind=f"127.0.0.1:{port}",
        workers=1,
        threads=4,
        home_url=f"https://127.0.0.1:{free_port()}/v1/home",
    )
    (tmp / "relay.toml").write_text(config.to_toml(cfg))
    session = mtls_session(pki.ca, pki.cert("router", "router"), pki.key("router", "router"))
    url = f"https://127.0.0.1:{port}"
    inbox = Inbox(pki)
    threading.Thread(target=inbox.serve_forever, args=(0.05,), daemon=True).start()
    app = App("relay", tmp / "relay.toml", tmp).start()
    try:
        app.wait_ready(lambda: session.get(url + "/readyz", timeout=2).ok, timeout=60)
        token = signer.token("alice", pki.cert("participant", "alice"))
        yield Relay(url, session, token, signer, inbox)
    finally:
        app.stop()
        inbox.shutdown()
        inbox.server_close()


def _key(pki, kind: str, name: str):
    return serialization.load_pem_private_key(pki.key(kind, name).read_bytes(), None)


def _signed(pki, relay: Relay, *pids: str, text: str = "hello") -> tuple[dict, dict]:
    """The sender's signed copy (``to``: ids) and what it posts (``to``: cards)."""
    doc = envelope.sender_envelope(room="ops", sender="alice", to=list(pids), payload={"t": text})
    cert = pki_mod.load_certificate(pki.cert("participant", "alice").read_bytes())
    doc["signature"] = signature.sign(doc, _key(pki, "participant", "alice"), cert)
    return doc, envelope.with_cards(doc, relay.cards(*pids))


def _receipt_for(pki, relay: Relay, doc: dict, pid: str) -> str:
    cert = pki_mod.load_certificate(pki.cert("server", "recipient").read_bytes())
    return receipt.issue(
        message_id=doc["id"],
        sender="alice",
        recipient=pid,
        endpoint=relay.inbox.url(pid),
        digest=signature.signed_digest(doc),
        key=_key(pki, "server", "recipient"),
        cert=cert,
    )


def _outcomes(resp: requests.Response) -> dict[str, dict]:
    return {o["to"]: o for o in resp.json()["outcomes"]}


def _bodies(relay: Relay, message_id: str) -> dict[str, bytes]:
    return {
        path.rpartition("/")[2]: body
        for path, body in relay.inbox.bodies
        if json.loads(body)["id"] == message_id
    }


def test_each_recipients_receipt_is_listed_unchanged(pki, relay):
    doc, posted = _signed(pki, relay, "bob", "carol")
    receipts = {pid: _receipt_for(pki, relay, doc, pid) for pid in ("bob", "carol")}
    for pid, token in receipts.items():
        relay.inbox.receipts[f"/inbox/{pid}"] = token
    resp = relay.send(posted, pki)
    assert resp.status_code == 200, resp.text
    outcomes = _outcomes(resp)
    assert {pid: o["receipt"] for pid, o in outcomes.items()} == receipts
    trust = Trust.from_files(pki.ca, pki.crl)
    for pid, outcome in outcomes.items():  # and the sender can check each one
        proof = receipt.verify(
            outcome["receipt"],
            trust,
            message_id=doc["id"],
            recipient=pid,
            endpoint=relay.inbox.url(pid),
            digest=signature.signed_digest(doc),
        )
        assert proof.recipient == pid


def _jws_shaped(length: int) -> str:
    return "a" * (length - 4) + ".b.c"


@pytest.mark.parametrize(
    "header",
    [
        _jws_shaped(MAX_RECEIPT_CHARS + 1),  # longer than the relay keeps
        "not a receipt",
        "a.b",
        "a.b.c.d",
        "a.b.c;x",
        "eyJ0eXAiOiJ4In0.e30.+/=",  # standard base64, not base64url
    ],
    ids=["oversized", "words", "two-parts", "four-parts", "trailing", "not-base64url"],
)
def test_a_header_that_cannot_be_a_receipt_is_dropped(pki, relay, header):
    _, posted = _signed(pki, relay, "bob")
    relay.inbox.receipts["/inbox/bob"] = header
    resp = relay.send(posted, pki)
    assert resp.status_code == 200, resp.text
    outcome = _outcomes(resp)["bob"]
    assert outcome["outcome"] == "delivered"
    assert "receipt" not in outcome


def test_a_jws_shaped_header_at_the_limit_is_kept(pki, relay):
    # The other side of the bound: the relay keeps it (the sender, not the relay, checks it).
    _, posted = _signed(pki, relay, "bob")
    relay.inbox.receipts["/inbox/bob"] = _jws_shaped(MAX_RECEIPT_CHARS)
    resp = relay.send(posted, pki)
    assert _outcomes(resp)["bob"]["receipt"] == _jws_shaped(MAX_RECEIPT_CHARS)


def test_the_signature_reaches_each_recipient_byte_for_byte(pki, relay):
    doc, posted = _signed(pki, relay, "bob", "carol", text="héllo \u2028 " + "x" * 900)
    relay.inbox.receipts.clear()
    resp = relay.send(posted, pki)
    assert resp.status_code == 200, resp.text
    assert all("receipt" not in o for o in resp.json()["outcomes"])
    bodies = _bodies(relay, doc["id"])
    assert set(bodies) == {"bob", "carol"}
    trust = Trust.from_files(pki.ca, pki.crl)
    for pid, body in bodies.items():
        # the exact characters, not only an equal value: a JWS has one spelling
        assert b'"signature":' + json.dumps(doc["signature"]).encode() in body
        delivered = json.loads(body)
        assert delivered["signature"] == doc["signature"] and delivered["to"] == [pid]
        verdict = signature.verify(delivered, pid, trust)
        assert verdict.signed and verdict.digest == signature.signed_digest(doc)


def test_an_unsigned_message_arrives_without_a_signature(pki, relay):
    doc = envelope.sender_envelope(room="ops", sender="alice", to=["bob"], payload={"t": 1})
    resp = relay.send(envelope.with_cards(doc, relay.cards("bob")), pki)
    assert resp.status_code == 200, resp.text
    assert "signature" not in json.loads(_bodies(relay, doc["id"])["bob"])


def test_a_malformed_signature_is_refused_before_any_delivery(pki, relay):
    doc, posted = _signed(pki, relay, "bob")
    posted["signature"] = "not a jws"
    resp = relay.send(posted, pki)
    assert resp.status_code == 422, resp.text
    assert resp.json()["type"] == "urn:dmr:problem:envelope-bad-signature"
    assert _bodies(relay, doc["id"]) == {}
