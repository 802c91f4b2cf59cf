"""proof/: a sender's signature and a recipient's receipt, and every hostile variant of
them a relay or another key holder could hand over: each a ProofError with its code."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from dmr_appliance import pki as pki_mod
from dmr_appliance.envelope import sender_envelope
from dmr_appliance.errors import ProofError
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust, names_host

ENDPOINT = "https://localhost:9443/inbox/bob"


def _key(pki, kind: str, name: str):
    return serialization.load_pem_private_key(pki.key(kind, name).read_bytes(), None)


def _cert(pki, kind: str, name: str):
    return pki_mod.load_certificate(pki.cert(kind, name).read_bytes())


def _signed(pki, sender: str = "alice", to=("bob", "carol"), **fields) -> dict:
    doc = sender_envelope(room="ops", sender=sender, to=list(to), payload={"n": 1.5}, **fields)
    doc["signature"] = signature.sign(
        doc, _key(pki, "participant", sender), _cert(pki, "participant", sender)
    )
    return doc


def _delivered(doc: dict, recipient: str) -> dict:
    """What a relay delivers to ``recipient``: a fresh encoding, ``to`` holding it alone."""
    return json.loads(json.dumps({**doc, "to": [recipient]}, indent=2))


@pytest.fixture(scope="module")
def trust(pki) -> Trust:
    return Trust.from_files(pki.ca, pki.crl)


def _code(call) -> str:
    with pytest.raises(ProofError) as caught:
        call()
    assert caught.value.status == 422
    return caught.value.code


def test_a_delivered_copy_verifies_for_each_signed_recipient(pki, trust):
    doc = _signed(pki)
    for recipient in ("bob", "carol"):
        verdict = signature.verify(_delivered(doc, recipient), recipient, trust)
        assert verdict.signed and verdict.sender == "alice"
        assert verdict.recipients == ("bob", "carol")
        assert verdict.digest == signature.signed_digest(doc)


def test_unsigned_is_a_verdict_not_an_error(pki, trust):
    doc = sender_envelope(room="ops", sender="alice", to=["bob"], payload=1)
    assert not signature.verify(_delivered(doc, "bob"), "bob", trust).signed


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda d: d.update(payload={"n": 2}), "signature-invalid"),
        (lambda d: d.update(id="01J0000000000000000000000A"), "signature-invalid"),
        (lambda d: d.update(room="other"), "signature-invalid"),
        (lambda d: d["headers"].update({"X-Extra": "1"}), "signature-invalid"),
        (lambda d: d.update(content_type="text/plain"), "signature-invalid"),
        (lambda d: d.update({"from": "carol"}), "signature-sender-mismatch"),
        # a cut signature: PyJWT 2.6 reads it and fails it, later ones refuse to read it
        (lambda d: d.update(signature=d["signature"][:-4]), "signature-invalid|malformed"),
        (lambda d: d.update(signature="x" * 20000), "signature-malformed"),
        (lambda d: d.update(signature="e30..AAAA"), "signature-algorithm"),
    ],
)
def test_a_changed_message_is_refused(pki, trust, change, code):
    doc = _delivered(_signed(pki), "bob")
    change(doc)
    found = _code(lambda: signature.verify(doc, "bob", trust)).removeprefix("signature-")
    assert found in code.removeprefix("signature-").split("|")


def test_a_message_retargeted_to_another_recipient_is_refused(pki, trust):
    doc = _signed(pki, to=("bob",))
    assert _code(lambda: signature.verify(_delivered(doc, "carol"), "carol", trust)) == (
        "signature-recipient"
    )


def test_an_expired_message_is_refused(pki, trust):
    doc = _delivered(_signed(pki, ttl=60), "bob")
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert _code(lambda: signature.verify(doc, "bob", trust, now=later)) == "message-expired"


def _forged(doc: dict, header: dict, key=None, alg: str = "ES256", secret=None) -> str:
    content = signature.signed_content(doc, header.get("dmr_to", ["bob"]))
    return jwt.api_jws.encode(
        content, secret or key, algorithm=alg, headers=header, is_payload_detached=True
    )


def _header(cert_der: list[str], **extra) -> dict:
    return {"typ": "dmr-message+jws", "crit": ["b64"], "x5c": cert_der, "dmr_to": ["bob"], **extra}


def _der(cert) -> list[str]:
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


@pytest.mark.parametrize(
    ("kind", "name", "code"),
    [
        ("participant", "carol", "signature-sender-mismatch"),  # another participant's key
        ("server", "recipient", "signature-cert-kind"),
        ("relay", "relay-1", "signature-cert-kind"),
        ("admin", "admin", "signature-cert-kind"),
    ],
)
def test_a_signature_by_another_key_holder_is_refused(pki, trust, kind, name, code):
    doc = _delivered(sender_envelope(room="ops", sender="alice", to=["bob"], payload=1), "bob")
    doc["signature"] = _forged(doc, _header(_der(_cert(pki, kind, name))), _key(pki, kind, name))
    assert _code(lambda: signature.verify(doc, "bob", trust)) == code


def test_alg_none_and_hs256_with_the_certificate_as_secret_are_refused(pki, trust):
    doc = _delivered(sender_envelope(room="ops", sender="alice", to=["bob"], payload=1), "bob")
    der = _der(_cert(pki, "participant", "alice"))
    doc["signature"] = _forged(doc, _header(der), alg="HS256", secret=der[0].encode())
    assert _code(lambda: signature.verify(doc, "bob", trust)) == "signature-algorithm"
    head = base64.urlsafe_b64encode(json.dumps({"alg": "none", **_header(der)}).encode())
    doc["signature"] = head.decode().rstrip("=") + "..AAAA"
    assert _code(lambda: signature.verify(doc, "bob", trust)) == "signature-algorithm"


def test_broken_certificates_are_refused(pki, trust, tmp_path: Path):
    doc = _delivered(sender_envelope(room="ops", sender="alice", to=["bob"], payload=1), "bob")
    key = _key(pki, "participant", "alice")
    der = _der(_cert(pki, "participant", "alice"))
    for x5c, code in [
        ([der[0][:200]], "signature-cert-invalid"),  # truncated
        ([], "signature-cert-invalid"),
        ([der[0], der[0]], "signature-cert-invalid"),
        ("not a list", "signature-cert-invalid"),
        (["A" * 9000], "signature-cert-invalid"),
    ]:
        doc["signature"] = _forged(doc, _header(x5c), key)
        assert _code(lambda: signature.verify(doc, "bob", trust)) == code
    other = tmp_path / "other-ca"
    pki_mod.init_ca(other)
    pki_mod.issue(other, "participant", "alice")
    foreign = pki_mod.paths(other)
    doc["signature"] = _forged(
        doc,
        _header(_der(pki_mod.load_certificate(foreign.cert("participant", "alice").read_bytes()))),
        serialization.load_pem_private_key(foreign.key("participant", "alice").read_bytes(), None),
    )
    assert _code(lambda: signature.verify(doc, "bob", trust)) == "signature-cert-untrusted"


def test_revoked_and_expired_certificates_are_refused(fresh_pki):
    doc = _signed(fresh_pki, to=("bob",))
    trust = Trust.from_files(fresh_pki.ca, fresh_pki.crl)
    late = datetime.now(UTC) + timedelta(days=3650)
    assert _code(lambda: signature.verify(_delivered(doc, "bob"), "bob", trust, now=late)) in (
        "signature-cert-expired"
    )
    pki_mod.revoke(fresh_pki.dir, "participant", "alice")
    trust = Trust.from_files(fresh_pki.ca, fresh_pki.crl)
    assert _code(lambda: signature.verify(_delivered(doc, "bob"), "bob", trust)) == (
        "signature-cert-revoked"
    )


def test_integers_beyond_two_to_the_53_cannot_be_signed(pki):
    doc = sender_envelope(room="ops", sender="alice", to=["bob"], payload={"n": 2**53})
    with pytest.raises(ValueError, match="2\\*\\*53"):
        signature.sign(doc, _key(pki, "participant", "alice"), _cert(pki, "participant", "alice"))


# --- receipts -------------------------------------------------------------------------


def _receipt(pki, doc: dict, *, kind="server", name="recipient", **claims) -> str:
    fields = {
        "message_id": doc["id"],
        "sender": doc["from"],
        "recipient": "bob",
        "endpoint": ENDPOINT,
        "digest": signature.signed_digest(doc),
        **claims,
    }
    return receipt.issue(**fields, key=_key(pki, kind, name), cert=_cert(pki, kind, name))


def _check(trust, doc: dict, token: str, **expected):
    want = {
        "message_id": doc["id"],
        "recipient": "bob",
        "endpoint": ENDPOINT,
        "digest": signature.signed_digest(doc),
        **expected,
    }
    return receipt.verify(token, trust, **want)


def test_a_receipt_verifies_against_what_was_signed(pki, trust):
    doc = _signed(pki)
    proof = _check(trust, doc, _receipt(pki, doc))
    assert (proof.recipient, proof.signer, proof.sender) == ("bob", "recipient", "alice")


@pytest.mark.parametrize(
    ("claims", "expected", "code"),
    [
        ({"digest": "sha-256:AAAA"}, {}, "receipt-mismatch"),
        ({"recipient": "carol"}, {}, "receipt-mismatch"),
        ({"message_id": "01J0000000000000000000000A"}, {}, "receipt-mismatch"),
        ({"endpoint": "https://localhost:9443/inbox/carol"}, {}, "receipt-mismatch"),
        ({"sender": "carol"}, {"sender": "alice"}, "receipt-mismatch"),
        ({}, {"endpoint": "https://elsewhere.example/inbox/bob"}, "receipt-endpoint-host"),
    ],
)
def test_a_receipt_for_something_else_is_refused(pki, trust, claims, expected, code):
    doc = _signed(pki)
    token = _receipt(pki, doc, **claims)
    assert _code(lambda: _check(trust, doc, token, **expected)) == code


def test_a_receipt_forged_by_a_relay_or_a_participant_is_refused(pki, trust):
    doc = _signed(pki)
    relay = _receipt(pki, doc, kind="relay", name="relay-1")
    assert _code(lambda: _check(trust, doc, relay)) == "receipt-cert-kind"
    bob = _receipt(pki, doc, kind="participant", name="bob")
    assert _code(lambda: _check(trust, doc, bob)) == "receipt-cert-kind"
    head, _, sig = _receipt(pki, doc).split(".")
    changed = base64.urlsafe_b64encode(b'{"digest":"x"}').decode().rstrip("=")
    assert _code(lambda: _check(trust, doc, f"{head}.{changed}.{sig}")) == "receipt-invalid"
    for junk in (None, "", "a.b", "a.b.c", "x" * 20000):
        assert _code(lambda token=junk: _check(trust, doc, token)).startswith("receipt-")


def test_names_host_matches_dns_wildcards_and_addresses(pki):
    cert = _cert(pki, "server", "recipient")
    assert names_host(cert, "localhost") and names_host(cert, "127.0.0.1")
    assert not names_host(cert, "example.org") and not names_host(cert, "127.0.0.2")


def test_no_certificate_object_is_shared_between_verifications(pki, trust):
    """cryptography 38 (Debian 12) raises "Already borrowed" when two threads read one
    certificate's extensions at once: each check gets a certificate of its own (only the
    CA's verdict is cached), and receipts verify on many threads at once (the site's
    `dmr send --batch` crashed so)."""
    doc = _signed(pki)
    token = _receipt(pki, doc)
    x5c = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["x5c"]
    now = datetime.now(UTC)
    first = trust.certificate(x5c, kind="server", what="receipt", now=now)
    assert first is not trust.certificate(x5c, kind="server", what="receipt", now=now)
    with ThreadPoolExecutor(8) as pool:
        checked = list(pool.map(lambda _: _check(trust, doc, token).signer, range(400)))
    assert checked == ["recipient"] * 400
