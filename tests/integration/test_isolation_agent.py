"""Issue 22, item 6: what a holder of a deployment certificate that is not home's or a
router's, or a home that goes back in time, can do to a relay's sync agent: nothing.

Each "home" here is a small HTTPS server with a certificate of the test PKI that answers
``GET /sync`` with the bytes and signature header a test gives it (tests/support/home.py
runs the real one; test_relay_agent.py proves the agent against it)."""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dmr_appliance import sync_signature, tokens
from dmr_appliance.relay.agent import Agent
from dmr_appliance.relay.home_peer import Refused
from dmr_appliance.relay.metrics import RelayMetrics
from dmr_appliance.relay.sync_state import SYNC_FILE, Snapshot
from tests.support.relay_kit import HomeSigner, relay_config

pytestmark = pytest.mark.slow


class DocumentServer:
    """Answers every request with ``body`` and ``headers``; ``requests`` counts them."""

    def __init__(self, pki: Any, kind: str, name: str) -> None:
        self.body, self.headers, self.requests = b"{}", {}, 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.cert(kind, name), pki.key(kind, name))
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(200)
                for header, value in {
                    **server.headers,
                    "Content-Type": "application/json",
                    "Content-Length": str(len(server.body)),
                }.items():
                    self.send_header(header, value)
                self.end_headers()
                self.wfile.write(server.body)

            do_POST = do_GET

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> Any:
                sock, addr = super().get_request()
                return context.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the agent hanging up on an impostor is the point

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/v1/home"

    def serve(self, body: bytes, *keys: tokens.SigningKey) -> None:
        """Answer ``body``, signed by ``keys`` (none: unsigned)."""
        self.body = body
        self.headers = {sync_signature.HEADER: sync_signature.sign(body, keys)} if keys else {}


@contextmanager
def serving(pki: Any, kind: str, name: str) -> Iterator[DocumentServer]:
    server = DocumentServer(pki, kind, name)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def agent_for(pki: Any, tmp_path: Any, *urls: str) -> Agent:
    cfg = relay_config(pki, tmp_path / "relay", home_url=urls[0], home_failover=list(urls[1:]))
    return Agent(cfg, RelayMetrics())


def held(tmp_path: Any) -> Snapshot:
    return Snapshot.parse((tmp_path / "relay" / SYNC_FILE).read_bytes())


def refusals(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [
        r.dmr_fields["reason"]
        for r in caplog.records  # type: ignore[attr-defined]
        if getattr(r, "dmr_event", None) == event
    ]


def forged(signer: HomeSigner) -> tuple[bytes, tokens.SigningKey]:
    """Version 999999, a foreign key beside home's, signed by the foreign key."""
    foreign = tokens.SigningKey.generate()
    doc = json.loads(
        HomeSigner(key=foreign, version=999_999).document(
            keys=[signer.key.public_jwk(), foreign.public_jwk()]
        )
    )
    return json.dumps(doc).encode(), foreign


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("server", "recipient"),  # a recipient's (or the log host's) server certificate
        ("server", "router"),  # a server certificate that merely calls itself router
        ("relay", "relay-2"),  # another relay
    ],
)
def test_a_deployment_certificate_not_homes_cannot_feed_the_relay(
    pki, tmp_path, caplog, kind, name
):
    caplog.set_level(logging.INFO, logger="dmr.relay.agent")
    signer = HomeSigner(version=5)
    with serving(pki, kind, name) as impostor, serving(pki, "router", "router") as router:
        router.serve(signer.document(), signer.key)
        body, foreign = forged(signer)
        impostor.serve(body, foreign)
        # The impostor on the URL tried first: refused at once, the router serves.
        agent = agent_for(pki, tmp_path, impostor.url, router.url)
        assert agent.poll_once() is True
        assert held(tmp_path).version == 5 and agent.home == router.url
        # The impostor as the only URL: nothing is installed, and it never saw a request.
        agent = agent_for(pki, tmp_path, impostor.url)
        with pytest.raises(Refused, match="neither a router's nor home's"):
            agent.poll_once()
        with pytest.raises(Refused, match="neither a router's nor home's"):
            agent.heartbeat()
    assert held(tmp_path).version == 5 and agent.version == 5
    assert impostor.requests == 0
    assert refusals(caplog, "home-refused") == ["not-home"] * 3
    assert (
        agent.meters.registry.get_sample_value(
            "dmr_relay_sync_refused_total", {"reason": "not-home"}
        )
        == 2
    )


