"""What the admin command groups share: how to reach home, and how to print answers.

Not a command group itself. Defaults suit an operator on a deployed host: home through
the local router, the admin certificate from the PKI directory; ``DMR_HOME_URL``,
``DMR_CLIENT_CERT``, ``DMR_CLIENT_KEY`` and ``DMR_CA`` override them.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dmr_appliance.config import PKI
from dmr_appliance.errors import DmrError
from dmr_appliance.wire.home import HomeClient

DEFAULT_URL = "https://127.0.0.1:8443/v1/home"


def client_options() -> argparse.ArgumentParser:
    """A parent parser with the connection options and --json, for every leaf command."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection to home")
    group.add_argument(
        "--home-url",
        default=os.environ.get("DMR_HOME_URL", DEFAULT_URL),
        help="home API base (default: %(default)s; env DMR_HOME_URL)",
    )
    group.add_argument(
        "--cert",
        default=os.environ.get("DMR_CLIENT_CERT", str(PKI / "admin" / "admin.pem")),
        help="client certificate (default: %(default)s)",
    )
    group.add_argument(
        "--key",
        default=os.environ.get("DMR_CLIENT_KEY", str(PKI / "admin" / "admin.key")),
        help="its private key (default: %(default)s)",
    )
    group.add_argument(
        "--ca",
        default=os.environ.get("DMR_CA", str(PKI / "ca.pem")),
        help="deployment CA certificate (default: %(default)s)",
    )
    parent.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parent


def client_from_args(args: argparse.Namespace) -> HomeClient:
    require_files(
        (args.cert, "--cert", "DMR_CLIENT_CERT"),
        (args.key, "--key", "DMR_CLIENT_KEY"),
        (args.ca, "--ca", "DMR_CA"),
    )
    return HomeClient(args.home_url, cert=args.cert, key=args.key, ca=args.ca)


def require_files(*files: tuple[str, str, str]) -> None:
    """Name the missing file and how to point at another, before any connection."""
    for path, option, variable in files:
        if not Path(path).is_file():
            raise DmrError(
                f"{path} does not exist: pass {option} or set {variable} "
                f"(the local stack writes them: '. STATE_DIR/env.sh')",
                code="tls-file-missing",
            )


def group(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse._SubParsersAction:
    """A command group (``dmr NAME VERB ...``); add its verbs with ``leaf``."""
    verbs = sub.add_parser(name, help=help_text).add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    return verbs


def leaf(
    verbs: argparse._SubParsersAction, name: str, func: Callable[..., int], help_text: str
) -> argparse.ArgumentParser:
    parser = verbs.add_parser(
        name, help=help_text, description=help_text, parents=[client_options()]
    )
    parser.set_defaults(func=func)
    return parser


def show(args: argparse.Namespace, data: Any, columns: Sequence[str] = ()) -> int:
    """``data`` as JSON with --json; otherwise a table (a list) or key: value lines."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(data, list):
        print(table(data, columns))
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            print(f"{key:<{width}}  {_cell(value)}")
    return 0


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
