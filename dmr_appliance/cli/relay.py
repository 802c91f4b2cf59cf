"""``dmr relay``: run a relay instance (gunicorn, threaded workers, its sync agent)."""

from __future__ import annotations

import argparse

from dmr_appliance import config, serving

APP = "dmr_appliance.relay.wsgi:app"
CONF = "python:dmr_appliance.relay.gunicorn_conf"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("relay", help="run a relay instance")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    serve_parser = verbs.add_parser("serve", help="serve POST /v1/messages under gunicorn")
    serve_parser.add_argument("--config", default=str(config.ETC / "relay.toml"),
                              help="relay.toml (default: %(default)s)")
    serve_parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    cfg = config.load(config.RelayConfig, args.config)  # refuse a bad file before exec
    argv = serving.gunicorn_argv(APP, bind=cfg.bind, workers=cfg.workers, threads=cfg.threads,
                                 tls=cfg.tls, name=f"dmr-relay-{cfg.instance}", conf_module=CONF)
    serving.exec_gunicorn(argv, config_path=args.config)
    return 0  # not reached: gunicorn replaced this process
