"""A ``Sender`` against an in-process home and a programmable router (issue 26 tests).

Home is the real one (falcon.testing behind a requests adapter, as alice through the
router): real tokens, real address cards naming each recipient's endpoint, real failure
reports. The router is a function of the envelope posted: by default it delivers to
every card and each recipient answers as an honest recipient library would, with a
receipt for what it verified (signed with the endpoint's server certificate of the test
PKI, which names localhost). A test swaps ``router.recipient`` to make one lie.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from dmr_appliance import pki as pki_mod
from dmr_appliance.client import Sender
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.wire.home import HomeClient
from dmr_appliance.wire.retry import RetryPolicy
from tests.support.home import InProcess, home_under_test

ROUTER = "https://router.test:8443"
HOME = "https://home.test/v1"
ENDPOINTS = {pid: f"https://localhost:9443/inbox/{pid}" for pid in ("bob", "carol")}
FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001)


def _response(request: requests.PreparedRequest, status: int, body: bytes) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp._content = status, body
    resp.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    resp.url, resp.request, resp.reason = request.url, request, str(status)
    return resp


def card_claims(card: str) -> dict[str, Any]:
    payload = card.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _key(pki, kind: str, name: str):
    return serialization.load_pem_private_key(pki.key(kind, name).read_bytes(), None)


def _cert(pki, kind: str, name: str):
    return pki_mod.load_certificate(pki.cert(kind, name).read_bytes())


@dataclass
class Recipient:
    """How a recipient answers its delivery: ``status``, and a receipt unless ``receipt``
    is False; the receipt signed by ``signer`` (kind, name) and naming ``digest`` and
    ``endpoint`` when given (a forgery), else what it verified."""

    status: int = 200
    receipt: bool = True
    signer: tuple[str, str] = ("server", "recipient")
    digest: str | None = None
    endpoint: str | None = None


@dataclass(eq=False)
class FakeRouter(BaseAdapter):
    """The router and relay and recipients: each POST delivered by card."""

    pki: Any
    recipients: dict[str, Callable[[int], Recipient]] = field(default_factory=dict)
    posted: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.trust = Trust.from_files(self.pki.ca, self.pki.crl)

    def send(self, request, **kwargs) -> requests.Response:
        doc = json.loads(request.body)
        self.posted.append(doc)
        outcomes = [self.deliver(doc, card) for card in doc["to"]]
        failed = any(o["outcome"] != "delivered" for o in outcomes)
        body = {"outcomes": outcomes}
        if failed:
            body.update(type="urn:dmr:problem:delivery-failed", detail="some failed")
        return _response(request, 502 if failed else 200, json.dumps(body).encode())

    def deliver(self, doc: dict[str, Any], card: str) -> dict[str, Any]:
        claims = card_claims(card)
        pid, endpoint = claims["sub"], claims["endpoint"]
        tries = sum(pid in [card_claims(c)["sub"] for c in d["to"]] for d in self.posted)
        how = self.recipients.get(pid, lambda n: Recipient())(tries)
        outcome = {"to": pid, "outcome": "delivered" if how.status < 300 else "failed"}
        outcome.update(status=how.status, ms=1.0)
        if how.status < 300 and how.receipt and "signature" in doc:
            delivered = json.loads(json.dumps({**doc, "to": [pid]}))  # as the relay encodes it
            verdict = signature.verify(delivered, pid, self.trust)
            outcome["receipt"] = receipt.issue(
                message_id=doc["id"],
                sender=doc["from"],
                recipient=pid,
                endpoint=how.endpoint or endpoint,
                digest=how.digest or verdict.digest,
                key=_key(self.pki, *how.signer),
                cert=_cert(self.pki, *how.signer),
            )
        return outcome

    def close(self) -> None:
        pass


@dataclass
class Kit:
    home: Any  # tests.support.home.HomeUnderTest
    router: FakeRouter
    home_client: HomeClient

    def sender(self, **options: Any) -> Sender:
        pki = self.router.pki
        sender = Sender(
            [ROUTER],
            cert=pki.cert("participant", "alice"),
            key=pki.key("participant", "alice"),
            ca=pki.ca,
            crl=options.pop("crl", pki.crl),
            home=self.home_client,
            policy=options.pop("policy", FAST),
            **options,
        )
        sender._sessions[ROUTER].mount("https://", self.router)
        return sender


def sender_kit(tmp_path: Path, pki) -> Kit:
    home = home_under_test(tmp_path, pki)
    home.add("alice", ["ops"])
    for pid, endpoint in ENDPOINTS.items():
        home.add(pid, ["ops"], endpoint=endpoint)
    home.add("dave", ["ops"])  # at https://dave.example/inbox, which no test certificate names
    session = requests.Session()
    session.mount("https://", InProcess(home.participant("alice")))
    return Kit(home, FakeRouter(pki), HomeClient(HOME, session=session))


def cli_sender(kit: Kit, monkeypatch) -> list[dict[str, Any]]:
    """``dmr send`` in this process makes its Sender through ``kit`` (the options it
    chose kept in the list returned, one dict per Sender made)."""
    from dmr_appliance.cli import send as send_cli

    made: list[dict[str, Any]] = []

    def sender(routers, **options: Any) -> Sender:
        made.append({"routers": routers, **options})
        chosen = ("sign", "crl", "require_receipts")
        return kit.sender(**{name: options[name] for name in chosen})

    monkeypatch.setattr(send_cli, "Sender", sender)
    return made
