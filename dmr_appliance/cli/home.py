"""`dmr home serve`: run the home service under gunicorn (TLS, client certificates)."""

from __future__ import annotations

import argparse

from dmr_appliance import config, serving

HOME_APP = "dmr_appliance.home.wsgi:app"
HOME_CONF = "python:dmr_appliance.home.gunicorn_conf"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("home", help="run the home service")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    serve = verbs.add_parser("serve", help="serve home with gunicorn (replaces this process)")
    serve.add_argument("--config", default=str(config.ETC / "home.toml"),
                       help="home.toml (default: %(default)s)")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    settings = config.load(config.HomeConfig, args.config)  # fail here, not in every worker
    argv = serving.gunicorn_argv(
        HOME_APP, bind=settings.bind, workers=settings.workers, threads=settings.threads,
        tls=settings.tls, name=f"dmr-home-{settings.instance}", conf_module=HOME_CONF)
    serving.exec_gunicorn(argv, config_path=args.config)
    return 0  # not reached: exec replaced this process
