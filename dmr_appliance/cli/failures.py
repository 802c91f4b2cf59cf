"""`dmr failures`: messages senders could not deliver (admin)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show

COLUMNS = ("message_id", "status", "room", "from", "to", "reports", "last_reported_at")


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "failures", "failed messages reported by senders (admin)")
    listing = leaf(verbs, "list", run_list, "list failure reports (open ones by default)")
    listing.add_argument("--status", choices=("open", "resolved", "all"), default="open")
    listing.add_argument("--room")
    listing.add_argument("--from", dest="sender")
    listing.add_argument("--limit", type=int)
    leaf(verbs, "show", run_show, "show one report with its envelope").add_argument("id")
    resolve = leaf(verbs, "resolve", run_resolve, "mark a report resolved")
    resolve.add_argument("id")
    resolve.add_argument("--note", required=True, help="what was done about it")


def run_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    home = _home_client.client_from_args(args)
    found = home.list_failures(status=status, room=args.room, sender=args.sender,
                               limit=args.limit)
    return show(args, found, COLUMNS)


def run_show(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).get_failure(args.id))


def run_resolve(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).resolve_failure(args.id, args.note))
