"""recipient.verify_delivery and ReceiptSigner: one delivery as a relay posts it, and
everything a dishonest relay (or another key holder) could post instead; each refusal an
EnvelopeError or ProofError with its code and status, never another exception."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from dmr_appliance import pki as pki_mod
from dmr_appliance.envelope import EnvelopeLimits, sender_envelope
from dmr_appliance.errors import DmrError, EnvelopeError, ProofError
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.recipient import ReceiptSigner, path_recipient, verify_delivery
from tests.support.recipient import delivery, signed_message

ENDPOINT = "https://localhost:9443/inbox/bob"


@pytest.fixture(scope="module")
def trust(pki) -> Trust:
    return Trust.from_files(pki.ca, pki.crl)


@pytest.fixture(scope="module")
def signer(pki) -> ReceiptSigner:
    return ReceiptSigner.from_files(pki.cert("server", "recipient"), pki.key("server", "recipient"))


def _refusal(call) -> DmrError:
    with pytest.raises((EnvelopeError, ProofError)) as caught:
        call()
    return caught.value


def _unsigned(**fields) -> dict:
    return sender_envelope(room="ops", sender="alice", to=["bob"], payload=1, **fields)


def test_a_signed_delivery_is_accepted_for_each_signed_recipient(pki, trust):
    doc = signed_message(pki, to=("bob", "carol"))
    for recipient in ("bob", "carol"):
        accepted = verify_delivery(delivery(doc, recipient), recipient, trust)
        assert (accepted.signed, accepted.sender, accepted.recipient) == (True, "alice", recipient)
        assert accepted.message_id == doc["id"]
        assert accepted.verdict.digest == signature.signed_digest(doc)
        assert accepted.document["to"] == [recipient]


def test_an_unsigned_delivery_is_accepted_unless_signatures_are_required(pki, trust):
    body = delivery(_unsigned(), "bob")
    accepted = verify_delivery(body, "bob", trust)
    assert (accepted.signed, accepted.sender, accepted.verdict.digest) == (False, "alice", None)
    refusal = _refusal(lambda: verify_delivery(body, "bob", trust, require_signature=True))
    assert (refusal.code, refusal.status, refusal.title) == (
        "signature-missing",
        422,
        "Signature required",
    )
    assert refusal.problem()["type"] == "urn:dmr:problem:signature-missing"


@pytest.mark.parametrize(
    "to",
    [["carol"], ["bob", "carol"], [], "bob", None, ["BOB"], [["bob"]]],
)
def test_a_delivery_not_addressed_to_this_recipient_alone_is_refused(pki, trust, to):
    doc = json.loads(delivery(signed_message(pki, to=("bob", "carol")), "bob"))
    if to is None:
        del doc["to"]
    else:
        doc["to"] = to
    refusal = _refusal(lambda: verify_delivery(json.dumps(doc).encode(), "bob", trust))
    assert (refusal.code, refusal.status) == ("delivery-wrong-recipient", 422)


def test_the_recipient_id_comes_from_the_recipient_not_the_body(pki, trust):
    """A relay posts bob's copy to carol's endpoint: the body says bob, carol knows she is
    carol; and a copy re-addressed to carol was not signed for her."""
    doc = signed_message(pki, to=("bob",))
    assert _refusal(lambda: verify_delivery(delivery(doc, "bob"), "carol", trust)).code == (
        "delivery-wrong-recipient"
    )
    assert _refusal(lambda: verify_delivery(delivery(doc, "carol"), "carol", trust)).code == (
        "signature-recipient"
    )
    # An endpoint that does not know who it is accepts nothing.
    assert _refusal(lambda: verify_delivery(delivery(doc, "bob"), "", trust)).code == (
        "delivery-wrong-recipient"
    )


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        (b"", "envelope-malformed-json", 400),
        (b"not json", "envelope-malformed-json", 400),
        (b"\xff\xfe{}", "envelope-malformed-json", 400),
        (b'{"to":["bob"],"to":["bob"]}', "envelope-malformed-json", 400),
        (b'{"n": NaN}', "envelope-malformed-json", 400),
        (b'{"n": 1e999}', "envelope-malformed-json", 400),
        (b"[" * 40 + b"]" * 40, "envelope-too-deep", 400),
        (b"[]", "envelope-not-object", 422),
        (b"null", "envelope-not-object", 422),
        (b'"bob"', "envelope-not-object", 422),
        (b'{"to":["bob"]}', "envelope-bad-id", 422),
        (b" " * 2_000_000, "envelope-too-large", 413),
    ],
)
def test_junk_is_refused_with_its_code(trust, body, code, status):
    refusal = _refusal(lambda: verify_delivery(body, "bob", trust))
    assert (refusal.code, refusal.status) == (code, status)


def test_bad_ids_and_times_of_an_unsigned_delivery_are_refused(trust):
    for change, code in [
        ({"id": 7}, "envelope-bad-id"),
        ({"id": "../../etc"}, "envelope-bad-id"),
        ({"from": ["alice"]}, "envelope-bad-from"),
        ({"expires_at": "tomorrow"}, "envelope-bad-time"),
        ({"expires_at": None}, "envelope-bad-time"),
    ]:
        doc = {**_unsigned(), **change}
        assert _refusal(lambda d=doc: verify_delivery(delivery(d, "bob"), "bob", trust)).code == (
            code
        )


def test_the_limits_are_the_callers(trust):
    body = delivery(_unsigned(), "bob")
    small = EnvelopeLimits(max_message_bytes=len(body) - 1)
    assert _refusal(lambda: verify_delivery(body, "bob", trust, limits=small)).status == 413


def test_a_signature_by_another_participant_is_refused(pki, trust):
    """carol signs a message claiming to be from alice; and alice's signature moved onto
    another message of hers does not cover it."""
    forged = signed_message(pki, sender="carol")
    forged["from"] = "alice"
    assert _refusal(lambda: verify_delivery(delivery(forged, "bob"), "bob", trust)).code == (
        "signature-sender-mismatch"
    )
    moved = _unsigned()
    moved["signature"] = signed_message(pki)["signature"]
    refusal = _refusal(lambda: verify_delivery(delivery(moved, "bob"), "bob", trust))
    assert (refusal.code, refusal.status) == ("signature-invalid", 422)


def test_an_altered_signed_delivery_is_refused(pki, trust):
    doc = json.loads(delivery(signed_message(pki), "bob"))
    doc["payload"] = {"n": 2}
    assert _refusal(lambda: verify_delivery(json.dumps(doc).encode(), "bob", trust)).code == (
        "signature-invalid"
    )


def test_an_expired_message_is_refused_signed_or_not(pki, trust):
    later = datetime.now(UTC) + timedelta(seconds=61)
    for doc in (signed_message(pki, ttl=60), _unsigned(ttl=60)):
        refusal = _refusal(
            lambda d=doc: verify_delivery(delivery(d, "bob"), "bob", trust, now=later)
        )
        assert (refusal.code, refusal.status) == ("message-expired", 422)


def test_a_revoked_sender_is_refused_once_the_crl_names_it(fresh_pki):
    trust = Trust.from_files(fresh_pki.ca, fresh_pki.crl)
    body = delivery(signed_message(fresh_pki), "bob")
    assert verify_delivery(body, "bob", trust).signed
    pki_mod.revoke(fresh_pki.dir, "participant", "alice")
    trust.revoked.refresh()  # the file changed: re-read now rather than within a second
    assert _refusal(lambda: verify_delivery(body, "bob", trust)).code == "signature-cert-revoked"


def test_mangled_deliveries_never_raise_anything_else(pki, trust):
    body = bytearray(delivery(signed_message(pki), "bob"))
    rng = random.Random(26)
    outcomes = set()
    for _ in range(300):
        mangled = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        try:
            verify_delivery(bytes(mangled), "bob", trust)
            outcomes.add("accepted")
        except (EnvelopeError, ProofError) as refusal:
            assert 400 <= refusal.status < 500
            outcomes.add(refusal.code)
    assert "signature-invalid" in outcomes and "envelope-malformed-json" in outcomes


@pytest.mark.parametrize(
    ("target", "found"),
    [
        ("/inbox/bob", "bob"),
        ("/inbox/bob/", "bob"),
        ("/inbox/bob?x=/carol", "bob"),
        ("/inbox/b%6Fb", "bob"),
        ("/", ""),
        ("", ""),
    ],
)
def test_path_recipient(target, found):
    assert path_recipient(target) == found


def test_a_receipt_names_what_the_sender_signed_and_verifies(pki, trust, signer):
    doc = signed_message(pki)
    accepted = verify_delivery(delivery(doc, "bob"), "bob", trust)
    token = signer.issue(accepted, ENDPOINT)
    found = receipt.verify(
        token,
        trust,
        message_id=doc["id"],
        recipient="bob",
        endpoint=ENDPOINT,
        digest=signature.signed_digest(doc),
    )
    assert (found.sender, found.signer) == ("alice", "recipient")


def test_an_unsigned_delivery_gets_no_receipt(trust, signer):
    accepted = verify_delivery(delivery(_unsigned(), "bob"), "bob", trust)
    assert signer.issue(accepted, ENDPOINT) is None


def test_a_receipt_signer_needs_an_ecdsa_key(pki):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    cert = pki_mod.load_certificate(pki.cert("server", "recipient").read_bytes())
    with pytest.raises(DmrError):
        ReceiptSigner(ed25519.Ed25519PrivateKey.generate(), cert)  # type: ignore[arg-type]
    key = serialization.load_pem_private_key(pki.key("server", "recipient").read_bytes(), None)
    assert ReceiptSigner(key, cert).cert == cert
