"""`dmr participants`: register participants and change their status (admin)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show

COLUMNS = ("id", "status", "rooms", "endpoint", "updated_at")


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "participants", "manage participants (admin)")
    add = leaf(verbs, "add", run_add, "register a participant")
    add.add_argument("id")
    add.add_argument("--endpoint", required=True, help="https URL where it receives")
    add.add_argument(
        "--room",
        action="append",
        required=True,
        dest="rooms",
        help="a room it belongs to (repeat for several)",
    )
    listing = leaf(verbs, "list", run_list, "list participants")
    listing.add_argument("--status", choices=("active", "suspended", "revoked"))
    listing.add_argument("--room")
    for verb, text in (
        ("show", "show one participant"),
        ("suspend", "suspend (reversible)"),
        ("reinstate", "reinstate a suspended participant"),
        ("revoke", "revoke (permanent)"),
        ("delete", "delete (relays keep refusing it until its tokens expire)"),
    ):
        leaf(verbs, verb, run_one, text).add_argument("id")


def run_add(args: argparse.Namespace) -> int:
    home = _home_client.client_from_args(args)
    return show(args, home.create_participant(args.id, args.endpoint, args.rooms))


def run_list(args: argparse.Namespace) -> int:
    home = _home_client.client_from_args(args)
    found = home.list_participants(status=args.status, room=args.room)
    return show(args, found, COLUMNS)


def run_one(args: argparse.Namespace) -> int:
    home = _home_client.client_from_args(args)
    if args.verb == "show":
        return show(args, home.get_participant(args.id))
    if args.verb == "delete":
        home.delete_participant(args.id)
        return show(args, {"deleted": args.id})
    return show(args, home.set_participant_status(args.id, args.verb))
