"""`dmr instances`: relay instances and their health, from their heartbeats (admin)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import client_options, show

COLUMNS = ("instance", "health", "age_seconds", "address", "version", "sync_version")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("instances", help="relay instances and their health (admin)",
                            parents=[client_options()])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).list_instances(), COLUMNS)
