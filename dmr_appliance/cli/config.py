"""`dmr config`: print the commented defaults of a service's config, or check a file."""

from __future__ import annotations

import argparse

from dmr_appliance import config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="show defaults or check a configuration file")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    show = verbs.add_parser("defaults", help="print every setting at its default, as TOML")
    show.add_argument("kind", choices=sorted(config.KINDS))
    show.set_defaults(func=defaults)
    check = verbs.add_parser("check", help="validate a file (and DMR_* variables)")
    check.add_argument("kind", choices=sorted(config.KINDS))
    check.add_argument("file")
    check.set_defaults(func=check_file)


def defaults(args: argparse.Namespace) -> int:
    print(
        config.defaults_toml(config.KINDS[args.kind], f"dmr-appliance {args.kind} settings"), end=""
    )
    return 0


def check_file(args: argparse.Namespace) -> int:
    config.load(config.KINDS[args.kind], args.file)
    print(f"{args.file}: valid {args.kind} configuration")
    return 0
