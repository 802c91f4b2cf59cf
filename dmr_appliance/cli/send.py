"""``dmr send``: send messages as a participant, with retries, failover and failure reports.

One message from ``--data``, ``--file`` or stdin, or many from ``--batch`` (JSON lines).
Signed by default, each delivery's receipt checked (``client/receipts.py``); ``--proof``
keeps the message and its receipts for ``dmr receipts verify``.
Exit status: 0 when every recipient got every message, 1 when any recipient failed or
refused one (the per-recipient outcome is printed), 2 for a usage error.

Time bound with nothing reachable: per router ``attempts`` tries, each at most the
connect timeout (a refused connection fails at once), with full-jitter pauses of at
most ``base * (1 + 2 + ... + 2**(attempts-2))`` between them (0.6 s for 3 tries); then the
failure report to home, at most 3 tries of ``HOME_TIMEOUT`` (5 s) each. Defaults,
worst case (every address silently dropping packets), one router: 3 x 3.05 + 0.6 +
3 x 5 + 0.6, about 25 s; with refused connections, about 1 s plus the report.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dmr_appliance import logs, pki
from dmr_appliance.cli import _numbers, receipts
from dmr_appliance.client import resend
from dmr_appliance.client.result import RecipientOutcome, SendResult
from dmr_appliance.client.sender import Sender
from dmr_appliance.config import PKI
from dmr_appliance.errors import DmrError, PkiError
from dmr_appliance.progress import ProgressBar
from dmr_appliance.wire.retry import RetryPolicy

DEFAULT_ROUTER = "https://127.0.0.1:8443"
BATCH_FIELDS = {"room", "to", "payload", "payload_b64", "content_type", "headers", "id"}


class UsageError(Exception):
    """Bad input: exit 2 with the message."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "send",
        help="send a message (retries, failover, failure reports)",
        description="Send a message as a participant: retries per router, "
        "failover to the next router, failed messages reported to home. "
        "Exit 0: all delivered; 1: any recipient failed or refused; 2: usage.",
    )
    _message_options(parser.add_argument_group("the message"))
    _delivery_options(parser.add_argument_group("delivery"))
    receipts.send_options(parser.add_argument_group("end-to-end proof"))
    _identity_options(parser.add_argument_group("identity"))
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="one JSON result per message")
    out.add_argument(
        "--log-level",
        default="warning",
        choices=sorted(logs.LEVELS),
        help="JSON log lines on stderr from this level (default %(default)s: "
        "retries, failovers, failures)",
    )
    parser.set_defaults(func=run)


def _message_options(what: argparse._ArgumentGroup) -> None:
    what.add_argument("--room", help="room name (default for --batch lines)")
    what.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="ID",
        help="recipient participant id; repeat for several",
    )
    source = what.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="JSON", help="the payload, a JSON value")
    source.add_argument(
        "--file",
        type=Path,
        metavar="F",
        help="the payload from a file (JSON when --content-type is JSON, else sent as bytes)",
    )
    source.add_argument(
        "--batch",
        metavar="FILE",
        help="one message per line, JSON objects "
        f"with {', '.join(sorted(BATCH_FIELDS))} ('-': stdin)",
    )
    source.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-send this participant's open failures at home (same message "
        "ids, to the recipients that failed); each delivered one is resolved",
    )
    what.add_argument("--content-type", default="application/json")
    what.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header carried to the recipients; repeatable",
    )
    what.add_argument("--id", help="message id (default: a fresh ULID)")
    what.add_argument(
        "--ttl",
        type=_numbers.whole(1),
        default=300,
        help="seconds until the message expires (default %(default)s)",
    )


def _delivery_options(how: argparse._ArgumentGroup) -> None:
    how.add_argument(
        "--router",
        action="append",
        default=[],
        metavar="URL",
        help="router base URL, in order of preference; repeatable (default: "
        "$DMR_ROUTERS, comma-separated, the --state-dir stack's, or "
        f"{DEFAULT_ROUTER})",
    )
    how.add_argument(
        "--attempts",
        type=_numbers.whole(1),
        default=3,
        help="tries per router (default %(default)s)",
    )
    how.add_argument(
        "--timeout",
        type=_numbers.positive,
        default=30.0,
        help="seconds to wait for a router's answer (default %(default)s)",
    )
    how.add_argument("--connect-timeout", type=_numbers.positive, default=3.05)
    how.add_argument(
        "--parallel",
        type=_numbers.whole(1),
        default=4,
        help="messages in flight at once with --batch (default %(default)s)",
    )
    how.add_argument(
        "--home",
        metavar="URL",
        help="home API base for tokens, cards and "
        "failure reports (default: $DMR_HOME_URL, else the first router's /v1/home)",
    )
    how.add_argument(
        "--spool",
        type=Path,
        help="where failure reports wait while home is "
        "down (default: STATE_DIR/sender/ or ~/.local/state/dmr/)",
    )


