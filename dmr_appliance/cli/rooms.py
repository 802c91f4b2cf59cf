"""`dmr rooms`: every room home knows, and its policy: a `signed` room admits only signed
messages (relays refuse the rest with 403 `signature-required`). A change applies to
access tokens issued after it (admin)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show

COLUMNS = ("room", "signed", "members", "updated_at")


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "rooms", "rooms and their signing policy (admin)")
    leaf(verbs, "list", run_list, "list every room with its policy and member count")
    leaf(verbs, "show", run_show, "show one room").add_argument("room")
    setter = leaf(
        verbs,
        "set",
        run_set,
        "set a room's policy (tokens issued from now on carry it; those already issued "
        "keep theirs until they expire)",
    )
    setter.add_argument("room")
    policy = setter.add_mutually_exclusive_group(required=True)
    policy.add_argument(
        "--signed",
        dest="signed",
        action="store_const",
        const=True,
        help="relays refuse the room's unsigned messages",
    )
    policy.add_argument(
        "--unsigned", dest="signed", action="store_const", const=False, help="admit unsigned ones"
    )


def run_list(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).list_rooms(), COLUMNS)


def run_show(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).get_room(args.room))


def run_set(args: argparse.Namespace) -> int:
    home = _home_client.client_from_args(args)
    return show(args, home.set_room_signed(args.room, args.signed))
