"""recipient.Middleware around a Falcon app and a plain WSGI function: refusals answered
as problem+json without calling the app; accepted deliveries reach it with their body,
and a signed one's 2xx answer carries a receipt the sender's check accepts."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import falcon
import falcon.testing
import pytest

from dmr_appliance.envelope import EnvelopeLimits, sender_envelope
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.recipient import (
    ENVIRON_KEY,
    HEADER,
    Accepted,
    Middleware,
    ReceiptSigner,
    recipient_from_path,
    request_endpoint,
)
from dmr_appliance.recipient.middleware import read_body
from tests.support.recipient import delivery, signed_message

HOST, PORT = "localhost", 9443


@pytest.fixture(scope="module")
def trust(pki) -> Trust:
    return Trust.from_files(pki.ca, pki.crl)


@pytest.fixture(scope="module")
def signer(pki) -> ReceiptSigner:
    return ReceiptSigner.from_files(pki.cert("server", "recipient"), pki.key("server", "recipient"))


class Inbox:
    """A tiny app: answers 200 with what it got, or ``status`` from the query."""

    def __init__(self) -> None:
        self.calls: list[tuple[Accepted, bytes]] = []

    def on_post(self, req: falcon.Request, resp: falcon.Response, who: str) -> None:
        body = req.bounded_stream.read()
        accepted = req.env[ENVIRON_KEY]
        self.calls.append((accepted, body))
        resp.status = req.get_param_as_int("status") or 200
        if req.get_param_as_bool("forge"):
            resp.set_header(HEADER, "forged")
        resp.media = {"id": accepted.message_id, "signed": accepted.signed}

    def on_get(self, req: falcon.Request, resp: falcon.Response, who: str) -> None:
        resp.media = {"ok": True}


def _client(trust, signer, **kwargs):
    inbox = Inbox()
    app = falcon.App()
    app.add_route("/inbox/{who}", inbox)
    kwargs.setdefault("recipient", recipient_from_path)
    wrapped = Middleware(app, trust=trust, receipts=signer, **kwargs)
    return inbox, wrapped


def _post(app, body: bytes, path: str = "/inbox/bob", query: str = "", **headers):
    return falcon.testing.simulate_request(
        app,
        "POST",
        path,
        body=body,
        query_string=query or None,
        host=HOST,
        port=PORT,
        protocol="https",
        headers={"Content-Type": "application/json", **headers},
    )


def _receipt_of(answer, doc: dict, trust, path: str = "/inbox/bob", query: str = ""):
    url = f"https://{HOST}:{PORT}{path}" + (f"?{query}" if query else "")
    return receipt.verify(
        answer.headers[HEADER],
        trust,
        message_id=doc["id"],
        recipient="bob",
        endpoint=url,
        digest=signature.signed_digest(doc),
    )


def test_a_signed_delivery_reaches_the_app_and_is_answered_with_a_receipt(pki, trust, signer):
    inbox, app = _client(trust, signer)
    doc = signed_message(pki, to=("bob", "carol"))
    body = delivery(doc, "bob")
    answer = _post(app, body, query="box=1")
    assert answer.status_code == 200 and answer.json == {"id": doc["id"], "signed": True}
    [(accepted, seen)] = inbox.calls
    assert seen == body and accepted.sender == "alice" and accepted.recipient == "bob"
    found = _receipt_of(answer, doc, trust, query="box=1")
    assert (found.message_id, found.sender, found.signer) == (doc["id"], "alice", "recipient")


def test_unsigned_gets_no_receipt_nor_does_a_failing_answer(pki, trust, signer):
    inbox, app = _client(trust, signer)
    answer = _post(app, delivery(_unsigned(), "bob"))
    assert answer.status_code == 200 and HEADER not in answer.headers
    failing = _post(app, delivery(signed_message(pki), "bob"), query="status=503")
    assert failing.status_code == 503 and HEADER not in failing.headers
    assert len(inbox.calls) == 2  # both reached the app


def test_the_app_cannot_put_its_own_receipt(pki, trust, signer):
    _, app = _client(trust, signer)
    doc = signed_message(pki)
    answer = _post(app, delivery(doc, "bob"), query="forge=true")
    assert answer.headers[HEADER] != "forged"
    assert _receipt_of(answer, doc, trust, query="forge=true").recipient == "bob"
    _, plain = _client(trust, None)
    assert HEADER not in _post(plain, delivery(doc, "bob"), query="forge=true").headers


WRONG = "delivery-wrong-recipient"


def _unsigned() -> dict:
    return sender_envelope(room="ops", sender="alice", to=["bob"], payload=1)


def _expired(pki) -> dict:
    past = datetime.now(UTC) - timedelta(minutes=10)
    doc = sender_envelope(room="ops", sender="alice", to=["bob"], payload=1, ttl=60, now=past)
    return doc


def _by_carol(pki) -> dict:
    doc = signed_message(pki, sender="carol")
    doc["from"] = "alice"
    return doc


@pytest.mark.parametrize(
    ("make", "code", "status"),
    [
        (lambda pki: b"<html>junk", "envelope-malformed-json", 400),
        (lambda pki: b"{" * 100, "envelope-too-deep", 400),
        (lambda pki: b" " * 5000, "envelope-too-large", 413),
        (lambda pki: delivery(signed_message(pki, to=("carol",)), "carol"), WRONG, 422),
        (lambda pki: delivery(_unsigned(), "bob"), "signature-missing", 422),
        (lambda pki: delivery(_by_carol(pki), "bob"), "signature-sender-mismatch", 422),
        (lambda pki: delivery(_expired(pki), "bob"), "message-expired", 422),
    ],
)  # fmt: skip
def test_a_refused_delivery_is_answered_as_a_problem_without_calling_the_app(
    pki, trust, signer, make, code, status
):
    inbox, app = _client(
        trust, signer, require_signature=code != "message-expired",
        limits=EnvelopeLimits(max_message_bytes=4096),
    )  # fmt: skip
    answer = _post(app, make(pki))
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json["type"] == f"urn:dmr:problem:{code}"
    assert answer.json["status"] == status and answer.json["title"] and answer.json["detail"]
    assert HEADER not in answer.headers and inbox.calls == []


def test_an_altered_copy_is_refused(pki, trust, signer):
    inbox, app = _client(trust, signer)
    doc = json.loads(delivery(signed_message(pki), "bob"))
    doc["payload"] = {"n": 999}
    answer = _post(app, json.dumps(doc).encode())
    assert (answer.status_code, answer.json["type"]) == (422, "urn:dmr:problem:signature-invalid")
    assert inbox.calls == []


def test_other_methods_pass_through_unchecked(trust, signer):
    _, app = _client(trust, signer)
    answer = falcon.testing.simulate_get(app, "/inbox/bob")
    assert answer.status_code == 200 and answer.json == {"ok": True}


def test_a_plain_wsgi_function_with_a_fixed_recipient(pki, trust, signer):
    seen: list[tuple[Accepted, bytes]] = []

    def app(environ, start_response):
        length = int(environ["CONTENT_LENGTH"])
        seen.append((environ[ENVIRON_KEY], environ["wsgi.input"].read(length)))
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"thanks"]

    wrapped = Middleware(app, recipient="bob", trust=trust, receipts=signer)
    doc = signed_message(pki)
    body = delivery(doc, "bob")
    answer = _post(wrapped, body, path="/anything")
    assert (answer.status_code, answer.text) == (201, "thanks")
    assert seen[0][1] == body and seen[0][0].signed
    assert _receipt_of(answer, doc, trust, path="/anything").recipient == "bob"
    # The fixed id is this endpoint's: bob's copy posted to it as carol's is refused.
    wrong = _post(Middleware(app, recipient="carol", trust=trust), body)
    assert wrong.status_code == 422 and len(seen) == 1


def test_read_body_is_bounded_and_reads_a_chunked_body_only_when_the_server_ends_it():
    def env(data: bytes, **extra) -> dict:
        return {"wsgi.input": io.BytesIO(data), **extra}

    assert read_body(env(b"abcdef", CONTENT_LENGTH="3"), 10) == b"abc"
    assert read_body(env(b"abcdef", **{"wsgi.input_terminated": True}), 10) == b"abcdef"
    assert read_body(env(b"abcdef"), 10) == b""  # no length, no end: nothing to rely on
    for extra, code, status in [
        ({"CONTENT_LENGTH": "11"}, "envelope-too-large", 413),
        ({"wsgi.input_terminated": True}, "envelope-too-large", 413),
        ({"CONTENT_LENGTH": "-1"}, "delivery-bad-length", 400),
        ({"CONTENT_LENGTH": "ten"}, "delivery-bad-length", 400),
    ]:
        with pytest.raises(Exception) as caught:
            read_body(env(b"x" * 20, **extra), 10)
        assert (caught.value.code, caught.value.status) == (code, status)


NO_HOST = {"SERVER_NAME": "r.example", "SERVER_PORT": "443"}


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({"HTTP_HOST": "r.example:8443", "PATH_INFO": "/inbox/bob"}, "https://r.example:8443/inbox/bob"),
        ({"HTTP_HOST": "r.example", "PATH_INFO": "/in box", "QUERY_STRING": "a=1"}, "https://r.example/in%20box?a=1"),
        ({**NO_HOST, "SCRIPT_NAME": "/a", "PATH_INFO": "/x"}, "https://r.example/a/x"),
        ({"SERVER_NAME": "10.0.0.1", "SERVER_PORT": "9443", "PATH_INFO": "/x"}, "https://10.0.0.1:9443/x"),
    ],
)  # fmt: skip
def test_request_endpoint_names_the_url_the_request_came_to(environ, url):
    assert request_endpoint(environ) == url
