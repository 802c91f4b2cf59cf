"""proof/ against an independent JOSE implementation (joserfc, RFC 7797 included).

Our signatures (detached, ``b64: false``, over the RFC 8785 content) and receipts verify
with joserfc given the content and the x5c certificate's key; a message signed and a
receipt issued by joserfc verify with proof/. A last check recomputes the RFC 7797
signing input by hand (cryptography only), so that two libraries agreeing on a mistake
would still be caught. Each test also shows the other side refusing a changed copy, so it
would fail if verification stopped checking anything.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dmr_appliance import pki as pki_mod
from dmr_appliance.envelope import sender_envelope
from dmr_appliance.errors import ProofError
from dmr_appliance.proof import receipt, signature
from dmr_appliance.proof.trust import Trust, x5c

joserfc_jws = pytest.importorskip("joserfc.jws")
joserfc_jwk = pytest.importorskip("joserfc.jwk")
joserfc_errors = pytest.importorskip("joserfc.errors")
joserfc_registry = pytest.importorskip("joserfc.registry")

ENDPOINT = "https://localhost:9443/inbox/bob"
PAYLOAD = {"text": "héllo, 世界 \u2028", "n": 1.5, "big": 2**53 - 1, "list": [1e21, -0.0, True]}


class _Registry(joserfc_jws.JWSRegistry):
    # joserfc's defaults (512-byte header, 8000-byte payload in 1.5) are below an x5c
    # header and a 64 KiB message; the limits are joserfc's own, not part of the format.
    max_header_length = 8192
    max_payload_length = 200_000


def _registry() -> Any:
    dmr_to = joserfc_registry.HeaderParameter(
        "recipients a signature is for", joserfc_registry.is_list_str
    )
    return _Registry(header_registry={"dmr_to": dmr_to}, algorithms=["ES256"])


def _key(pki, kind: str, name: str) -> ec.EllipticCurvePrivateKey:
    return serialization.load_pem_private_key(pki.key(kind, name).read_bytes(), None)


def _cert(pki, kind: str, name: str):
    return pki_mod.load_certificate(pki.cert(kind, name).read_bytes())


def _public_jwk(pki, kind: str, name: str) -> Any:
    """The key of the certificate as joserfc reads it, from the certificate's own key."""
    public = _cert(pki, kind, name).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return joserfc_jwk.ECKey.import_key(pem)


def _private_jwk(pki, kind: str, name: str) -> Any:
    return joserfc_jwk.ECKey.import_key(pki.key(kind, name).read_bytes())


def _message(size: int = 0) -> dict:
    payload = {**PAYLOAD, "pad": "x" * size}
    return sender_envelope(room="ops", sender="alice", to=["carol", "bob"], payload=payload)


def _delivered(doc: dict, recipient: str) -> dict:
    """What a relay delivers: decoded and encoded anew, ``to`` holding ``recipient`` alone."""
    return json.loads(json.dumps({**doc, "to": [recipient]}, indent=1, ensure_ascii=True))


@pytest.fixture(scope="module")
def trust(pki) -> Trust:
    return Trust.from_files(pki.ca, pki.crl)


@pytest.mark.parametrize("size", [0, 64 * 1024])
def test_our_signature_verifies_with_joserfc(pki, size):
    doc = _message(size)
    token = signature.sign(
        doc, _key(pki, "participant", "alice"), _cert(pki, "participant", "alice")
    )
    assert token.split(".")[1] == ""  # detached: the envelope carries the content
    content = signature.signed_content(_delivered(doc, "bob"), ["bob", "carol"])
    found = joserfc_jws.deserialize_compact(
        token, _public_jwk(pki, "participant", "alice"), registry=_registry(), payload=content
    )
    assert found.payload == content
    assert found.headers() == {
        "alg": "ES256",
        "typ": "dmr-message+jws",
        "b64": False,
        "crit": ["b64"],
        "x5c": x5c(_cert(pki, "participant", "alice")),
        "dmr_to": ["bob", "carol"],
    }
    changed = content.replace(b'"n":1.5', b'"n":2.5')
    assert changed != content
    with pytest.raises(joserfc_errors.BadSignatureError):
        joserfc_jws.deserialize_compact(
            token, _public_jwk(pki, "participant", "alice"), registry=_registry(), payload=changed
        )
    with pytest.raises(joserfc_errors.BadSignatureError):  # another participant's key
        joserfc_jws.deserialize_compact(
            token, _public_jwk(pki, "participant", "carol"), registry=_registry(), payload=content
        )


