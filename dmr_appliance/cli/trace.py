"""``dmr trace ID``: every log line about a message (or one request), as one timeline.

Where it looks: files named on the command line; else ``--log-dir`` (the log host's
``/var/log/dmr/<host>/<program>.log``); else ``--state-dir`` (a local stack's logs and
its recipient's deliveries, default ``./.dmr``); else ``/var/log/dmr`` if it exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from dmr_appliance import tracing
from dmr_appliance.progress import ProgressBar

LOG_HOST_DIR = Path("/var/log/dmr")
DEFAULT_STATE = Path(".dmr")
PROGRESS_FROM = 8 << 20  # bytes: smaller searches finish before a bar would help


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "trace",
        help="every log line about a message or request, as one timeline",
        description="Gather the router's, the gates', the relays', home's, the sender's and "
        "the recipient's JSON log lines about a message id (or a request id) and print them "
        "in time order: time, host, component, event, status, ms. Exit 1 if none is found.",
    )
    parser.add_argument("id", help="a message id (UUID or ULID) or a request id")
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="log files to search (JSON lines); default: see --log-dir",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        help=f"a log host's tree, HOST/PROGRAM.log "
        f"(default {LOG_HOST_DIR} when no file and no stack is named)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help=f"a local stack's state directory (default {DEFAULT_STATE} if it exists)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not tracing.ID.fullmatch(args.id):
        print(
            f"dmr trace: {args.id[:80]!r} is not a message or request id "
            "(letters, digits, '.', '_', '-'; at most 64)",
            file=sys.stderr,
        )
        return 2
    try:
        sources = sources_from(args)
    except FileNotFoundError as exc:
        print(f"dmr trace: {exc}", file=sys.stderr)
        return 2
    size = sum(_size(s.path) for s in sources)
    bar = (
        ProgressBar(2 * size, sys.stderr, prefix="dmr trace: ", verb="bytes read")
        if size > PROGRESS_FROM
        else None
    )
    entries = tracing.trace(args.id, sources, bar.update if bar else None)
    if bar:
        bar.finish(f"{len(entries)} lines")
    if not entries:
        print(f"dmr trace: nothing about {args.id} in {len(sources)} files", file=sys.stderr)
        return 1
    for line in (json.dumps(e.to_json()) for e in entries) if args.json else table(entries):
        print(line)
    return 0


def sources_from(args: argparse.Namespace) -> list[tracing.Source]:
    if args.files:
        missing = [str(p) for p in args.files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"no such file: {', '.join(missing)}")
        return tracing.file_sources(args.files)
    if args.log_dir:
        return tracing.log_dir_sources(args.log_dir)
    state = args.state_dir or (DEFAULT_STATE if DEFAULT_STATE.is_dir() else None)
    if state is not None:
        return tracing.state_dir_sources(state)
    if not LOG_HOST_DIR.is_dir():
        raise FileNotFoundError(
            "no log files to search: name them, or use --log-dir DIR or --state-dir DIR"
        )
    return tracing.log_dir_sources(LOG_HOST_DIR)


def table(entries: list[tracing.Entry]) -> list[str]:
    day = datetime.fromtimestamp(entries[0].at, UTC).date().isoformat()
    lines = [
        f"{'time (UTC ' + day + ')':<24} {'host':<12} {'component':<16} "
        f"{'event':<22} {'status':>6} {'ms':>8}  detail"
    ]
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%H:%M:%S.%f")[:-3]
        ms = f"{e.ms:.1f}" if e.ms is not None else "-"
        status = e.status if e.status not in (None, "") else "-"
        lines.append(
            f"{when:<24} {e.source.host:<12} {e.source.component:<16} "
            f"{e.event:<22} {status!s:>6} {ms:>8}  {e.detail()}"
        )
    return lines


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
