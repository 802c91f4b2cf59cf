"""`dmr relay serve|gate|probe`: run a relay instance (gunicorn, threaded workers, its sync
agent) and its gate; `dmr relay drain`: take it out of the routers' choice before a stop."""

from __future__ import annotations

import argparse
import sys

from dmr_appliance import config, serving
from dmr_appliance.cli import _numbers
from dmr_appliance.cli._serve import config_option, register_serve
from dmr_appliance.relay import draining


def register(sub: argparse._SubParsersAction) -> None:
    verbs = register_serve(
        sub,
        "relay",
        help_text="run a relay instance",
        serve_help="serve POST /v1/messages under gunicorn (replaces this process)",
    )
    drain = verbs.add_parser(
        "drain",
        help="make the running relay refuse new messages (503 draining) and wait "
        "for its deliveries in flight",
        description="Set the relay's drain flag: POST /v1/messages and /readyz answer 503 "
        "draining (nothing attempted), so the routers pass every new message to another "
        "relay; then wait until no delivery is in flight. Exit 0 when drained, 1 when "
        "deliveries were still running at --timeout. The flag lasts until --undo or the "
        "next 'dmr relay serve' (a restart): drain, stop or upgrade, start.",
    )
    config_option(drain, "relay")
    drain.add_argument(
        "--timeout",
        type=_numbers.positive,
        default=60.0,
        help="seconds to wait for deliveries in flight (default 60)",
    )
    drain.add_argument("--undo", action="store_true", help="clear the flag: take messages again")
    drain.set_defaults(func=run_drain)


def run_drain(args: argparse.Namespace) -> int:
    settings = config.load(config.RelayConfig, args.config)
    socket = settings.gate.socket
    if args.undo:
        was = draining.stop(socket)
        print(
            f"relay {settings.instance}: " + ("takes messages again" if was else "was not draining")
        )
        return 0
    if not socket.parent.is_dir():
        print(f"relay {settings.instance}: not running ({socket.parent} does not exist)")
        return 0
    draining.start(socket)
    shown = [0.0]

    def progress(left: float, seconds: float) -> None:  # a line a second while it waits
        if seconds - shown[0] >= 1.0:
            shown[0] = seconds
            print(
                f"relay {settings.instance} draining: {left:g} deliveries in flight "
                f"({seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    waited = draining.wait_idle(
        socket, args.timeout, settle=2 * draining.CHECK_INTERVAL, on_wait=progress
    )
    try:
        status, body = serving.unix_get(socket, "/readyz", 2.0)
        ready = f"/readyz {status} {body.strip()[:200]}"
    except OSError as exc:
        ready = f"/readyz unreachable ({exc})"
    if waited is None:
        print(
            f"relay {settings.instance}: deliveries still in flight after {args.timeout:g} s; "
            f"{ready}"
        )
        return 1
    print(f"relay {settings.instance}: drained in {waited:.1f} s, no delivery in flight; {ready}")
    return 0
