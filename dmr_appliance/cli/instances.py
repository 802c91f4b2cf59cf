"""`dmr instances`: relay instances and their health, from their heartbeats; forget one
that is gone (admin)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import client_options, leaf, show

COLUMNS = ("instance", "health", "age_seconds", "address", "version", "sync_version")


def register(sub: argparse._SubParsersAction) -> None:
    # `dmr instances` alone lists them, as it always has; the verbs are optional.
    parser = sub.add_parser(
        "instances", help="relay instances and their health (admin)", parents=[client_options()]
    )
    parser.set_defaults(func=run)
    verbs = parser.add_subparsers(dest="verb", metavar="[VERB]")
    leaf(verbs, "list", run, "list relay instances and their health")
    forget = leaf(
        verbs,
        "forget",
        run_forget,
        "forget an instance that is gone (it comes back if it beats again)",
    )
    forget.add_argument("name", help="instance name, as `dmr instances` shows it")


def run(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).list_instances(), COLUMNS)


def run_forget(args: argparse.Namespace) -> int:
    _home_client.client_from_args(args).forget_instance(args.name)
    return show(args, {"forgotten": args.name})
