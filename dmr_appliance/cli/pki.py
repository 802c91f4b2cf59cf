"""``dmr pki``: the deployment CA, certificates per kind, renewal, revocation and the CRL."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from dmr_appliance import crl_reload, logs, pki
from dmr_appliance.cli import _numbers
from dmr_appliance.cli._home_client import table
from dmr_appliance.errors import PkiError

# Where every TLS endpoint reads the CRL (the dmr_pki Ansible role installs it there).
HOST_CRL = pki.DEFAULT_DIR / "crl.pem"
CRL_NOTE = (
    "nginx refuses every client certificate once the CRL has passed its nextUpdate time, "
    "so run 'dmr pki crl' well before that (e.g. weekly from a timer) and publish it."
)
KIND_HELP = (
    "router: the router (relays and home believe forwarded client certificates only "
    "from this kind); server: home and recipients; relay; participant; admin"
)
RENEW_NOTE = (
    "Kind, name and SANs are kept, the key is new. The old certificate is not revoked "
    "(hosts use it until the new one is deployed); 'dmr pki list' shows it superseded."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "pki",
        help="deployment CA, certificates, revocation",
        description="The deployment PKI: one CA (ECDSA P-256) signs every certificate.",
    )
    sub = group.add_subparsers(dest="pki_command", metavar="ACTION")
    sub.required = True

    init = _leaf(sub, "init", _init, "create the CA and an empty CRL (no-op if one exists)")
    init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA: every certificate issued before stops verifying",
    )

    _add_issue(sub)
    _add_renew(sub)

    revoke = _leaf(sub, "revoke", _revoke, "revoke every certificate of a name and rewrite the CRL")
    _kind_and_name(revoke)
    revoke.add_argument("--reason", choices=list(pki.REASONS), default="unspecified")

    crl = _leaf(sub, "crl", _crl, "sign a fresh CRL", epilog=CRL_NOTE)
    crl.add_argument(
        "--days",
        type=_numbers.whole(1),
        default=pki.CRL_DAYS,
        help=f"validity (default {pki.CRL_DAYS})",
    )

    listing = _leaf(sub, "list", _list, "list issued certificates")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")

    watch = sub.add_parser(
        "watch-crl",
        help="run nginx, reloading it when the CRL changes (containers)",
        description="Run COMMAND (nginx in the foreground) as a child, pass signals on to it "
        "and send it SIGHUP when the CRL file's content changes: nginx reads the CRL only at "
        "start and on reload. For containers, where the CRL is a mounted Secret; hosts use "
        "dmr-crl.path.",
    )
    watch.add_argument("--crl", type=Path, default=HOST_CRL, help="default: %(default)s")
    watch.add_argument(
        "--interval",
        type=_numbers.positive,
        default=crl_reload.INTERVAL,
        help="seconds between reads of the CRL (default %(default)s)",
    )
    watch.add_argument("command", nargs=argparse.REMAINDER, help="-- nginx ARGS...")
    watch.set_defaults(func=_watch_crl)


def _leaf(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help_text: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog)
    parser.add_argument(
        "--dir",
        type=Path,
        default=pki.DEFAULT_DIR,
        help=f"PKI directory (default {pki.DEFAULT_DIR})",
    )
    parser.set_defaults(func=func)
    return parser


def _add_issue(sub: argparse._SubParsersAction) -> None:
    issue = _leaf(sub, "issue", _issue, "issue a key and certificate")
    _kind_and_name(issue)
    issue.add_argument(
        "--dns",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS subject alternative name (server, router, relay; repeatable; default: --name)",
    )
    issue.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDR",
        help="IP subject alternative name (server, router, relay; repeatable)",
    )
    issue.add_argument(
        "--days",
        type=_numbers.whole(1),
        default=pki.LEAF_DAYS,
        help=f"validity (default {pki.LEAF_DAYS})",
    )
    issue.add_argument("--force", action="store_true", help="replace an existing key and cert")


def _add_renew(sub: argparse._SubParsersAction) -> None:
    renew = _leaf(
        sub, "renew", _renew, "re-issue the certificates that expire soon", epilog=RENEW_NOTE
    )
    renew.add_argument(
        "--within",
        type=_numbers.whole(0),
        default=pki.RENEW_WITHIN_DAYS,
        metavar="DAYS",
        help=f"renew what expires within DAYS (default {pki.RENEW_WITHIN_DAYS})",
    )
    renew.add_argument(
        "--days",
        type=_numbers.whole(1),
        default=pki.LEAF_DAYS,
        help=f"validity of the new certificates (default {pki.LEAF_DAYS})",
    )
    renew.add_argument(
        "--kind", action="append", choices=pki.KINDS, help="only this kind (repeatable)"
    )
    renew.add_argument("--name", action="append", help="only this name (repeatable)")
    renew.add_argument("--dry-run", action="store_true", help="say what would be renewed")


def _kind_and_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=pki.KINDS, help=KIND_HELP)
    parser.add_argument("--name", required=True, help="subject CN; a participant's id")


def _init(args: argparse.Namespace) -> int:
    if pki.init_ca(args.dir, force=args.force):
        print(f"created CA {pki.paths(args.dir).ca} and CRL {pki.paths(args.dir).crl}")
    else:
        print(f"CA already exists in {args.dir}; left unchanged (--force replaces it)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    issued = pki.issue(
        args.dir,
        args.kind,
        args.name,
        dns=args.dns,
        ips=args.ip,
        days=args.days,
        force=args.force,
    )
    print(f"issued {args.kind} '{args.name}' serial {issued.serial:x}")
    print(f"  certificate {issued.cert}")
    print(f"  key         {issued.key}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    before = [r for r in pki.records(args.dir) if (r.kind, r.name) == (args.kind, args.name)]
    pki.revoke(args.dir, args.kind, args.name, reason=args.reason)
    fresh = [r for r in before if not r.revoked_at]
    if fresh:
        serials = ", ".join(f"{r.serial:x}" for r in fresh)
        print(f"revoked {args.kind} '{args.name}' (serial {serials}); CRL rewritten")
    else:
        print(f"{args.kind} '{args.name}' was already revoked; CRL rewritten")
    _print_publish_hint(args.dir)
    return 0


def _watch_crl(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise PkiError("name the command to run after --, e.g. -- nginx -g 'daemon off;'")
    logs.configure()
    return crl_reload.supervise(command, args.crl, args.interval)


def _crl(args: argparse.Namespace) -> int:
    path = pki.write_crl(args.dir, days=args.days)
    print(f"wrote {path}, valid for {args.days} days")
    _print_publish_hint(args.dir)
    return 0


def _print_publish_hint(directory: Path) -> None:
    # A revocation protects nothing until the CRL reaches every TLS endpoint.
    crl = pki.paths(directory).crl
    next_update = pki.crl_next_update(directory).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(
        f"publish: copy {crl} to {HOST_CRL} on every router, relay and home host "
        "(Ansible: role dmr_pki, --tags pki); they reload it within seconds, no restart; "
        "the local stack (dmr up) picks it up by itself"
    )
    print(
        f"the CRL's next update is {next_update}: once it has passed, nginx refuses every "
        "client; 'dmr pki crl' renews it (then publish again)"
    )


def _renew(args: argparse.Namespace) -> int:
    results = pki.renew(
        args.dir,
        within_days=args.within,
        days=args.days,
        kinds=args.kind,
        names=args.name,
        dry_run=args.dry_run,
    )
    for result in results:
        print(_renewal_line(result))
    counts = {a: sum(r.action == a for r in results) for a in ("renewed", "due", "valid")}
    skipped = len(results) - sum(counts.values())
    done = f"{counts['due']} would be renewed" if args.dry_run else f"{counts['renewed']} renewed"
    print(f"{done}, {counts['valid']} still valid, {skipped} skipped")
    if counts["renewed"]:
        print("deploy the renewed keys and certificates to their hosts")
    return 0


def _renewal_line(result: pki.Renewal) -> str:
    who = f"{result.kind} '{result.name}'"
    until = result.not_after.strftime("%Y-%m-%dT%H:%M:%SZ") if result.not_after else "?"
    if result.action == "renewed":
        return f"{who}: renewed, serial {result.serial:x} valid until {until}"
    if result.action == "due":
        return f"{who}: would be renewed (expires {until})"
    if result.action == "valid":
        return f"{who}: still valid until {until}"
    return f"{who}: skipped ({result.detail})"


def _list(args: argparse.Namespace) -> int:
    rows = _rows(pki.records(args.dir))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [{**r, "serial": f"{r['serial']:x}", "expires": r["not_after"]} for r in rows]
    print(table(shown, ("kind", "name", "serial", "expires", "status")))
    return 0


def _rows(records: list[pki.Record]) -> list[dict]:
    # The newest certificate of a name is the current one; older ones are superseded.
    current = {(r.kind, r.name): r.serial for r in records}
    return [
        {
            "kind": r.kind,
            "name": r.name,
            "serial": r.serial,
            "issued_at": r.issued_at,
            "not_after": r.not_after,
            "revoked_at": r.revoked_at,
            "reason": r.reason,
            "superseded_by": r.superseded_by,
            "status": r.status(current_serial=current[(r.kind, r.name)]),
        }
        for r in records
    ]
