"""The ``dmr`` command: one module per command group, each with ``register(subparsers)``.

A group's ``register`` adds its sub-parsers and sets ``func`` on each leaf; ``func(args)``
returns the exit code. A ``DmrError`` or a usage error becomes one line on stderr
(exit 2 for usage, 1 for a refused operation), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dmr_appliance import __version__
from dmr_appliance.errors import DmrError

# Command groups, in the order `dmr --help` lists them. Each module has register(subparsers).
GROUPS = (
    "pki",
    "config",
    "render",
    "up",
    "demo",
    "relay",
    "recipient",
    "home",
    "participants",
    "rooms",
    "keys",
    "instances",
    "failures",
    "tokens",
    "send",
    "receipts",
    "trace",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="dmr", description="Distributed Message Rooms appliance")
    parser.add_argument("--version", action="version", version=f"dmr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in GROUPS:
        importlib.import_module(f"dmr_appliance.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DmrError as exc:
        print(f"dmr: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dmr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
