"""`dmr keys`: home's signing keys (admin)."""

from __future__ import annotations

import argparse

from dmr_appliance.cli import _home_client
from dmr_appliance.cli._home_client import group, leaf, show

COLUMNS = ("kid", "status", "created_at", "retired_at", "published_until")


def register(sub: argparse._SubParsersAction) -> None:
    verbs = group(sub, "keys", "list or rotate home's signing keys (admin)")
    leaf(verbs, "list", run_list, "list signing keys")
    leaf(verbs, "rotate", run_rotate, "make a new active key; the old one retires")


def run_list(args: argparse.Namespace) -> int:
    return show(args, _home_client.client_from_args(args).list_keys(), COLUMNS)


def run_rotate(args: argparse.Namespace) -> int:
    result = _home_client.client_from_args(args).rotate_keys()
    if args.json:
        return show(args, result)
    print(f"active key: {result['active']}")
    return show(args, result["keys"], COLUMNS)
