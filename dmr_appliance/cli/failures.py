"""`dmr failures`: messages senders could not deliver (admin).

A report is keyed by its sender and message id: ``--from`` names the sender when several
reported one id. ``list`` shows at most ``--per-sender`` of each sender (newest first), so
one sender's reports never hide another's; ``counts`` gives every sender's totals."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show

COLUMNS = ("message_id", "status", "room", "from", "to", "reports", "last_reported_at")
COUNT_COLUMNS = ("from", "open", "resolved")
PER_SENDER = 20


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "failures", "failed messages reported by senders (admin)")
    listing = leaf(verbs, "list", run_list, "list failure reports (open ones by default)")
    listing.add_argument("--status", choices=("open", "resolved", "all"), default="open")
    listing.add_argument("--room")
    listing.add_argument("--from", dest="sender")
    listing.add_argument("--limit", type=int)
    listing.add_argument(
        "--per-sender",
        type=int,
        default=PER_SENDER,
        help=f"at most this many of each sender (default {PER_SENDER}; 0: no cap)",
    )
    counts = leaf(verbs, "counts", run_counts, "open and resolved reports per sender")
    counts.add_argument("--room")
    show_cmd = leaf(verbs, "show", run_show, "show one report with its envelope")
    show_cmd.add_argument("id")
    show_cmd.add_argument("--from", dest="sender", help="whose report (when several sent it)")
    resolve = leaf(verbs, "resolve", run_resolve, "mark a report resolved")
    resolve.add_argument("id")
    resolve.add_argument("--from", dest="sender", help="whose report (when several sent it)")
    resolve.add_argument("--note", required=True, help="what was done about it")


def run_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    home = _home_client.client_from_args(args)
    found = home.list_failures(
        status=status,
        room=args.room,
        sender=args.sender,
        limit=args.limit,
        per_sender=args.per_sender or None,
    )
    return show(args, found, COLUMNS)


def run_counts(args: argparse.Namespace) -> int:
    found = _home_client.client_from_args(args).failure_counts(room=args.room)
    return show(args, found, COUNT_COLUMNS)


def run_show(args: argparse.Namespace) -> int:
    home = _home_client.client_from_args(args)
    return show(args, home.get_failure(args.id, args.sender))


def run_resolve(args: argparse.Namespace) -> int:
    home = _home_client.client_from_args(args)
    return show(args, home.resolve_failure(args.id, args.note, args.sender))
