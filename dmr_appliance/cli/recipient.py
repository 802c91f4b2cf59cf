"""``dmr recipient``: run an HTTPS recipient endpoint that records what it receives."""

from __future__ import annotations

import argparse
import signal
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
        "--ca", type=Path, help="require a client certificate from this CA (the relays')"
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
    server = recipient.RecipientServer(
        args.bind,
        cert=args.cert,
        key=args.key,
        ca=args.ca,
        log_path=args.log,
        status=args.status,
        delay=args.delay,
        seen_path=args.seen,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    recipient.serve(server)
    return 0
