"""``dmr up``: the whole appliance on this machine (home, relays, router, a demo recipient)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path

from dmr_appliance.cli import _numbers
from dmr_appliance.cli._lifecycle import Stopped, relay_count, supervised
from dmr_appliance.local.layout import PARTICIPANTS
from dmr_appliance.local.stack import Stack


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the complete local stack until Ctrl-C",
        description="Make a PKI and configuration in the state directory, start home, N "
        "relays, the router (nginx) and a demo recipient, and keep them running until "
        "Ctrl-C or SIGTERM, which stops every one of them.",
    )
    parser.add_argument("--relays", type=relay_count, default=2, help="relay instances (default 2)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".dmr"),
        help="PKI, config, state and logs (default ./.dmr)",
    )
    parser.add_argument(
        "--port",
        type=_numbers.whole(0, 65535),
        default=8443,
        help="router's HTTPS port on 127.0.0.1 (default 8443; 0: any free)",
    )
    parser.add_argument(
        "--home-instances",
        type=_numbers.whole(1, 9),
        default=1,
        help="home instances (default 1; more need --store postgresql)",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="home's store: sqlite (default, nothing to install) or postgresql (a server "
        "this command starts from Debian's postgresql, shared by every home instance)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stack = Stack(
        args.state_dir,
        relays=args.relays,
        port=args.port,
        homes=args.home_instances,
        store=args.store,
        log=lambda line: print(f"dmr up: {line}", flush=True),
    )
    try:
        with supervised(stack):
            stack.start()
            print(instructions(stack), flush=True)
            return _watch(stack)
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        print("dmr up: stopped; every process has exited", flush=True)


def _watch(stack: Stack) -> int:
    """Until a signal: if a service dies, say which and where its log is, and stop.

    While running, Ctrl-C and SIGTERM only set a flag that this loop reads: an exception
    raised at an arbitrary point (inside Popen.poll, holding its lock) could leave the
    clean-up waiting on that lock for each process's whole stop timeout.
    """
    requested = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: requested.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not requested.wait(0.5):
            dead = stack.dead()
            if dead:
                name = dead[0]
                print(
                    f"dmr up: {name} exited unexpectedly; see "
                    f"{stack.logs_dir / (name + '.log')}. Stopping everything.",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _dmr_command() -> str:
    """'dmr' if it is on PATH, else the full path of this one (e.g. inside .venv/bin)."""
    here = Path(sys.executable).parent / "dmr"
    on_path = shutil.which("dmr")
    return "dmr" if on_path and Path(on_path).resolve() == here.resolve() else str(here)


def instructions(stack: Stack) -> str:
    env = stack.state_dir / "env.sh"
    sender, receiver = PARTICIPANTS[0], PARTICIPANTS[1]
    dmr = _dmr_command()
    lines = [
        "",
        f"dmr up: running ({stack.relay_count} relays). Ctrl-C stops everything.",
        "",
        f"  router          {stack.router_url}   (POST /v1/messages, /v1/home/..., /home/)",
        f"  status page     {stack.status_url}",
        f"                  (client certificate required: {stack.cert('admin', 'admin')[0]},",
        "                   e.g. import it into your browser, or use curl with --cert/--key)",
        f"  metrics         {stack.status_url}metrics (home),"
        " each relay's /metrics"
        + (f", router: {stack.exporter_url}" if stack.exporter_url else ""),
        *_homes(stack),
        f"  logs            {stack.logs_dir}/<name>.log",
        f"  deliveries      {stack.recipient_log}",
        "",
        "Send a message (in another shell, from this directory):",
        f"  . {env}",
        f"  {dmr} participants add {sender} --endpoint {stack.endpoint(sender)} --room demo",
        f"  {dmr} participants add {receiver} --endpoint {stack.endpoint(receiver)} --room demo",
        f"  {dmr} send --state-dir {stack.state_dir} --as {sender} \\",
        f'      --room demo --to {receiver} --data \'{{"text": "hello"}}\'',
        f"  tail -n 1 {stack.recipient_log}",
        "",
        "Or run the whole demonstration:  dmr demo",
        "",
    ]
    return "\n".join(lines)


def _homes(stack: Stack) -> list[str]:
    """With several home instances: where each answers (the router lists them all)."""
    if stack.home_count == 1:
        return []
    lines = [f"  home instances  {stack.home_count} on PostgreSQL ({stack.store_url}):"]
    for name in stack.home_names:
        lines.append(f"                  {name}: https://127.0.0.1:{stack.ports[name]} (its gate)")
    return lines
