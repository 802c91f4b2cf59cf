"""``dmr demo``: start the local stack, run the scenario of ``dmr_appliance.demo``, tally.

stdout carries the narration and the summary table (with ``--json``, then one JSON
line, the last); stderr the progress bar; the stack's processes and the demo's own
sender log to ``STATE_DIR/logs/``. Exit 0 only when every message is accounted for,
none was processed twice, every delivered one was signed, verified by the recipient and
receipted, the message a relay altered was refused, and the revoked participant was
refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dmr_appliance import logs
from dmr_appliance.cli import _numbers
from dmr_appliance.cli._lifecycle import Stopped, relay_count, supervised
from dmr_appliance.local.demo import Demo, Report, summary
from dmr_appliance.local.stack import Stack

DEFAULT_STATE_DIR = Path(".dmr-demo")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the local stack under a scripted load (relay crash, revocation), with a tally",
        description="Start the local stack, register participants, send a batch of messages "
        "from several threads while one relay is SIGKILLed and restarted, revoke a "
        "participant and time the refusal of its next message, then reconcile every message "
        "id against the recipient's log, the sender's refusals and home's failure list. "
        "Exit 0 only when none is unaccounted.",
    )
    parser.add_argument(
        "--messages",
        type=_numbers.whole(1),
        default=200,
        help="messages in the batch (default %(default)s)",
    )
    parser.add_argument("--relays", type=relay_count, default=2, help="relay instances (default 2)")
    parser.add_argument(
        "--threads", type=_numbers.whole(1), default=8, help="sending threads (default %(default)s)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="PKI, config, state and logs (default ./.dmr-demo)",
    )
    where.add_argument(
        "--temp",
        action="store_true",
        help="use a fresh temporary state directory, removed afterwards",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="end stdout with one JSON line: sent, delivered, refused, "
        "reported_failed, unaccounted, revocation_ms, ...",
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack running after the demo until Ctrl-C"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.temp:
        with tempfile.TemporaryDirectory(prefix="dmr-demo-") as tmp:
            return _run(args, Path(tmp) / "state")
    return _run(args, args.state_dir)


def _say(line: str) -> None:
    print(f"dmr demo: {line}", flush=True)


def _quiet(line: str) -> None:
    pass


def _run(args: argparse.Namespace, state_dir: Path) -> int:
    stack = Stack(state_dir, relays=args.relays, port=0, log=_say)
    try:
        with supervised(stack):
            stack.start()
            stack.log = _quiet  # from here the progress bar tells of the relay's restart
            report = _scenario(stack, args)
            print(summary(report), flush=True)
            if args.json:
                print(json.dumps(report.to_json(), separators=(",", ":")), flush=True)
            if args.keep:
                _wait_for_stop(stack)
            return 0 if report.ok else 1
    except Stopped:
        print("dmr demo: stopped by SIGTERM", file=sys.stderr, flush=True)
        return 143


def _scenario(stack: Stack, args: argparse.Namespace) -> Report:
    """The demo, its own sender's JSON log in the state dir (stdout is for the demo)."""
    with (stack.logs_dir / "demo.log").open("a", encoding="utf-8") as log:
        logs.configure("info", instance="demo", stream=log)
        try:
            demo = Demo(stack, threads=args.threads, say=_say, err=sys.stderr)
            return demo.run(args.messages)
        finally:
            logs.configure("warning", instance="demo", stream=sys.stderr)


def _wait_for_stop(stack: Stack) -> None:
    print(
        f"dmr demo: the stack keeps running (router {stack.router_url}, status page "
        f"{stack.status_url}, admin CLI: . {stack.state_dir / 'env.sh'}); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not stack.dead():
            time.sleep(0.5)
        print(f"dmr demo: {', '.join(stack.dead())} exited; stopping", file=sys.stderr)
    except (KeyboardInterrupt, Stopped):
        print("\ndmr demo: stopping", file=sys.stderr, flush=True)
