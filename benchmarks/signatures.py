"""Proof's cost: µs per signature, verification and receipt, against the relay's parse.

For a payload of ~1 KiB and of ~64 KiB, in alternating rounds:

  relay: parse_envelope (baseline)   the relay's decode and validation of the same message
                                     (signed, one card), what it does for every message
  json.dumps (baseline)              encoding the sender's document once
  sign                               proof.signature.sign: JCS + ES256, at the sender, per message
  JCS (signed_content)               its canonical form alone, the part that grows with the payload
  verify_delivery                    recipient.verify_delivery: the recipient's whole check of one
                                     delivery (strict decode, addressing, x5c, CRL, ES256, expiry)
  signature.verify                   proof.signature.verify alone, on the decoded document
  x5c certificate check              trust.certificate: the DER read and its CA signature checked,
                                     which every verification repeats: what a cache of
                                     certificates already seen would save

Receipts do not grow with the payload: issued (ReceiptSigner.issue, at the recipient) and
verified (proof.receipt.verify, at the sender) once per delivery, measured on the 1 KiB
message. Real keys and certificates of a deployment PKI made for the run, a real CRL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from _common import Pki, Stats, figure, header, interleaved, make_pki, note, parser, scratch
from cryptography.hazmat.primitives import serialization

from dmr_appliance import envelope, pki, tokens
from dmr_appliance.proof import jws, receipt, signature
from dmr_appliance.proof.trust import Trust
from dmr_appliance.recipient import ReceiptSigner, verify_delivery

ENDPOINT = "https://localhost:9443/inbox/bob"
SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024}
PARSE = "relay: parse_envelope (baseline)"
ENCODE = "json.dumps (baseline)"
SIGN = "sign (proof.signature.sign)"
JCS = "JCS (signature.signed_content)"
VERIFY = "verify_delivery (recipient)"
SIG_VERIFY = "signature.verify alone"
CERT = "x5c certificate check"
ISSUE = "receipt: issue (ReceiptSigner)"
CHECK = "receipt: verify (proof.receipt)"


def message(size: int) -> dict:
    """The sender's copy (``to``: ids) with a payload of about ``size`` bytes of JSON."""
    item = {"n": 1, "x": 1.5, "t": "é" + "x" * 40}  # numbers, a non-ASCII string
    count = max(1, size // len(json.dumps(item)))
    payload = {"items": [{**item, "n": i, "x": 0.5 + i} for i in range(count)]}
    return envelope.sender_envelope(room="bench", sender="alice", to=["bob"], payload=payload)


def variants(deployment: Pki, size: int, receipts: bool) -> dict[str, Callable[[], object]]:
    trust = Trust.from_files(deployment.ca, pki.paths(deployment.dir).crl)
    cert_path, key_path = deployment.pair("participant", "alice")
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    cert = pki.load_certificate(cert_path.read_bytes())
    doc = message(size)
    doc["signature"] = signature.sign(doc, key, cert)  # type: ignore[arg-type]
    home = tokens.SigningKey.generate()
    card = tokens.issue_card(
        home, issuer="home", subject="bob", endpoint=ENDPOINT, rooms=["bench"], lifetime=3600
    )
    posted = json.dumps(envelope.with_cards(doc, [card])).encode()
    delivered = json.dumps({**doc, "to": ["bob"]}, separators=(",", ":")).encode()
    decoded = json.loads(delivered)
    x5c = jws.header(doc["signature"], what="signature", typ=signature.TYP)["x5c"]
    found = {
        PARSE: lambda: envelope.parse_envelope(posted),
        ENCODE: lambda: json.dumps(doc),
        SIGN: lambda: signature.sign(doc, key, cert),  # type: ignore[arg-type]
        JCS: lambda: signature.signed_content(doc, doc["to"]),
        VERIFY: lambda: verify_delivery(delivered, "bob", trust, require_signature=True),
        SIG_VERIFY: lambda: signature.verify(decoded, "bob", trust),
        CERT: lambda: trust.certificate(
            x5c, kind="participant", what="signature", now=datetime.now(UTC)
        ),
    }
    if receipts:
        found |= receipt_variants(deployment, trust, delivered)
    return found


def receipt_variants(deployment: Pki, trust: Trust, delivered: bytes) -> dict[str, Callable]:
    signer = ReceiptSigner.from_files(*deployment.pair("server", "recipient"))
    accepted = verify_delivery(delivered, "bob", trust, require_signature=True)
    token = signer.issue(accepted, ENDPOINT)
    digest = accepted.verdict.digest

    def check() -> None:
        receipt.verify(
            token, trust, message_id=accepted.message_id, recipient="bob", endpoint=ENDPOINT,
            digest=digest,
        )  # fmt: skip

    return {ISSUE: lambda: signer.issue(accepted, ENDPOINT), CHECK: check}


def report(label: str, samples: dict[str, list[float]], posted_bytes: int) -> None:
    stats = {name: Stats.of(s) for name, s in samples.items()}
    print(f"{label} payload (the sender's document, {posted_bytes / 1024:.1f} KiB of JSON):")
    for name, s in stats.items():
        figure(f"{label}: {name}", s)
    base = stats[PARSE].median
    for name in (SIGN, VERIFY, ISSUE, CHECK):
        if name in stats:
            note(
                f"{label}: {name.partition(' (')[0]} / parse",
                f"{stats[name].median / base:5.1f}x the relay's parse "
                f"({(stats[name].median - base) * 1e6:+8.1f} µs)",
            )
    saved = stats[CERT].median / stats[VERIFY].median
    note(f"{label}: x5c check share of verify", f"{saved:5.1%} (what a certificate cache saves)")


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--messages", type=int, help="per variant (default 2000, quick 200)")
    args = cli.parse_args()
    count = args.messages or (200 if args.quick else 2000)
    rounds = 4 if args.quick else 10
    header("signatures: sign, verify, receipts vs the relay's parse", messages=count, rounds=rounds)
    with scratch("signatures") as tmp:
        deployment = make_pki(tmp / "pki")
        for i, (label, size) in enumerate(SIZES.items()):
            calls = variants(deployment, size, receipts=i == 0)
            posted = len(json.dumps(message(size)))
            # the large message: fewer calls, the same rounds
            samples = interleaved(calls, count if i == 0 else max(rounds, count // 8), rounds)
            report(label, samples, posted)


if __name__ == "__main__":
    main()
