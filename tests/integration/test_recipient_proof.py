"""`dmr recipient` verifying what relays deliver (issue 26): a signed delivery posted with
a relay's client certificate, as a relay posts it, is answered with a receipt the
sender's check accepts (a retried copy too); an altered copy is refused 422 and not
processed; a revoked sender is refused once the CRL file names it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from dmr_appliance import pki as pki_mod
from dmr_appliance.envelope import sender_envelope
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust
from tests.support.recipient import delivery, received, recipient_process, signed_message


def _relay(pki) -> requests.Session:
    """A client holding relay-1's certificate, as a relay delivers."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(pki.ca)
    session.cert = (str(pki.cert("relay", "relay-1")), str(pki.key("relay", "relay-1")))
    return session


def _post(session, port: int, body: bytes, who: str = "bob") -> requests.Response:
    url = f"https://localhost:{port}/inbox/{who}"
    return session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)


def _check_receipt(pki, answer, doc: dict, port: int) -> receipt.Receipt:
    return receipt.verify(
        answer.headers[receipt.HEADER],
        Trust.from_files(pki.ca, pki.crl),
        message_id=doc["id"],
        recipient="bob",
        endpoint=f"https://localhost:{port}/inbox/bob",
        digest=signature.signed_digest(doc),
    )


def test_a_signed_delivery_gets_a_receipt_and_an_altered_copy_is_refused(pki, tmp_path):
    log, relay = tmp_path / "got.jsonl", _relay(pki)
    first, second = signed_message(pki, to=("bob", "carol")), signed_message(pki)
    altered = {**second, "payload": {"n": 2}}
    unsigned = sender_envelope(room="ops", sender="alice", to=["bob"], payload=1)
    with recipient_process(pki, log, "--crl", str(pki.crl)) as port:
        answers = [_post(relay, port, delivery(first, "bob")) for _ in range(2)]
        refused = _post(relay, port, delivery(altered, "bob"))
        genuine = _post(relay, port, delivery(second, "bob"))
        plain = _post(relay, port, delivery(unsigned, "bob"))
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["duplicate"] for a in answers] == [False, True]
    for answer in answers:  # the retried copy needs its receipt as much as the first
        found = _check_receipt(pki, answer, first, port)
        assert (found.sender, found.recipient, found.signer) == ("alice", "bob", "recipient")
    assert refused.status_code == 422
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:dmr:problem:signature-invalid"
    assert receipt.HEADER not in refused.headers
    # Refused, so not marked seen: the genuine copy of that id is processed.
    assert (genuine.status_code, genuine.json()["duplicate"]) == (200, False)
    assert _check_receipt(pki, genuine, second, port).message_id == second["id"]
    assert plain.status_code == 200 and receipt.HEADER not in plain.headers
    records = [
        (r["id"], r["status"], r["duplicate"], r["signed"], r["signature"], r["receipt"])
        for r in received(log)
    ]
    assert records == [
        (first["id"], 200, False, True, "verified", True),
        (first["id"], 200, True, True, "verified", True),
        (second["id"], 422, False, True, "refused", False),
        (second["id"], 200, False, True, "verified", True),
        (unsigned["id"], 200, False, False, "unsigned", False),
    ]
    assert received(log)[2]["code"] == "signature-invalid"
    assert all(r["relay"] == "relay-1" and r["path"] == "/inbox/bob" for r in received(log))


def test_required_signatures_and_the_recipient_named_by_the_path(pki, tmp_path):
    log, relay = tmp_path / "got.jsonl", _relay(pki)
    unsigned = sender_envelope(room="ops", sender="alice", to=["bob"], payload=1)
    for_bob = signed_message(pki)
    with recipient_process(pki, log, "--crl", str(pki.crl), "--require-signatures") as port:
        missing = _post(relay, port, delivery(unsigned, "bob"))
        elsewhere = _post(relay, port, delivery(for_bob, "bob"), who="carol")
        readdressed = _post(relay, port, delivery(for_bob, "carol"), who="carol")
        junk = _post(relay, port, b"<html>")
    assert (missing.status_code, missing.json()["title"]) == (422, "Signature required")
    codes = [a.json()["type"].rpartition(":")[2] for a in (missing, elsewhere, readdressed, junk)]
    assert codes == [
        "signature-missing",
        "delivery-wrong-recipient",
        "signature-recipient",
        "envelope-malformed-json",
    ]
    assert [(r["status"], r["code"]) for r in received(log)] == [
        (422, "signature-missing"),
        (422, "delivery-wrong-recipient"),
        (422, "signature-recipient"),
        (400, "envelope-malformed-json"),
    ]


def test_a_sender_revoked_while_it_runs_is_refused(fresh_pki, tmp_path):
    log, relay = tmp_path / "got.jsonl", _relay(fresh_pki)
    with recipient_process(fresh_pki, log, "--crl", str(fresh_pki.crl)) as port:
        assert _post(relay, port, delivery(signed_message(fresh_pki), "bob")).status_code == 200
        pki_mod.revoke(fresh_pki.dir, "participant", "alice")
        deadline = time.monotonic() + 10
        while True:  # the CRL file is re-read at most once a second
            answer = _post(relay, port, delivery(signed_message(fresh_pki), "bob"))
            if answer.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert answer.status_code == 422
    assert answer.json()["type"] == "urn:dmr:problem:signature-cert-revoked"


@pytest.mark.parametrize("flag", [["--crl", "x.pem"], ["--require-signatures"]])
def test_verifying_needs_the_ca(flag):
    argv = [sys.executable, "-m", "dmr_appliance", "recipient", "--cert", "c", "--key", "k"]
    done = subprocess.run([*argv, *flag], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--ca" in done.stderr