def test_homes_own_certificate_is_home_and_home_names_can_name_another(pki, tmp_path):
    signer = HomeSigner(version=2)
    with serving(pki, "server", "home") as gate, serving(pki, "server", "recipient") as other:
        gate.serve(signer.document(), signer.key)
        assert agent_for(pki, tmp_path, gate.url).poll_once() is True
        signer.version = 3
        other.serve(signer.document(), signer.key)
        cfg = relay_config(pki, tmp_path / "relay", home_url=other.url, home_names=["recipient"])
        assert Agent(cfg, RelayMetrics()).poll_once() is True
    assert held(tmp_path).version == 3


def test_a_document_signed_by_a_foreign_key_is_refused(pki, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dmr.relay.agent")
    signer = HomeSigner(version=7)
    with serving(pki, "server", "home") as gate:
        gate.serve(signer.document(), signer.key)
        agent = agent_for(pki, tmp_path, gate.url)
        assert agent.poll_once() is True
        body, foreign = forged(signer)
        for signers in ((foreign,), ()):  # signed by a key home never published; unsigned
            gate.serve(body, *signers)
            with pytest.raises(Refused, match=r"(?i)signature"):
                agent.poll_once()
        signer.version = 8  # home's own next document still goes in
        gate.serve(signer.document(), signer.key)
        assert agent.poll_once() is True
    assert held(tmp_path).version == 8 and held(tmp_path).keys.kids == {signer.key.kid}
    assert refusals(caplog, "sync-document-refused") == ["signer-unknown", "unsigned"]


def test_a_first_document_must_be_signed_by_its_own_keys(pki, tmp_path):
    signer = HomeSigner()
    with serving(pki, "router", "router") as router:
        router.serve(signer.document(), tokens.SigningKey.generate())
        with pytest.raises(Refused, match=r"(?i)signature"):
            agent_for(pki, tmp_path, router.url).poll_once()
    assert not (tmp_path / "relay" / SYNC_FILE).exists()


def test_a_rollback_is_refused_and_the_floor_survives_a_restart(pki, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dmr.relay.agent")
    signer = HomeSigner(version=5)
    with serving(pki, "router", "router") as router:
        router.serve(signer.document(), signer.key)
        assert agent_for(pki, tmp_path, router.url).poll_once() is True
        signer.version = 3  # home's genuine key and certificate, an older document
        router.serve(signer.document(revoked=("mallory",)), signer.key)
        for _ in range(2):  # the running agent, then a restarted one
            agent = agent_for(pki, tmp_path, router.url)
            with pytest.raises(Refused, match="older"):
                agent.poll_once()
            assert held(tmp_path).version == 5 and agent.version == 5
        signer.version = 5  # the same version again: nothing to do
        router.serve(signer.document(revoked=("mallory",)), signer.key)
        assert agent.poll_once() is False
        assert "mallory" not in held(tmp_path).revoked
    assert refusals(caplog, "sync-document-refused") == ["older", "older"]


def test_a_rotation_reaches_the_relay_through_the_overlap(pki, tmp_path):
    signer = HomeSigner(version=1)
    with serving(pki, "router", "router") as router:
        router.serve(signer.document(), signer.key)
        agent = agent_for(pki, tmp_path, router.url)
        assert agent.poll_once() is True
        old, new = signer.key, tokens.SigningKey.generate()
        signer.version = 2  # home publishes both and signs with both
        router.serve(signer.document(keys=[new.public_jwk(), old.public_jwk()]), new, old)
        assert agent.poll_once() is True
        signer.version, signer.key = 3, new  # the old key is no longer published
        router.serve(signer.document(), new)
        assert agent_for(pki, tmp_path, router.url).poll_once() is True  # after a restart
    assert held(tmp_path).keys.kids == {new.kid}
