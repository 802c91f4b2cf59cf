"""``dmr render nginx``: the router's nginx.conf from router.toml (the only way to make one)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmr_appliance import config, nginx, render

DEFAULT_CONFIG = config.ETC / "router.toml"


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "render",
        help="render generated configuration (the router's nginx.conf)",
        description="Render configuration files from dmr-appliance settings.",
    )
    sub = group.add_subparsers(dest="render_command", metavar="WHAT")
    sub.required = True
    parser = sub.add_parser(
        "nginx",
        help="render the router's complete nginx.conf from router.toml",
        description="Render the router's complete nginx.conf from router.toml "
        "(and DMR_* variables). Without --output it goes to stdout.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"router settings (default {DEFAULT_CONFIG})")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="write here (atomically) instead of stdout")
    parser.add_argument("--test", action="store_true",
                        help="then check the written file with 'nginx -t' (needs --output)")
    parser.set_defaults(func=_nginx, parser=parser)


def _nginx(args: argparse.Namespace) -> int:
    if args.test and args.output is None:
        args.parser.error("--test needs --output FILE (nginx checks a file)")
    settings = config.load(config.RouterConfig, args.config)
    if args.output is None:
        sys.stdout.write(render.render(settings))
        return 0
    render.write(settings, args.output)
    if args.test:
        nginx.test_config(args.output, settings.prefix)
        print(f"{args.output}: written; nginx -t passed")
    else:
        print(f"{args.output}: written")
    return 0