def _identity_options(who: argparse._ArgumentGroup) -> None:
    who.add_argument(
        "--as",
        dest="participant",
        default=os.environ.get("DMR_PARTICIPANT"),
        help="participant whose certificate PKI/participant/NAME.pem is used ($DMR_PARTICIPANT)",
    )
    who.add_argument(
        "--state-dir",
        type=Path,
        help="a local stack's state directory (dmr up): its PKI and router",
    )
    who.add_argument("--pki", type=Path, help=f"PKI directory (default {PKI}, or STATE_DIR/pki)")
    who.add_argument(
        "--cert", type=Path, help="client certificate (default: PKI/participant/NAME.pem)"
    )
    who.add_argument("--key", type=Path, help="its private key")
    who.add_argument("--ca", type=Path, help="deployment CA (default PKI/ca.pem)")
    who.add_argument(
        "--crl",
        type=Path,
        default=os.environ.get("DMR_CRL"),
        help="the CA's CRL receipts are checked against ($DMR_CRL; default PKI/crl.pem "
        "when the CA is PKI's and it exists)",
    )


# -- messages --------------------------------------------------------------------------------


@dataclass
class Message:
    room: str
    to: list[str]
    payload: Any = None
    payload_b64: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    id: str | None = None


def single_message(args: argparse.Namespace, stdin: IO[bytes]) -> Message:
    if not args.room or not args.to:
        raise UsageError("name the room (--room) and at least one recipient (--to)")
    raw = (
        args.data.encode()
        if args.data is not None
        else (args.file.read_bytes() if args.file is not None else stdin.read())
    )
    payload, payload_b64 = _payload(raw, args.content_type, json_required=args.data is not None)
    return Message(
        args.room,
        list(args.to),
        payload,
        payload_b64,
        args.content_type,
        _headers(args.header),
        args.id,
    )


def batch_messages(args: argparse.Namespace, stdin: IO[bytes]) -> list[Message]:
    """Every line checked before anything is sent: a typo on line 900 is a usage error."""
    if args.batch == "-":
        text = stdin.read()
    else:
        with _open(Path(args.batch)) as fh:
            text = fh.read()
    messages = []
    for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
        if line.strip():
            messages.append(_batch_line(line, number, args))
    if not messages:
        raise UsageError(f"{args.batch}: no messages")
    return messages


def _batch_line(line: str, number: int, args: argparse.Namespace) -> Message:
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"batch line {number}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) - BATCH_FIELDS:
        raise UsageError(f"batch line {number}: an object with {', '.join(sorted(BATCH_FIELDS))}")
    to = doc.get("to", args.to)
    to = [to] if isinstance(to, str) else to
    room = doc.get("room", args.room)
    if not room or not to or not isinstance(to, list):
        raise UsageError(f"batch line {number}: needs room and to (or --room and --to)")
    headers = doc.get("headers", _headers(args.header))
    return Message(
        room,
        to,
        doc.get("payload"),
        doc.get("payload_b64"),
        doc.get("content_type", args.content_type),
        headers,
        doc.get("id"),
    )


def _payload(raw: bytes, content_type: str, *, json_required: bool) -> tuple[Any, str | None]:
    media = content_type.split(";", 1)[0].strip().lower()
    if json_required or media == "application/json" or media.endswith("+json"):
        try:
            return json.loads(raw), None
        except ValueError as exc:
            raise UsageError(
                f"the payload is not JSON ({exc}); use --content-type for other data"
            ) from None
    return None, base64.b64encode(raw).decode("ascii")


def _headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--header {item!r}: write NAME=VALUE")
        headers[name] = value
    return headers


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


# -- the sender --------------------------------------------------------------------------------


def make_sender(args: argparse.Namespace) -> Sender:
    layout = pki.paths(args.pki or (args.state_dir / "pki" if args.state_dir else PKI))
    cert, key = args.cert, args.key
    if cert is None:
        if not args.participant:
            raise UsageError("say who sends: --as NAME (or $DMR_PARTICIPANT), or --cert/--key")
        try:
            cert = layout.cert("participant", args.participant)
        except PkiError as exc:
            raise UsageError(f"--as {args.participant!r}: {exc.detail}") from None
    key = key or cert.with_suffix(".key")
    ca = args.ca or layout.ca
    crl = Path(args.crl) if args.crl else None
    if crl is None and args.ca is None and layout.crl.is_file():
        crl = layout.crl  # the PKI's own CRL, only with the PKI's own CA
    for path in (cert, key, ca, *([crl] if crl else [])):
        if not path.is_file():
            raise UsageError(f"{path} does not exist (see --as, --cert, --key, --ca, --crl, --pki)")
    routers = routers_from(args)
    return Sender(
        routers,
        cert=cert,
        key=key,
        ca=ca,
        home=args.home or os.environ.get("DMR_HOME_URL") or None,
        policy=RetryPolicy(attempts=args.attempts),
        ttl=args.ttl,
        timeout=(args.connect_timeout, args.timeout),
        spool=spool_path(args),
        sign=not args.no_sign,
        crl=crl,
        require_receipts=args.require_receipts,
    )


