"""``dmr recipient``: run an HTTPS recipient endpoint that records what it receives and,
given the deployment CA, verifies signed deliveries and answers them with receipts."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from dmr_appliance.config_checks import bind_address
from dmr_appliance.local import recipient


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "recipient",
        help="run a demo recipient endpoint (records deliveries as JSON lines)",
        description=recipient.__doc__.splitlines()[0] if recipient.__doc__ else None,
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1:9443",
        type=_address,
        help="HOST:PORT to listen on (port 0: any free port)",
    )
    parser.add_argument("--cert", type=Path, required=True, help="server certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="its private key")
    parser.add_argument(
        "--ca",
        type=Path,
        help="the deployment CA: require a relay's client certificate from it, verify "
        "signed deliveries against it and answer them with receipts",
    )
    parser.add_argument(
        "--crl",
        type=Path,
        help="the deployment's CRL (PEM; re-read when it changes): a revoked sender's "
        "signature is refused (with --ca)",
    )
    parser.add_argument(
        "--require-signatures",
        action="store_true",
        help="refuse unsigned deliveries (422 signature-missing; with --ca)",
    )
    parser.add_argument("--log", type=Path, help="append one JSON line per delivery here")
    parser.add_argument(
        "--seen",
        type=Path,
        help="keep processed message ids in this SQLite file, so duplicates "
        "are recognised across restarts (default: in memory)",
    )
    parser.add_argument("--status", type=int, default=200, help="HTTP status to answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before it")
    parser.set_defaults(func=run)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if port == "0" and host:
        return host.strip("[]"), 0
    if bind_address(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:9443")
    return host.strip("[]"), int(port)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (systemd, `dmr up` stopping) ends it like Ctrl-C


def run(args: argparse.Namespace) -> int:
    if args.ca is None and (args.crl is not None or args.require_signatures):
        print("dmr recipient: --crl and --require-signatures need --ca", file=sys.stderr)
        return 2
    server = recipient.RecipientServer(
        args.bind,
        cert=args.cert,
        key=args.key,
        ca=args.ca,
        log_path=args.log,
        status=args.status,
        delay=args.delay,
        seen_path=args.seen,
        crl=args.crl,
        require_signatures=args.require_signatures,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    recipient.serve(server)
    return 0