def test_our_receipt_verifies_with_joserfc(pki):
    doc = _message()
    digest = signature.signed_digest(doc)
    token = receipt.issue(
        message_id=doc["id"],
        sender="alice",
        recipient="bob",
        endpoint=ENDPOINT,
        digest=digest,
        key=_key(pki, "server", "recipient"),
        cert=_cert(pki, "server", "recipient"),
    )
    found = joserfc_jws.deserialize_compact(
        token, _public_jwk(pki, "server", "recipient"), registry=_registry()
    )
    assert found.headers()["typ"] == "dmr-receipt+jws"
    assert found.headers()["x5c"] == x5c(_cert(pki, "server", "recipient"))
    claims = json.loads(found.payload)
    assert {k: claims[k] for k in ("id", "from", "to", "endpoint", "digest")} == {
        "id": doc["id"],
        "from": "alice",
        "to": "bob",
        "endpoint": ENDPOINT,
        "digest": digest,
    }
    with pytest.raises(joserfc_errors.BadSignatureError):  # the relay's key is not the signer
        joserfc_jws.deserialize_compact(
            token, _public_jwk(pki, "relay", "relay-1"), registry=_registry()
        )


def _joserfc_signature(pki, doc: dict) -> str:
    header = {
        "alg": "ES256",
        "typ": "dmr-message+jws",
        "b64": False,
        "crit": ["b64"],
        "x5c": x5c(_cert(pki, "participant", "alice")),
        "dmr_to": sorted(doc["to"]),
    }
    content = signature.signed_content(doc, doc["to"])
    return joserfc_jws.serialize_compact(
        header, content, _private_jwk(pki, "participant", "alice"), registry=_registry()
    )


@pytest.mark.parametrize("size", [0, 64 * 1024])
def test_a_joserfc_signature_verifies_with_ours(pki, trust, size):
    doc = _message(size)
    doc["signature"] = _joserfc_signature(pki, doc)
    assert doc["signature"].split(".")[1] == ""  # JSON content is never inline
    for recipient in ("bob", "carol"):
        verdict = signature.verify(_delivered(doc, recipient), recipient, trust)
        assert verdict.signed and verdict.sender == "alice"
        assert verdict.recipients == ("bob", "carol")
        assert verdict.digest == signature.signed_digest(doc)
    changed = _delivered(doc, "bob")
    changed["payload"]["n"] = 2.5
    with pytest.raises(ProofError) as caught:
        signature.verify(changed, "bob", trust)
    assert caught.value.code == "signature-invalid"


def test_a_joserfc_receipt_verifies_with_ours(pki, trust):
    doc = _message()
    digest = signature.signed_digest(doc)
    claims = {
        "id": doc["id"],
        "from": "alice",
        "to": "bob",
        "endpoint": ENDPOINT,
        "digest": digest,
        "received_at": "2026-12-06T12:00:00Z",
    }
    header = {
        "alg": "ES256",
        "typ": "dmr-receipt+jws",
        "x5c": x5c(_cert(pki, "server", "recipient")),
    }
    token = joserfc_jws.serialize_compact(
        header,
        json.dumps(claims, separators=(",", ":")),
        _private_jwk(pki, "server", "recipient"),
        registry=_registry(),
    )
    found = receipt.verify(
        token, trust, message_id=doc["id"], recipient="bob", endpoint=ENDPOINT, digest=digest
    )
    assert (found.sender, found.recipient, found.signer) == ("alice", "bob", "recipient")
    with pytest.raises(ProofError) as caught:
        receipt.verify(
            token, trust, message_id=doc["id"], recipient="bob", endpoint=ENDPOINT, digest="x"
        )
    assert caught.value.code == "receipt-mismatch"


def test_the_signing_input_is_rfc7797_unencoded(pki):
    """By hand, cryptography only: ES256 over ``BASE64URL(header) || '.' || content``."""
    doc = _message()
    token = signature.sign(
        doc, _key(pki, "participant", "alice"), _cert(pki, "participant", "alice")
    )
    head, _, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    assert len(raw) == 64  # JWS ES256: r || s, 32 bytes each, not DER
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    content = signature.signed_content(doc, doc["to"])
    public = _cert(pki, "participant", "alice").public_key()
    public.verify(der, head.encode() + b"." + content, ec.ECDSA(hashes.SHA256()))
    encoded = base64.urlsafe_b64encode(content).rstrip(b"=")
    with pytest.raises(InvalidSignature):  # not the b64: true input
        public.verify(der, head.encode() + b"." + encoded, ec.ECDSA(hashes.SHA256()))