def routers_from(args: argparse.Namespace) -> list[str]:
    if args.router:
        return list(args.router)
    if os.environ.get("DMR_ROUTERS"):
        return [r.strip() for r in os.environ["DMR_ROUTERS"].split(",") if r.strip()]
    if args.state_dir:
        return [stack_router(args.state_dir)]
    return [DEFAULT_ROUTER]


def stack_router(state_dir: Path) -> str:
    """The router URL of the local stack in ``state_dir`` (from its router.toml)."""
    path = state_dir / "config" / "router.toml"
    try:
        cfg = tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"no local stack in {state_dir} ({exc}); start it with 'dmr up' or name --router"
        ) from None
    return f"https://{cfg.get('listen_address', '127.0.0.1')}:{cfg['listen']}"


def spool_path(args: argparse.Namespace) -> Path:
    if args.spool:
        return args.spool
    if args.state_dir:
        return args.state_dir / "sender" / "failure-spool.jsonl"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "dmr" / "failure-spool.jsonl"


# -- running ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, stdin: IO[bytes] | None = None) -> int:
    logs.configure(args.log_level, stream=sys.stderr)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    try:
        if problem := receipts.send_problem(args):
            raise UsageError(problem)
        messages = (
            []
            if args.retry_failed
            else (batch_messages(args, stdin) if args.batch else [single_message(args, stdin)])
        )
        sender = make_sender(args)
    except UsageError as exc:
        print(f"dmr send: {exc}", file=sys.stderr)
        return 2
    with sender:
        sender.flush_reports()  # reports left by an earlier run while home was down
        if args.retry_failed:
            results = resend.retry_failed(sender)
        else:
            results = send_all(
                sender,
                messages,
                args.parallel if args.batch else 1,
                ProgressBar(len(messages), sys.stderr, prefix="dmr send: ") if args.batch else None,
            )
    for result in results:
        print(json.dumps(result.to_json()) if args.json else describe(result))
    if args.proof is not None and results:
        receipts.write_proof(args.proof, results[0])
    if args.retry_failed and not args.json:
        resolved = sum(r.resolved for r in results)
        print(
            f"{len(results)} open failure(s) of {sender.participant} re-sent: {resolved} "
            f"delivered and resolved, {len(results) - resolved} still open"
        )
    return 0 if all(r.ok for r in results) else 1


def send_all(
    sender: Sender, messages: list[Message], parallel: int, progress: ProgressBar | None
) -> list[SendResult]:
    results: list[SendResult | None] = [None] * len(messages)
    done = delivered = 0
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(send_one, sender, m): i for i, m in enumerate(messages)}
        for future in as_completed(futures):
            result = results[futures[future]] = future.result()
            done, delivered = done + 1, delivered + result.ok
            if progress:
                progress.update(done, f"{delivered} delivered, {done - delivered} not")
    if progress:
        progress.finish(f"{delivered} delivered, {done - delivered} not")
    return [r for r in results if r is not None]


def send_one(sender: Sender, m: Message) -> SendResult:
    try:
        return sender.send(
            m.room,
            m.to,
            m.payload,
            payload_b64=m.payload_b64,
            content_type=m.content_type,
            headers=m.headers,
            message_id=m.id,
        )
    except DmrError as exc:  # the message itself is invalid: refused here, never sent
        return refused_locally(m, exc)


def refused_locally(m: Message, exc: DmrError) -> SendResult:
    outcomes = {
        str(pid): RecipientOutcome(str(pid), "rejected", None, f"{exc.code}: {exc.detail}")
        for pid in m.to
    }
    return SendResult(m.id or "-", m.room, outcomes)


def describe(result: SendResult) -> str:
    lines = [
        f"message {result.message_id} in {result.room}: "
        f"{'delivered' if result.ok else 'NOT delivered to every recipient'}"
    ]
    for r in result.recipients.values():
        status = r.status if r.status is not None else "-"
        tries = f"{r.attempts} attempt{'s' if r.attempts != 1 else ''}"
        reason = "" if r.outcome == "delivered" else f"  {r.reason}"
        if result.signed and r.outcome == "delivered":
            reason = f"  receipt verified ({r.receipt.signer})" if r.receipt else "  no receipt"
        lines.append(f"  {r.recipient:<24} {r.outcome:<9} {status!s:<4} {tries}{reason}")
    if result.failed:
        where = (
            "reported to home"
            if result.reported
            else "spooled until home answers"
            if result.spooled
            else f"NOT reported: {result.report_error}"
        )
        lines.append(f"  failure {where}")
    if result.resent and result.ok:
        lines.append(
            "  failure resolved at home" if result.resolved else f"  {result.report_error}"
        )
    return "\n".join(lines)
