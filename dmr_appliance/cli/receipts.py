"""`dmr receipts verify FILE`: check a proof bundle offline (issue 26), with the deployment
CA and CRL alone: the message's signature and each recipient's receipt (see
``client/proof_bundle.py``). Exit 0 only when the message and every receipt verify; 1
when one does not (the reason on its line); 2 for a file that is no bundle, or a bad CA
or CRL (one line with the fix).

Also ``dmr send``'s end-to-end proof options (``--no-sign``, ``--require-receipts``,
``--proof``), which write what this command reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryptography import x509

from dmr_appliance import pki
from dmr_appliance.client.proof_bundle import (
    Bundle,
    BundleError,
    Checked,
    check_message,
    check_receipt,
)
from dmr_appliance.client.result import SendResult
from dmr_appliance.crl import CrlFile
from dmr_appliance.errors import PkiError
from dmr_appliance.proof.trust import Trust


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "receipts",
        help="check end-to-end proof: a signed message and its receipts",
        description="Check what 'dmr send --proof FILE' kept, offline.",
    )
    verbs = group.add_subparsers(dest="verb", metavar="VERB", parser_class=type(group))
    verbs.required = True
    verify = verbs.add_parser(
        "verify",
        help="check a proof bundle: the message's signature and every receipt",
        description="Check a proof bundle with the deployment CA (and CRL) alone: no home, "
        "no network. Exit 0: the message and every receipt verify; 1: one does not; "
        "2: not a bundle, or a bad CA or CRL.",
    )
    verify.add_argument("file", type=Path, help="the bundle 'dmr send --proof' wrote")
    verify.add_argument("--ca", type=Path, required=True, help="the deployment CA certificate")
    verify.add_argument("--crl", type=Path, help="the CA's CRL (revoked certificates refused)")
    verify.add_argument("--json", action="store_true", help="the verdicts as one JSON document")
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    try:
        trust = _trust(args.ca, args.crl)
        bundle = Bundle.read(args.file)
    except BundleError as exc:
        print(f"dmr receipts verify: {exc}", file=sys.stderr)
        return 2
    message = check_message(bundle.message, trust)
    checked = [check_receipt(bundle.message, token, trust) for token in bundle.receipts]
    ok = message.ok and bool(checked) and all(c.ok for c in checked)
    if args.json:
        print(json.dumps(_as_json(bundle, message, checked, ok), indent=2))
    else:
        print("\n".join(_lines(bundle, message, checked)))
    return 0 if ok else 1


def _trust(ca: Path, crl: Path | None) -> Trust:
    """The CA and CRL, each checked here: a CRL that does not load would otherwise only be
    logged (``CrlFile`` keeps serving the last good one), and revoke nothing."""
    try:
        ca_cert = pki.load_certificate(ca.read_bytes())
    except (OSError, PkiError, ValueError) as exc:
        raise BundleError(f"--ca {ca}: not a PEM certificate ({_why(exc)})") from None
    if crl is None:
        return Trust(ca_cert)
    try:
        loaded = x509.load_pem_x509_crl(crl.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"--crl {crl}: not a PEM CRL ({_why(exc)})") from None
    if not loaded.is_signature_valid(ca_cert.public_key()):
        raise BundleError(f"--crl {crl}: not signed by the CA in --ca; give that CA's CRL")
    return Trust(ca_cert, CrlFile(crl, ca_cert))


def _lines(bundle: Bundle, message: Checked, checked: list[Checked]) -> list[str]:
    doc = bundle.message
    head = f"message {doc.get('id')} from {doc.get('from')} in {doc.get('room')}: "
    lines = [head + (f"signature verified (to {message.recipient})" if message.ok else "")]
    if not message.ok:
        lines[0] += f"signature REFUSED: {message.error}"
    for c in checked:
        said = f"verified, signed by {c.signer}" if c.ok else f"REFUSED: {c.error}"
        lines.append(f"  {c.recipient:<24} {c.endpoint}  received {c.at}  {said}")
    if not checked:
        lines.append("  no receipts: nothing in the bundle proves a delivery")
    verified = sum(c.ok for c in checked)
    lines.append(f"{verified} of {len(checked)} receipt(s) verified")
    return lines


def _as_json(bundle: Bundle, message: Checked, checked: list[Checked], ok: bool) -> dict:
    return {
        "ok": ok,
        "message": {"id": bundle.message.get("id"), **message.to_json()},
        "receipts": [c.to_json() for c in checked],
    }


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "detail", None) or str(exc)


# -- dmr send's proof options ------------------------------------------------------------


def send_options(proof: argparse._ArgumentGroup) -> None:
    proof.add_argument(
        "--no-sign",
        action="store_true",
        help="send unsigned (v1) messages: no signature, no receipts checked",
    )
    proof.add_argument(
        "--require-receipts",
        action="store_true",
        help="a delivery without a verified receipt is failed (retried, then reported)",
    )
    proof.add_argument(
        "--proof",
        type=Path,
        metavar="FILE",
        help="write the signed message and its receipts to FILE (one message; check it "
        "with 'dmr receipts verify')",
    )


def send_problem(args: argparse.Namespace) -> str | None:
    """Why ``dmr send``'s proof options do not go together, or None."""
    if args.proof is not None and (args.batch or args.retry_failed):
        return "--proof keeps one message's proof: not with --batch or --retry-failed"
    if args.no_sign and (args.proof is not None or args.require_receipts):
        return "--proof and --require-receipts need signed messages: drop --no-sign"
    return None


def write_proof(path: Path, result: SendResult) -> None:
    """The proof bundle of ``result`` at ``path`` (also when some recipients failed: the
    receipts it holds prove those deliveries)."""
    try:
        bundle = Bundle.of(result)
        bundle.write(path)
    except (BundleError, OSError) as exc:
        print(f"dmr send: no proof written to {path}: {exc}", file=sys.stderr)
        return
    print(f"dmr send: proof in {path} ({len(bundle.receipts)} receipt(s))", file=sys.stderr)
