"""``dmr render nginx`` and ``dmr render gate KIND``: every nginx.conf of the project, from
router.toml, home.toml or relay.toml (the only way to make one)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dmr_appliance import config, render, serving

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
    parser.add_argument(
        "--config",
        type=Path,
        action="append",
        help=f"router settings (default {DEFAULT_CONFIG}); repeat to "
        "layer files: a later file's keys replace an earlier one's",
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="write here (atomically) instead of stdout"
    )
    parser.add_argument(
        "--test",
        action="store_true",
        help="then check the written file with 'nginx -t' (needs --output)",
    )
    parser.set_defaults(func=_nginx, parser=parser)

    gate = sub.add_parser(
        "gate",
        help="render the nginx.conf of the gate in front of home or a relay",
        description="Render the complete nginx.conf of the gate (TLS, client certificates, "
        "CRL) in front of home or a relay, from that app's own home.toml / relay.toml. "
        "`dmr home gate` / `dmr relay gate` render it themselves at each start; this is "
        "for looking at it, and for deployments that run nginx another way (Kubernetes).",
    )
    gate.add_argument("kind", choices=sorted(serving.APP_SERVICES), help="whose gate")
    gate.add_argument(
        "--config", type=Path, help=f"the app's settings (default {config.ETC}/KIND.toml)"
    )
    gate.add_argument(
        "--output", type=Path, metavar="FILE", help="write here (atomically) instead of stdout"
    )
    gate.add_argument(
        "--test",
        action="store_true",
        help="then check the written file with 'nginx -t' (needs --output)",
    )
    gate.set_defaults(func=_gate, parser=gate)


def _nginx(args: argparse.Namespace) -> int:
    if args.test and args.output is None:
        args.parser.error("--test needs --output FILE (nginx checks a file)")
    settings = config.load_layers(config.RouterConfig, args.config or [DEFAULT_CONFIG])
    if args.output is None:
        sys.stdout.write(render.render(settings))
        return 0
    render.write(settings, args.output)
    if args.test:
        serving.test_config(args.output, settings.prefix)
        print(f"{args.output}: written; nginx -t passed")
    else:
        print(f"{args.output}: written")
    return 0


def _gate(args: argparse.Namespace) -> int:
    if args.test and args.output is None:
        args.parser.error("--test needs --output FILE (nginx checks a file)")
    service = serving.APP_SERVICES[args.kind]
    settings = config.load(service.settings, args.config or config.ETC / f"{args.kind}.toml")
    if args.output is None:
        sys.stdout.write(render.render_gate(args.kind, settings))
        return 0
    render.write_gate(args.kind, settings, args.output)
    if args.test:
        serving.test_config(args.output, settings.gate.prefix)
        print(f"{args.output}: written; nginx -t passed")
    else:
        print(f"{args.output}: written")
    return 0
