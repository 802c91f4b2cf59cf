"""`dmr home serve` and `dmr relay serve`: check the config, then exec gunicorn in place
(systemd then supervises gunicorn itself)."""

from __future__ import annotations

import argparse

from dmr_appliance import config, serving


def register_serve(sub: argparse._SubParsersAction, kind: str, *, help_text: str,
                   serve_help: str) -> None:
    parser = sub.add_parser(kind, help=help_text)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    serve = verbs.add_parser("serve", help=serve_help)
    serve.add_argument("--config", default=str(config.ETC / f"{kind}.toml"),
                       help=f"{kind}.toml (default: %(default)s)")
    serve.set_defaults(func=run_serve, service=serving.SERVICES[kind])


def run_serve(args: argparse.Namespace) -> int:
    service: serving.Service = args.service
    settings = config.load(service.settings, args.config)  # fail here, not in every worker
    serving.exec_gunicorn(serving.service_argv(service, settings), config_path=args.config)
    return 0  # not reached: gunicorn replaced this process
